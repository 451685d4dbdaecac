"""The optimiser recipe, in one place: parameter groups, learning rates, weight decay and schedule.

Every optimiser bike builds comes from here (docs/model.md §6, docs/training.md):

* ``bike train`` / ``bike adapt --train`` (:func:`video_groups` + :func:`adamw` + :func:`schedule`): AdamW
  (betas 0.9, 0.999, eps 1e-8, weight decay 0.2); lr :data:`LR_NEW` (5e-5) for new modules (header,
  attributes heads), :data:`LR_CLIP` (5e-6) for the CLIP visual weights and ``logit_scale``; a linear warm-up
  (:data:`WARMUP_EPOCHS` epochs, a sixth of the run when it is shorter) then cosine decay to 0, stepped every
  batch. The attributes stage uses the same AdamW and schedule on the heads alone.
* ``bike adapt`` (few-shot, :func:`adapt_adam`): plain Adam, no weight decay and no schedule, on the class
  features or the attributes heads; a few hundred full-batch steps.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .rates import LR_CLIP, LR_NEW  # noqa: F401 (docs/model.md §6 learning rates, torch-free for the CLI)

WEIGHT_DECAY = 0.2
BETAS = (0.9, 0.999)
EPS = 1e-8
WARMUP_EPOCHS = 5


def video_groups(visual: nn.Module, logit_scale: nn.Parameter, new_modules, lr_new: float = LR_NEW,
                 lr_clip: float = LR_CLIP) -> list:
    """AdamW groups of docs/model.md §6: new modules at ``lr_new``; CLIP visual + logit_scale at ``lr_clip``
    (left out when ``lr_clip`` is 0: the CLIP weights are then frozen)."""
    new = [p for m in new_modules if m is not None for p in m.parameters() if p.requires_grad]
    clip = [p for p in visual.parameters() if p.requires_grad] + [logit_scale]
    groups = []
    if new:
        groups.append({"params": new, "lr": lr_new, "name": "new"})
    if clip and lr_clip > 0:
        groups.append({"params": clip, "lr": lr_clip, "name": "clip"})
    return groups


def head_groups(head: nn.Module, lr: float = LR_NEW) -> list:
    """One group: a new module (the attributes heads) trained alone at ``lr``."""
    return [{"params": list(head.parameters()), "lr": lr, "name": "new"}]


def adamw(groups: list) -> torch.optim.Optimizer:
    """BIKE's AdamW over ``groups`` (each group carries its own ``lr``)."""
    return torch.optim.AdamW(groups, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)


def warmup_epochs(epochs: int) -> float:
    """5 warm-up epochs for long runs; a sixth of the run (BIKE's 5 of 30) when it is shorter."""
    return min(float(WARMUP_EPOCHS), epochs / 6.0)


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine from 1 to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule(opt: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
    """Warm-up + cosine over ``epochs * steps_per_epoch`` optimiser steps (call ``step()`` every batch)."""
    total = epochs * steps_per_epoch
    warm = int(round(warmup_epochs(epochs) * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm))


def adapt_adam(params: Iterable, lr: float) -> torch.optim.Optimizer:
    """``bike adapt``'s few-shot optimiser: plain Adam at ``lr`` (no weight decay, no schedule)."""
    return torch.optim.Adam(params, lr=lr)
