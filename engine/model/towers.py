"""Digests of the parts of a model's weights: do two models see frames the same way?

A store keeps, for every clip, the frame features after the temporal header, H = header(image tower(frames)),
and the top attribute phrases, chosen by comparing the raw frame features with the lexicon's text features
(text tower). ``bike relabel`` recomputes everything else from those. So a model other than the one that
tagged the store may relabel it exactly when these two parts are identical:

* :func:`image_side`: SHA-256 over every ``visual.*`` tensor of the CLIP weights and every tensor of the
  temporal header (none is a part too: a model without a header differs from one with one);
* :func:`text_tower`: SHA-256 over every other CLIP tensor (token embedding, text transformer, final norm,
  text projection, logit scale).

What is left, the class features an adapted checkpoint carries (``class_features``), its attributes heads and
its labels, is "the text side" that relabel scores with. ``bike adapt --mode fast`` learns only that side, so
its checkpoint can relabel a store tagged by its base; ``bike train`` and ``--mode finetune`` change the
towers, and their checkpoints must tag again.

Each tensor is hashed with its name and shape, as float32 (a header stored in float16 is the same header the
model runs, which casts it to float32), in name order: the digest does not depend on how the file was saved.
"""
from __future__ import annotations

import hashlib

import torch

from .loading import Weights

#: The prefix of the image tower's tensors in an open_clip CLIP state dict.
VISUAL = "visual."


def _digest(parts: "list[tuple[str, torch.Tensor]]") -> str:
    h = hashlib.sha256()
    for name, t in sorted(parts, key=lambda p: p[0]):
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def image_side(weights: Weights) -> str:
    """Digest of the image tower + temporal header: what the stored frame features depend on."""
    state = weights.clip.state_dict()
    parts = [(k, v) for k, v in state.items() if k.startswith(VISUAL)]
    parts += [(f"header.{k}", v) for k, v in (weights.header_state or {}).items()]
    return _digest(parts)


def text_tower(weights: Weights) -> str:
    """Digest of the CLIP text tower: what chose the stored attribute phrases (with the lexicon)."""
    return _digest([(k, v) for k, v in weights.clip.state_dict().items() if not k.startswith(VISUAL)])


def towers(weights: Weights) -> "dict[str, str]":
    """``{"image_side": ..., "text_tower": ...}`` of ``weights`` (float32 weights, before any precision cast)."""
    return {"image_side": image_side(weights), "text_tower": text_tower(weights)}
