"""Evaluation metrics of docs/model.md §7–§8 as pure functions on tensors (no files, no model).

- :func:`average_views`: multi-view test, the mean of the softmaxed scores of every view.
- :func:`topk_accuracy`: top-1 / top-5 of single-label predictions.
- :func:`average_precision`, :func:`mean_average_precision`: multi-label lists (Charades-style mAP).
- :func:`zeroshot_frame_logits`, :func:`zeroshot_probs`, :func:`half_class_splits`,
  :func:`half_class_accuracy`: the authors' zero-shot "half classes" protocol.
- :func:`mean_std`: mean ± (population) standard deviation of repeated measurements.

Shapes: N videos, V views, T frames, C classes, D width.
"""
from __future__ import annotations

import math

import numpy as np
import torch

#: The zero-shot protocol multiplies per-frame dot products by 100 (CLIP's trained logit scale).
ZEROSHOT_SCALE = 100.0


def average_views(view_scores: torch.Tensor, softmax: bool = True) -> torch.Tensor:
    """(N, V, C) per-view scores → (N, C): the mean over views of the softmaxed scores (docs/model.md §7).

    ``softmax=False`` when the scores are already probabilities (e.g. the fused BIKE output).
    """
    p = torch.softmax(view_scores.float(), dim=-1) if softmax else view_scores.float()
    return p.mean(dim=1)


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> dict:
    """Fraction of the N rows of ``scores`` (N, C) whose target (N,) is among the k highest, per k.

    k larger than C counts every row as correct. Returns ``{"top1": ..., "top5": ...}``.
    """
    targets = torch.as_tensor(targets, device=scores.device)
    out = {}
    for k in ks:
        kk = min(k, scores.shape[1])
        top = scores.topk(kk, dim=1).indices                          # (N, k)
        out[f"top{k}"] = float((top == targets[:, None]).any(dim=1).float().mean()) if len(targets) else math.nan
    return out


def average_precision(scores, positives) -> float:
    """AP of one class: the mean, over the positives, of the precision at each positive's rank.

    ``scores`` (N,) higher = more confident; ``positives`` (N,) bool. Ties are ranked in input order
    (stable sort). No positive → NaN (the class is left out of the mean).
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    if not pos.any():
        return math.nan
    order = np.argsort(-s, kind="stable")
    hits = pos[order]                                               # (N,) positives in ranked order
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)       # precision at every rank
    return float(precision[hits].mean())


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP over the classes with at least one positive: ``scores`` (N, C), ``targets`` (N, C) 0/1."""
    s = torch.as_tensor(scores).float().cpu().numpy()
    t = torch.as_tensor(targets).bool().cpu().numpy()
    aps = [average_precision(s[:, c], t[:, c]) for c in range(s.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    return float(np.mean(aps)) if aps else math.nan


def zeroshot_frame_logits(frame_features: torch.Tensor, cls: torch.Tensor,
                          scale: float = ZEROSHOT_SCALE) -> torch.Tensor:
    """Per-frame zero-shot logits ``scale · f_t · c`` (N, T, C) (docs/model.md §8).

    ``frame_features`` (N, T, D) are the raw frame features, NOT normalised (as the authors' code);
    ``cls`` (C, D) are the class prompts' end-of-text features, L2-normalised here.
    """
    c = cls.float() / cls.float().norm(dim=-1, keepdim=True)
    return scale * torch.einsum("ntd,cd->ntc", frame_features.float(), c)


def zeroshot_probs(frame_logits: torch.Tensor, classes=None) -> torch.Tensor:
    """Softmax over the (selected) classes per frame, then the mean over frames: (N, T, C) → (N, C')."""
    if classes is not None:
        frame_logits = frame_logits[..., torch.as_tensor(classes, dtype=torch.long)]
    return torch.softmax(frame_logits, dim=-1).mean(dim=1)


def half_class_splits(num_classes: int, splits: int = 10, seed: int = 0) -> list:
    """``splits`` random halves of the class ids (each of ``num_classes // 2`` sorted ids), seeded."""
    rng = np.random.default_rng(seed)
    half = num_classes // 2
    if half < 1:
        raise ValueError(f"need at least 2 classes for half-class splits, got {num_classes}")
    return [np.sort(rng.permutation(num_classes)[:half]).tolist() for _ in range(splits)]


def half_class_accuracy(frame_logits: torch.Tensor, targets: torch.Tensor, classes) -> float:
    """Top-1 of the zero-shot protocol restricted to one half: only the videos whose label is in
    ``classes``, softmax over those classes only. NaN when no video belongs to the half."""
    classes = torch.as_tensor(classes, dtype=torch.long)
    targets = torch.as_tensor(targets, dtype=torch.long)
    keep = torch.isin(targets, classes)
    if not keep.any():
        return math.nan
    probs = zeroshot_probs(frame_logits[keep], classes)              # (n, C/2)
    pred = classes[probs.argmax(dim=1)]
    return float((pred == targets[keep]).float().mean())


def mean_std(values) -> tuple:
    """(mean, population standard deviation) of the finite values; (nan, nan) when there are none."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std())
