"""What training optimises, in plain PyTorch (no Ray): modules, optimizer, schedule, checkpoint layout.

:class:`VideoLearner` is :class:`engine.model.net.BikeNet`, the one module that owns BIKE's forward (inference
runs it too, under ``torch.no_grad``), with the class prompts' features as buffers; DDP wraps it
(math: docs/model.md)::

    frames (B, T, 3, S, S) ─ CLIP visual, per frame ─▶ X (B, T, D) ─ header (optional) ─▶ H (B, T, D)
    H vs the C class prompts (frozen text features) ─ VCS (or mean pooling) ─▶ logits (B, C) · exp(logit_scale)

The text tower is frozen, so the class prompts' features are computed once and kept as buffers.
With several data-parallel workers the loss is BIKE's global-batch loss, as in the released ``train.py``:
each worker's raw frame features are all-gathered (:func:`all_gather_local_grad`; the backward keeps the
gradient of this worker's own slice), every worker runs the header + VCS on the whole global batch and
takes the loss over all ``B = batch`` videos, and DDP averages the gradients.
:class:`AttributeLearner` is the attributes branch (two MLP heads on frozen sentence / class features).

Optimisation (docs/model.md §6: AdamW, learning rates, warm-up + cosine schedule) is :mod:`jobs.train.optim`,
the one place every optimiser of bike comes from.

Checkpoints use the released BIKE layout (``model_state_dict`` = the whole CLIP in open_clip/OpenAI key
layout, ``fusion_model_state_dict`` = the header) plus bike's keys, so ``bike classify --checkpoint`` loads
them with :func:`engine.load_model`.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from engine.model import bike
from engine.model.attributes import AttributeHead, attribute_scores
from engine.model.gather import all_gather_local_grad, distributed_world  # noqa: F401 - re-exported
from engine.model.net import BikeConfig, BikeNet
from engine.model.config import DEFAULTS
from engine.model.spotting import l2norm
from engine.model.temporal import TemporalTransformer
from index.store import atomic_write

#: uint8 (B, T, S, S, 3) → CLIP-normalised float (B, T, 3, S, S) on the same device (engine.model.bike's step).
normalize = bike.normalise


def uses_quick_gelu(clip: nn.Module) -> bool:
    """Whether an open_clip model's MLPs use QuickGELU (OpenAI weights) rather than GELU."""
    return any(type(m).__name__ == "QuickGELU" for m in clip.modules())


def all_gather_labels(y: torch.Tensor) -> torch.Tensor:
    """Labels (b,) of every rank → (W·b,), in the order of :func:`all_gather_local_grad`."""
    if distributed_world() == 1:
        return y
    import torch.distributed as dist
    parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, y.contiguous())
    return torch.cat(parts, 0)


def new_header(embed_dim: int, text_width: int, layers: int = 6, seed: int = 0) -> TemporalTransformer:
    """A freshly initialised temporal header (docs/model.md §3), identical on every worker for one seed."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return TemporalTransformer(embed_dim, heads=max(1, text_width // 64), layers=layers)
    finally:
        torch.random.set_rng_state(state)


class VideoLearner(BikeNet):
    """The network training optimises: :class:`engine.model.net.BikeNet` (the module inference runs too) with
    the frozen class features as buffers, so ``forward(frames, gather=...)`` gives the scaled logits (B, C)
    and ``raw_logits(frames)`` the unscaled ones."""

    def __init__(self, visual: nn.Module, logit_scale: nn.Parameter, cls: torch.Tensor, tokens: torch.Tensor,
                 header: "TemporalTransformer | None" = None, pooling: str = "vcs", tau: float = DEFAULTS.tau,
                 config: "BikeConfig | None" = None):
        config = replace(config or BikeConfig(header=header is not None), pooling=pooling, tau=tau)
        super().__init__(visual, logit_scale, header, config=config)
        self.set_classes(cls, tokens)                    # (C, D), (C, 77, D): forward(frames) compares with them


class AttributeLearner(nn.Module):
    """The attributes branch: heads on frozen, L2-normalised sentence (B, D) and class (C, D) features."""

    def __init__(self, head: AttributeHead, cls: torch.Tensor, logit_scale: torch.Tensor):
        super().__init__()
        self.head = head
        self.register_buffer("cls", l2norm(cls.detach().float()).clone(), persistent=False)
        self.register_buffer("scale", logit_scale.detach().float().exp().clone(), persistent=False)

    def forward(self, sentences: torch.Tensor) -> torch.Tensor:
        """(B, D) sentence end-of-text features → scaled cosine logits (B, C)."""
        return attribute_scores(sentences, self.cls, self.head) * self.scale


def training_precision(precision: "str | None", device) -> "tuple[str, torch.dtype | None]":
    """``bike train --precision`` on ``device`` → (concrete name, autocast dtype of the image tower or None).
    Weights, optimiser state and the loss stay fp32 (mixed precision); ``auto`` is fp16 on CUDA (with a
    gradient scaler), bf16 on CPUs with native bf16 matrix units, fp32 elsewhere (engine/model/precision.py).
    fp16 on a CPU is refused: no CPU runs it fast, and its range needs a gradient scaler."""
    from engine.model.precision import resolve
    device = torch.device(device)
    name = resolve(precision, device.type)
    if name == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 trains on GPUs only (--gpus-per-worker 1); on a CPU use bf16 or fp32")
    return name, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def checkpoint_dict(model_name: str, clip: nn.Module, header, attribute_head, labels, frames: int, epoch: int,
                    stage: str, optimizer=None, scheduler=None, scaler=None, **extra) -> dict:
    """A checkpoint in the released BIKE layout plus bike's keys (see the module docstring)."""
    return {
        "model_state_dict": {k: v.detach().cpu() for k, v in clip.state_dict().items()},
        "fusion_model_state_dict": ({k: v.detach().cpu() for k, v in header.state_dict().items()}
                                    if header is not None else {}),
        "attributes_state_dict": ({k: v.detach().cpu() for k, v in attribute_head.state_dict().items()}
                                  if attribute_head is not None else None),
        "labels": list(labels),
        "model_name": model_name,
        "quick_gelu": uses_quick_gelu(clip),
        "frames": int(frames),
        "epoch": int(epoch),
        "stage": stage,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        **extra,
    }


def save_atomic(obj: dict, path: str) -> str:
    """torch.save to a temporary name in the same folder, fsync, then rename: a crash never leaves half a file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
    return path
