"""BIKE's training objective (docs/model.md §6): symmetric KL against soft, multi-positive targets.

A batch holds B videos and the B prompts of their own labels, so several columns of a row can be the
same class. With ``G[i, j] = 1`` where samples i and j share a label (0 elsewhere)::

    target = softmax_row(10 · G)                                   (B, B)   soft, several positives
    KL(p ‖ q) = sum_ij p_ij (log p_ij - log q_ij) / B              summed over rows, averaged over the batch
    loss = ( KL(target ‖ softmax_row(logits)) + KL(target' ‖ softmax_row(logitsᵀ)) ) / 2

``logits`` are already multiplied by ``exp(logit_scale)`` (see :func:`scaled`). G is symmetric, so the
second target is the same matrix; it is still computed from ``Gᵀ`` to read like the definition.
"""
from __future__ import annotations

import torch

#: Sharpness of the soft targets: softmax(10 · G).
TARGET_SHARPNESS = 10.0


def same_label(labels: torch.Tensor) -> torch.Tensor:
    """``labels`` (B,) class ids → G (B, B) float, 1 where two samples share a label."""
    return (labels[:, None] == labels[None, :]).float()


def soft_targets(labels: torch.Tensor, sharpness: float = TARGET_SHARPNESS) -> torch.Tensor:
    """Row-wise ``softmax(sharpness · G)`` (B, B): each row spreads its mass over the row's positives."""
    return torch.softmax(sharpness * same_label(labels), dim=1)


def kl_rows(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(target ‖ softmax(logits))`` summed over rows and entries, divided by the number of rows."""
    log_q = torch.log_softmax(logits.float(), dim=1)
    # target > 0 everywhere (softmax), so target·log(target) is finite.
    return (target * (torch.log(target) - log_q)).sum() / logits.shape[0]


def bike_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The symmetric loss of docs/model.md §6.

    ``logits`` (B, B): row i = video i against the prompts of the B samples' labels (already scaled);
    ``labels`` (B,) class ids. Returns a scalar.
    """
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1] or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected logits (B, B) and labels (B,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    g = same_label(labels)
    t_video = torch.softmax(TARGET_SHARPNESS * g, dim=1)       # video → text rows
    t_text = torch.softmax(TARGET_SHARPNESS * g.T, dim=1)      # text → video rows
    return 0.5 * (kl_rows(t_video, logits) + kl_rows(t_text, logits.T))


def scaled(logits: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Training logits: raw (cosine-like) logits × exp(logit_scale)."""
    return logits * logit_scale.exp()


def batch_logits(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, C) logits of B videos against all C classes → (B, B) logits against each sample's own label.

    Column j is the text of sample j's label, exactly the "texts in a batch" of docs/model.md §6; computing the
    (B, C) matrix first avoids scoring a class prompt twice when labels repeat.
    """
    return class_logits[:, labels]
