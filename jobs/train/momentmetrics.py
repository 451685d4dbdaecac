"""Moment-retrieval metrics with the field's standard definitions (docs/search.md "Moment metrics").

A query has ground-truth windows G = {g_1..g_m} (m >= 1) and predictions P = [(s, e, score), ...], best
first (at most 10 count, as in QVHighlights). All numbers are fractions in [0, 1].

* ``iou(a, b)``       = |a ∩ b| / |a ∪ b| of two intervals (0 when they do not overlap or both are empty).
* ``R1@t``            = mean over queries of [ max_g iou(p_1, g) >= t ], p_1 the top prediction
                        (QVHighlights' MR-R1: the top prediction against the ground-truth window it overlaps most).
* ``mIoU``            = mean over queries of max_g iou(p_1, g) (Charades-STA).
* ``AP_t`` (one query)= detection average precision at IoU threshold t: predictions taken by decreasing score
                        (ties keep their order); each is a true positive when some still unmatched g has
                        iou >= t (it takes the unmatched g of highest IoU), else a false positive;
                        precision_k = TP_k / k, recall_k = TP_k / m after k predictions;
                        AP_t = sum_k (recall_k - recall_{k-1}) · max_{j>=k} precision_j (interpolated).
* ``mAP``             = mean over queries and over t in 0.5, 0.55, ..., 0.95 of AP_t (QVHighlights' MR-mAP).

A query with no prediction scores 0 everywhere. Nothing here reads files or models.
"""
from __future__ import annotations

from typing import Sequence

#: IoU thresholds of mAP: 0.5:0.05:0.95.
MAP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Predictions per query that count (QVHighlights scores the first 10).
MAX_PREDICTIONS = 10


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of intervals ``a = (start, end)`` and ``b``."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def best_iou(pred: Sequence[float], gts: Sequence[Sequence[float]]) -> float:
    """The IoU of ``pred`` with the ground-truth window it overlaps most."""
    return max((iou(pred, g) for g in gts), default=0.0)


def average_precision(preds: Sequence[Sequence[float]], gts: Sequence[Sequence[float]], threshold: float) -> float:
    """AP_t of one query (module docstring): ``preds`` [(start, end, score)] best first, ``gts`` [(start, end)]."""
    if not gts:
        raise ValueError("a query needs at least one ground-truth window")
    order = sorted(range(len(preds)), key=lambda i: -preds[i][2])       # stable: ties keep their order
    matched = [False] * len(gts)
    tp = 0
    precision, recall = [], []
    for k, i in enumerate(order, 1):
        ious = [(iou(preds[i], g), j) for j, g in enumerate(gts) if not matched[j]]
        best = max(ious, default=(0.0, -1))
        if best[1] >= 0 and best[0] >= threshold:
            matched[best[1]] = True
            tp += 1
        precision.append(tp / k)
        recall.append(tp / len(gts))
    ap, prev_recall = 0.0, 0.0
    for k in range(len(order)):
        if recall[k] > prev_recall:
            ap += (recall[k] - prev_recall) * max(precision[k:])
            prev_recall = recall[k]
    return ap


def query_metrics(preds: Sequence[Sequence[float]], gts: Sequence[Sequence[float]]) -> dict:
    """One query's numbers: ``iou`` (top prediction, best window), ``R1@0.5``, ``R1@0.7`` (0 or 1), ``AP`` (mean
    of AP_t over MAP_THRESHOLDS)."""
    preds = list(preds)[:MAX_PREDICTIONS]
    top = best_iou(preds[0], gts) if preds else 0.0
    ap = sum(average_precision(preds, gts, t) for t in MAP_THRESHOLDS) / len(MAP_THRESHOLDS)
    return {"iou": top, "R1@0.5": float(top >= 0.5), "R1@0.7": float(top >= 0.7), "AP": ap}


def summarize(rows: Sequence[dict]) -> dict:
    """Means of :func:`query_metrics` rows: exactly ``R1@0.5``, ``R1@0.7``, ``mAP``, ``mIoU`` and ``queries``."""
    n = len(rows)
    mean = (lambda key: sum(r[key] for r in rows) / n) if n else (lambda key: 0.0)
    return {"R1@0.5": mean("R1@0.5"), "R1@0.7": mean("R1@0.7"), "mAP": mean("AP"), "mIoU": mean("iou"),
            "queries": n}
