"""Learning benchmark: real training on synthetic action videos, no pretrained weights (bike-tiny, random init).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/learn.py     # ~5 min on 2 idle cores; writes bench/results/learn.json

(a) ``bike train`` with the temporal header + VCS vs the same training with mean pooling of frame features
    (no header), on held-out videos. The default classes are "moving left", "moving right", "blinking" and
    "empty scene" (``--classes`` takes any of bench/synthetic.py's base classes); left/right are time reverses
    of each other: their frames are the same set, only the order differs, so an order-blind model cannot
    do better than 50 % within the pair. ``--seeds 0,1,2`` repeats (a) with other seeds (each seed draws a
    different random-init CLIP, header, shuffle and held-out split; ~6 min per seed on 2 cores).
(b) ``bike adapt --mode fast`` of the (a) model to four new classes with K = 1, 2, 4, 8 examples each,
    evaluated with ``bike eval`` (engine path, fused scores) on held-out videos of the new classes.
(c) Saliency: for held-out "blinking" videos (the shape is visible only in sampled frames 3–4 of 8), where
    the VCS saliency of the class "blinking" peaks.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import engine  # noqa: E402
from jobs.train import datasets as ds  # noqa: E402
from jobs.cli.commands import adapt as adapt_cmd, train as train_cmd  # noqa: E402
from jobs.train.evaluate import evaluate_standard  # noqa: E402
from jobs.train.learner import VideoLearner, normalize  # noqa: E402
from bench.synthetic import (BASE_CLASSES, BLINK_CLASS, BLINK_SEGMENTS, EMPTY_CLASS, NEW_CLASSES,  # noqa: E402
                            ORDER_CLASSES,
                            VideoSpec, make_dataset, write_labels, write_list)
from machine import machine as bench_machine  # noqa: E402  (bench/ is sys.path[0] when a bench script runs)

PAIRS = (("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking"))
#: Default base classes: one time-reversed pair, the blinking class (saliency) and the empty scene.
DEFAULT_CLASSES = ("moving left", "moving right", BLINK_CLASS, EMPTY_CLASS)


def bike(argv) -> int:
    """Run a `bike train|adapt` command line in this process (the commands' own parsers and code)."""
    parser = argparse.ArgumentParser(prog="bike")
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd.register(sub)
    adapt_cmd.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def machine() -> dict:
    return bench_machine(torch=torch.__version__)


def _files(root: str, a) -> dict:
    """Write the synthetic data sets and their lists; return the paths."""
    spec = VideoSpec(size=a.size, fps=a.fps, seconds=a.seconds)
    t0 = time.time()
    train = make_dataset(f"{root}/train", a.classes, a.train_per_class, seed=1, spec=spec)
    test = make_dataset(f"{root}/test", a.classes, a.test_per_class, seed=2, spec=spec)
    shots = make_dataset(f"{root}/new_shots", NEW_CLASSES, 8, seed=3, spec=spec)
    new_test = make_dataset(f"{root}/new_test", NEW_CLASSES, a.test_per_class, seed=4, spec=spec)
    out = {"labels": write_labels(f"{root}/labels.csv", a.classes),
           "new_labels": write_labels(f"{root}/new_labels.csv", NEW_CLASSES),
           "train": write_list(f"{root}/train.txt", train, a.classes),
           "test": write_list(f"{root}/test.txt", test, a.classes),
           "new_test": write_list(f"{root}/new_test.txt", new_test, NEW_CLASSES)}
    with open(f"{root}/new_shots.txt", "w") as f:                 # names, as a user would write them
        f.writelines(f"{p} {n}\n" for p, n in shots)
    out["new_shots"] = f"{root}/new_shots.txt"
    n = len(train) + len(test) + len(shots) + len(new_test)
    print(f"wrote {n} synthetic H.264 videos ({a.size} px, {a.fps} fps, {a.seconds:g} s) in {time.time() - t0:.1f} s",
          flush=True)
    return out


def _train(files, out, a, extra) -> float:
    args = ["train", files["train"], "--labels", files["labels"], "--out", out, "--model", "bike-tiny",
            "--random-init", "--epochs", str(a.epochs), "--batch", str(a.batch), "--lr", str(a.lr),
            "--lr-clip", str(a.lr_clip), "--no-flip", "--crop-scale", "0.6", "1.0", "--val-fraction", "0.1",
            "--workers", str(a.workers), "--attr-epochs", str(a.attr_epochs)] + extra
    t0 = time.time()
    rc = bike(args)
    if rc:
        raise SystemExit(f"bike {' '.join(args)} failed with {rc}")
    return time.time() - t0


@torch.no_grad()
def video_branch_predictions(ckpt_path: str, list_path: str, labels, pooling: str):
    """Video-branch predictions of a trained checkpoint, pooling as it was trained (VCS or mean)."""
    model = engine.load_model(None, checkpoint=ckpt_path)
    text = model.label_features(labels)
    learner = VideoLearner(model.clip.visual, model.clip.logit_scale, text.cls, text.tokens, model.header,
                           pooling).eval()
    reader = ds.FrameReader(resize=model.resize, cache_bytes=0)
    samples = ds.parse_list(list_path, labels)
    preds = []
    for lo, hi in ds.batches(len(samples), 32):
        clips = np.stack([ds.eval_clip(reader, s, model.frames, model.crop, model.resize) for s in samples[lo:hi]])
        preds += learner.raw_logits(normalize(torch.from_numpy(clips))).argmax(1).tolist()
    return np.array(preds), np.array([s.label for s in samples])


def _order_metrics(pred, y, labels) -> dict:
    idx = {n: i for i, n in enumerate(labels.names)}
    order_ids = [idx[n] for n in ORDER_CLASSES if n in idx]
    m = np.isin(y, order_ids)
    pair_ok = []
    for a_, b_ in PAIRS:
        if a_ not in idx or b_ not in idx:
            continue
        ia, ib = idx[a_], idx[b_]
        sel = np.isin(y, [ia, ib]) & np.isin(pred, [ia, ib])        # predicted within the right pair
        pair_ok += (pred[sel] == y[sel]).tolist()
    return {"top1_all": float((pred == y).mean()), "top1_order_classes": float((pred[m] == y[m]).mean()),
            "within_pair_direction": float(np.mean(pair_ok)) if pair_ok else float("nan")}


@torch.no_grad()
def saliency_check(ckpt_path: str, list_path: str, labels) -> dict:
    model = engine.load_model(None, checkpoint=ckpt_path)
    c = labels.index(BLINK_CLASS)
    samples = [s for s in ds.parse_list(list_path, labels) if s.label == c]
    reader = ds.FrameReader(resize=model.resize, cache_bytes=0)
    clips = np.stack([ds.eval_clip(reader, s, model.frames, model.crop, model.resize) for s in samples])
    sal = model.score_frames(clips, labels).spotting.saliency[:, c]                   # (n, T)
    peaks = sal.argmax(1)
    on = list(BLINK_SEGMENTS)
    return {"videos": len(samples), "peak_in_frames_3_4": float(np.isin(peaks.numpy(), on).mean()),
            "mass_on_frames_3_4": float(sal[:, on].sum(1).mean()), "uniform_mass": len(on) / sal.shape[1],
            "mean_saliency": [round(float(x), 4) for x in sal.mean(0)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                   help="comma-separated base classes (from bench/synthetic.py BASE_CLASSES)")
    p.add_argument("--train-per-class", type=int, default=48)
    p.add_argument("--test-per-class", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--attr-epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seeds", default="0", help="comma-separated training seeds for (a) (default 0)")
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--lr-clip", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shots", default="1,2,4,8")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "learn.json"))
    a = p.parse_args(argv)
    a.classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    a.seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    unknown = [c for c in a.classes if c not in BASE_CLASSES]
    if unknown or BLINK_CLASS not in a.classes:
        raise SystemExit(f"--classes: unknown {unknown} or missing {BLINK_CLASS!r} (known: {', '.join(BASE_CLASSES)})")
    torch.set_num_threads(os.cpu_count() or 1)
    t_start = time.time()
    work = a.work or tempfile.mkdtemp(prefix="bike-learn-")
    files = _files(work, a)
    labels = engine.load_labels(files["labels"])
    new_labels = engine.load_labels(files["new_labels"])

    # (a) header + VCS vs mean pooling, trained the same way, for every seed
    rows = {name: {"seeds": {}} for name in ("header+VCS", "mean pooling")}
    for seed in a.seeds:
        for name, extra, pooling in (("header+VCS", [], "vcs"),
                                     ("mean pooling", ["--no-header", "--pooling", "mean"], "mean")):
            out = f"{work}/train_{pooling}_seed{seed}"
            seconds = _train(files, out, a, extra + ["--seed", str(seed)])
            pred, y = video_branch_predictions(f"{out}/checkpoint.pt", files["test"], labels, pooling)
            r = rows[name]["seeds"][str(seed)] = {
                **_order_metrics(pred, y, labels), "train_seconds": seconds,
                "history": [json.loads(ln) for ln in open(f"{out}/history.jsonl")]}
            print(f"(a) {name}, seed {seed}: {r['top1_all']:.3f} top-1, direction within pair "
                  f"{r['within_pair_direction']:.3f}, trained in {seconds:.0f} s", flush=True)
    for r in rows.values():
        for key in ("top1_all", "top1_order_classes", "within_pair_direction", "train_seconds"):
            r[key] = float(np.mean([v[key] for v in r["seeds"].values()]))
    base = f"{work}/train_vcs_seed{a.seeds[0]}/checkpoint.pt"
    model = engine.load_model(None, checkpoint=base)
    fused = evaluate_standard(model, ds.parse_list(files["test"], labels), labels, log_every=0)
    rows["header+VCS"]["bike_eval_fused_top1"] = fused["top1"]

    # (b) fast adaptation to new classes
    adapt = {}
    zero = evaluate_standard(model, ds.parse_list(files["new_test"], new_labels), new_labels, log_every=0)
    adapt["0 (text tower only)"] = {"top1": zero["top1"], "seconds": 0.0}
    for k in [int(x) for x in a.shots.split(",")]:
        out = f"{work}/adapt_k{k}"
        t0 = time.time()
        rc = bike(["adapt", files["new_shots"], "--shots", str(k), "--out", out, "--base", base])
        if rc:
            raise SystemExit(f"bike adapt failed with {rc}")
        secs = time.time() - t0
        m = engine.load_model(None, checkpoint=f"{out}/adapted.pt")
        r = evaluate_standard(m, ds.parse_list(files["new_test"], new_labels), new_labels, log_every=0)
        adapt[str(k)] = {"top1": r["top1"], "seconds": secs}
        print(f"(b) K={k}: top-1 {r['top1']:.3f} ({secs:.1f} s)", flush=True)

    # (c) saliency of the blinking class
    sal = saliency_check(base, files["test"], labels)
    total = time.time() - t_start

    chance = 1 / len(a.classes)
    n_order = sum(c in a.classes for c in ORDER_CLASSES)
    lines = ["", f"(a) held-out top-1, {len(a.classes)} base classes (video branch; {n_order} come in time-reversed pairs)",
             f"    {'model':<16} {'seed':>6} {'all':>7} {'order pairs':>12} {'direction within pair':>22} {'train s':>8}"]
    for name, r in rows.items():
        shown = list(r["seeds"].items()) + ([("mean", r)] if len(r["seeds"]) > 1 else [])
        for seed, v in shown:
            lines.append(f"    {name:<16} {seed:>6} {v['top1_all']:7.3f} {v['top1_order_classes']:12.3f} "
                         f"{v['within_pair_direction']:22.3f} {v['train_seconds']:8.0f}")
    lines.append(f"    chance: {chance:.3f} over {len(a.classes)} classes; an order-blind model: 0.5 for the direction "
                 "within a pair")
    lines.append(f"    bike eval (engine, fused 0.7 video + 0.3 attributes), header+VCS: "
                 f"top-1 {rows['header+VCS']['bike_eval_fused_top1']:.3f}")
    lines += ["", f"(b) bike adapt --mode fast to {len(NEW_CLASSES)} new classes, held-out top-1 (chance "
              f"{1 / len(NEW_CLASSES):.2f})", f"    {'K':<22} {'top-1':>7} {'seconds':>8}"]
    for k, r in adapt.items():
        lines.append(f"    {k:<22} {r['top1']:7.3f} {r['seconds']:8.1f}")
    lines += ["", f"(c) saliency of 'blinking' on {sal['videos']} held-out videos (shape only in frames 3-4 of 8)",
              f"    peak in frames 3-4: {sal['peak_in_frames_3_4']:.3f}   mass on frames 3-4: "
              f"{sal['mass_on_frames_3_4']:.3f} (uniform {sal['uniform_mass']:.2f})",
              f"    mean saliency per frame: {sal['mean_saliency']}", "", f"total {total:.0f} s"]
    print("\n".join(lines))
    result = {"machine": machine(), "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/learn.py " + " ".join(argv or sys.argv[1:]),
              "config": vars(a), "temporal": rows, "adapt_fast": adapt, "saliency": sal, "total_seconds": total,
              "git": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip()}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
