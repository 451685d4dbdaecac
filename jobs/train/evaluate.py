"""``bike eval``: accuracy of a model on a labelled list (docs/model.md §7–§8), in this process.

Protocols:

- ``standard``: every video as ``clips × crops`` views; the model's probabilities of each view (from its
  ``branches``: 0.7 video + 0.3 attributes branch, or the video branch alone for a checkpoint without
  trained attributes heads, as the authors' ``test.py``) are averaged over the views → top-1 / top-5, or
  mAP with ``multilabel`` lists. The result names the branches.
- ``zeroshot-half``: the authors' zero-shot numbers: raw per-frame features f_t of one view,
  ``softmax(100 · f_t · c)`` against the normalised class prompts c, averaged over frames; top-1 on 10
  seeded random halves of the classes (only the videos of the half's classes, softmax over the half),
  reported as mean ± std.

A video that cannot be decoded is reported and left out (counted in ``failed``), never a crash.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from engine.model.metrics import (average_views, half_class_accuracy, half_class_splits, mean_average_precision,
                            mean_std, topk_accuracy, zeroshot_frame_logits)
from engine.video import VideoError

from jobs.train import datasets as ds

#: Views scored together in one model call.
VIEW_BATCH = 32


def _progress(i: int, n: int, t0: float, every: int) -> None:
    if every and (i % every == 0 or i == n):
        rate = i / max(time.time() - t0, 1e-9)
        print(f"[eval] {i}/{n} videos  {rate:.1f} videos/s", file=sys.stderr, flush=True)


def _views(reader, model, s, clips, crops):
    return ds.eval_views(reader, s, model.frames, model.crop, model.resize, clips, crops)


def predict(model, samples, labels, clips: int = 1, crops: int = 1, log_every: int = 50):
    """Averaged probabilities (n, C) of the readable samples (the model's branches), and those samples."""
    reader = ds.FrameReader(resize=model.resize, cache_bytes=0)
    probs, kept, failed = [], [], []
    pending, owners = [], []                      # views waiting for a model call, and whose they are
    t0 = time.time()

    def flush():
        if not pending:
            return
        fused = model.score_frames(np.concatenate(pending), labels).fused       # (views, C)
        start = 0
        for s, v in owners:
            probs.append(average_views(fused[start:start + v][None], softmax=False)[0])
            kept.append(s)
            start += v
        pending.clear()
        owners.clear()

    for i, s in enumerate(samples, 1):
        try:
            views = _views(reader, model, s, clips, crops)                      # (V, T, S, S, 3)
        except VideoError as e:
            failed.append(s)
            print(f"[eval] warning: {s.where}: {e}", file=sys.stderr, flush=True)
            continue
        pending.append(views)
        owners.append((s, len(views)))
        if sum(len(p) for p in pending) >= VIEW_BATCH:
            flush()
        _progress(i, len(samples), t0, log_every)
    flush()
    out = torch.stack(probs) if probs else torch.empty(0, len(labels))
    return out, kept, failed


def evaluate_standard(model, samples, labels, clips: int = 1, crops: int = 1, multilabel: bool = False,
                      log_every: int = 50) -> dict:
    """Top-1/top-5 (or mAP) of the model's scores (its ``branches``) averaged over ``clips × crops`` views."""
    probs, kept, failed = predict(model, samples, labels, clips, crops, log_every)
    result = {"protocol": "standard", "videos": len(kept), "failed": len(failed), "views": clips * crops,
              "branches": model.branches, "precision": model.precision.name}
    if multilabel:
        targets = torch.zeros(len(kept), len(labels))
        for i, s in enumerate(kept):
            targets[i, list(s.labels)] = 1
        result["mAP"] = mean_average_precision(probs, targets)
    else:
        result.update(topk_accuracy(probs, torch.tensor([s.label for s in kept], dtype=torch.long), ks=(1, 5)))
    return result


@torch.no_grad()
def evaluate_zeroshot_half(model, samples, labels, splits: int = 10, seed: int = 0, log_every: int = 50) -> dict:
    """The zero-shot half-classes protocol of docs/model.md §8 (one view per video)."""
    reader = ds.FrameReader(resize=model.resize, cache_bytes=0)
    cls = model.label_features(labels).cls                                      # (C, D)
    logits, targets, failed = [], [], 0
    t0 = time.time()
    for i, s in enumerate(samples, 1):
        try:
            views = _views(reader, model, s, 1, 1)                               # (1, T, S, S, 3)
        except VideoError as e:
            failed += 1
            print(f"[eval] warning: {s.where}: {e}", file=sys.stderr, flush=True)
            continue
        feats = model.encode_frames(model.preprocess(views))                     # (1, T, D) raw
        logits.append(zeroshot_frame_logits(feats, cls).cpu())                  # (1, T, C)
        targets.append(s.label)
        _progress(i, len(samples), t0, log_every)
    frame_logits = torch.cat(logits) if logits else torch.empty(0, model.frames, len(labels))
    y = torch.tensor(targets, dtype=torch.long)
    accs = [half_class_accuracy(frame_logits, y, half) for half in half_class_splits(len(labels), splits, seed)]
    mean, std = mean_std(accs)
    return {"protocol": "zeroshot-half", "videos": len(targets), "failed": failed, "splits": splits,
            "branches": "zero-shot frame scores", "precision": model.precision.name,
            "top1_mean": mean, "top1_std": std, "top1_per_split": accs}


def format_result(r: dict) -> str:
    if r["protocol"] == "zeroshot-half":
        return (f"zero-shot half classes ({r['splits']} splits, {r['videos']} videos): "
                f"top-1 {100 * r['top1_mean']:.1f} ± {100 * r['top1_std']:.1f}")
    head = f"{r['videos']} videos, {r['views']} view(s) each" + (f", {r['failed']} unreadable" if r["failed"] else "")
    head += f", branches {r['branches']}" if r.get("branches") else ""
    if "mAP" in r:
        return f"{head}: mAP {100 * r['mAP']:.2f}"
    t1, t5 = r.get("top1", math.nan), r.get("top5", math.nan)
    return f"{head}: top-1 {100 * t1:.2f}  top-5 {100 * t5:.2f}"
