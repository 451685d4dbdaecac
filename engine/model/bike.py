"""BIKE's forward pass, one step per function, in the order of docs/model.md.

    frames  uint8 (B, T, S, S, 3)
      │ normalise                      CLIP mean/std, channels first                       (B, T, 3, S, S)
      ▼
    X = image tower, each frame alone                                                    (B, T, D)  §1
      │ temporal header (optional)     H = blocks(X + P[:T]) + X, else H = X              (B, T, D)  §3
      ▼
    video branch   VCS(H, class tokens (C, 77, D), class cls (C, D)) → logits (B, C), saliency (B, C, T)  §4
                   (or the order-blind mean-pooling baseline, training only)
    attributes     mean(X) vs lexicon → top-K phrases → sentence → text tower → a (B, D)
                   → cos(a, cls) or the trained heads → scores (B, C)                           §5
    fusion         P = 0.7 softmax(logits) + 0.3 softmax(scores), or one branch alone           §5, §8

Every user of the model goes through these functions by one module, ``engine.model.net.BikeNet``: held by
``engine.model.model.BikeModel`` (classify, tag, eval, search, relabel, adapt) and subclassed by
``jobs.train.learner.VideoLearner`` (training). The components live in their own
modules (``spotting``, ``temporal``, ``attributes``, ``text``); this file only composes them.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .attributes import BRANCHES, fuse  # noqa: F401 - re-exported: fusion is a step of the forward
from .config import CLIP_MEAN, CLIP_STD, DEFAULTS
from .precision import Precision
from .spotting import Spotting, concept_spotting, l2norm

#: Frames per image-tower call at inference (bounds activation memory).
FRAME_BATCH = 256


def normalise(frames: "np.ndarray | torch.Tensor", device=None) -> torch.Tensor:
    """uint8 (..., S, S, 3) already resized and cropped → CLIP-normalised float32 (..., 3, S, S)."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    x = x.to(device if device is not None else x.device).movedim(-1, -3).float() / 255.0
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def frame_features(visual: nn.Module, frames: torch.Tensor, precision: "Precision | None" = None,
                   batch: int = FRAME_BATCH) -> torch.Tensor:
    """X: (B, T, 3, S, S) normalised frames → raw frame features (B, T, D) float32; every frame through the
    image tower on its own (no temporal operation inside the ViT). Differentiable (training calls it)."""
    b, t = frames.shape[:2]
    flat = frames.reshape(b * t, *frames.shape[2:])                      # (B·T, 3, S, S)
    out = []
    for i in range(0, flat.shape[0], batch):
        x = flat[i:i + batch]
        if precision is not None:
            x = precision.input(x)
        with precision.run() if precision is not None else contextlib.nullcontext():
            y = visual(x)
        if isinstance(y, (tuple, list)):                                 # some towers also return tokens
            y = y[0]
        out.append(y.float())
    return torch.cat(out).reshape(b, t, -1)


def temporal(header: "nn.Module | None", x: torch.Tensor, precision: "Precision | None" = None) -> torch.Tensor:
    """H = blocks(X + P[:T]) + X with the temporal header, H = X without one; (B, T, D) float32. The input
    takes the header's dtype; on CUDA the precision's autocast applies."""
    if header is None:
        return x.float()
    dtype = next(header.parameters()).dtype
    with precision.run() if precision is not None else contextlib.nullcontext():
        return header(x.to(dtype)).float()


def video_branch(h: torch.Tensor, tokens: torch.Tensor, cls: torch.Tensor, tau: float = DEFAULTS.tau) -> Spotting:
    """Video Concept Spotting of H (B, T, D) against C texts: logits (B, C), saliency (B, C, T), Hn."""
    return concept_spotting(h.float(), tokens.to(h.device), cls.to(h.device), tau=tau)


def mean_pooling_logits(h: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """The order-blind baseline of the ablation: cos(mean of normalised frames, class) → (B, C)."""
    return l2norm(l2norm(h).mean(dim=1)) @ l2norm(cls.to(h.device)).T


def video_logits(h: torch.Tensor, tokens: torch.Tensor, cls: torch.Tensor, pooling: str = "vcs",
                 tau: float = DEFAULTS.tau) -> torch.Tensor:
    """Raw video-branch logits (B, C): VCS (BIKE) or mean pooling (``pooling="mean"``)."""
    if pooling == "mean":
        return mean_pooling_logits(h, cls)
    if pooling != "vcs":
        raise ValueError(f"pooling must be 'vcs' or 'mean', got {pooling!r}")
    return video_branch(h, tokens, cls, tau).logits

