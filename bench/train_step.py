"""Training-step benchmark: ``bike train --precision`` fp32 against mixed precision, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_step.py              # ViT-B-32, batch 4 clips x 8 frames
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_step.py --model bike-tiny --steps 5   # a quick check

One optimiser step of the video branch exactly as ``jobs/train/training.py`` runs it (``VideoLearner``: image tower →
temporal header → VCS against fixed class features, BIKE's loss, AdamW), on random frames, with the tower in
fp32 and under autocast at each precision of ``--precisions`` (``auto`` resolves as ``bike train`` does:
bf16 on CPUs with native bf16, fp16 on CUDA). Reports clips/s and frames/s after ``--warmup`` steps, the
speed ratio against fp32, and how far the first step's loss and logits move from fp32's (same weights, same
input). The model is a random-init open_clip: speed is that of the real architecture. Writes
``bench/results/train-step.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from machine import machine  # noqa: E402  (bench/ is sys.path[0] when a bench script runs)

import engine  # noqa: E402
from engine.model.loss import batch_logits, bike_loss  # noqa: E402
from jobs.train import optim  # noqa: E402
from jobs.train.learner import VideoLearner, new_header, normalize, training_precision  # noqa: E402


def build(name: str, frames: int, classes: int, device: str):
    model = engine.load_model(name, random_init=True, frames=frames, device=device)
    clip = model.clip
    for p in clip.parameters():
        p.requires_grad_(False)
    for p in list(clip.visual.parameters()) + [clip.logit_scale]:
        p.requires_grad_(True)
    labels = [f"class {i}" for i in range(classes)]
    text = model.label_features(",".join(labels))
    header = new_header(model.embed_dim, int(clip.ln_final.weight.shape[0]), 6, 0).to(device)
    learner = VideoLearner(clip.visual, clip.logit_scale, text.cls, text.tokens, header, "vcs").to(device)
    return learner, model.image_size


def step(learner, opt, x, y):
    logits = learner(normalize(x))
    loss = bike_loss(batch_logits(logits.float(), y), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach()), logits.detach().float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=4, help="clips per step (default 4)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per precision (default 6)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train-step.json"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    info = machine(torch=torch.__version__)

    torch.manual_seed(0)
    base, size = build(args.model, args.frames, args.classes, args.device)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (args.batch, args.frames, size, size, 3), generator=g, dtype=torch.uint8)
    x = x.to(args.device)
    y = torch.arange(args.batch, device=args.device) % args.classes

    rows, ref = [], None
    for prec in args.precisions:
        learner = copy.deepcopy(base)                         # same weights for every precision
        name, learner.amp = training_precision(prec, args.device)
        opt = optim.adamw(optim.video_groups(learner.visual, learner.logit_scale, [learner.header], optim.LR_NEW, optim.LR_CLIP))
        first_loss, first_logits = step(learner, opt, x, y)
        for _ in range(args.warmup - 1):
            step(learner, opt, x, y)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(learner, opt, x, y)
        secs = time.perf_counter() - t0
        row = {"precision": prec, "resolved": name, "steps": args.steps, "seconds": secs,
               "clips_per_s": args.batch * args.steps / secs,
               "frames_per_s": args.batch * args.frames * args.steps / secs, "first_loss": first_loss}
        if ref is None and name == "fp32":
            ref = (first_loss, first_logits)
        if ref is not None:
            row["first_loss_abs_diff_vs_fp32"] = abs(first_loss - ref[0])
            row["first_logits_max_abs_diff_vs_fp32"] = float((first_logits - ref[1]).abs().max())
            row["first_logits_scale"] = float(ref[1].abs().max())
        rows.append(row)
        print(f"{prec} ({name}): {row['clips_per_s']:.2f} clips/s", file=sys.stderr)
    fp32 = next((r for r in rows if r["resolved"] == "fp32"), None)
    for r in rows:
        r["speedup_vs_fp32"] = r["clips_per_s"] / fp32["clips_per_s"] if fp32 else None
    info["loadavg_1_5_15_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"machine": info, "model": f"{args.model} (random init)", "batch_clips": args.batch,
              "frames": args.frames, "device": args.device, "rows": rows,
              "command": " ".join([".venv/bin/python", "bench/train_step.py", *sys.argv[1:]])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nbike train step — {info['cpu']}, {info['cores']} cores; {result['model']}, {args.batch} clips x "
          f"{args.frames} frames on {args.device}")
    head = ("precision", "clips/s", "frames/s", "vs fp32", "loss diff", "logit diff / max")
    table = [head] + [(f"{r['precision']} ({r['resolved']})", f"{r['clips_per_s']:.2f}", f"{r['frames_per_s']:.1f}",
                       f"{r['speedup_vs_fp32']:.2f}x" if r["speedup_vs_fp32"] else "",
                       f"{r.get('first_loss_abs_diff_vs_fp32', 0):.2e}",
                       f"{r.get('first_logits_max_abs_diff_vs_fp32', 0):.2e} / {r.get('first_logits_scale', 0):.1f}")
                      for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    print(f"(load average at start {info['loadavg_1_5_15'][0]:.1f}, at end {info['loadavg_1_5_15_at_end'][0]:.1f}; "
          f"written to {args.out})")


if __name__ == "__main__":
    main()
