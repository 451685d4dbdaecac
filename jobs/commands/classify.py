"""``bike classify VIDEO...``: top labels, attributes and per-frame saliency of each video."""
from __future__ import annotations

import json
import sys

from engine.labels import load_labels
from engine.video import VideoError

from ..options import add_model_args, load_model_from_args


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify videos with BIKE (labels, attributes, saliency)",
                       description="Classify each video as one clip: top-5 labels with fused, video-branch and "
                                   "attributes-branch probabilities, the top-5 attributes, and the top label's "
                                   "saliency over the sampled frames.")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    add_model_args(p)
    p.add_argument("--clips", type=int, default=1, help="temporal views averaged (default 1)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial crops averaged (default 1)")
    p.add_argument("--top", type=int, default=5, help="labels to show (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    p.set_defaults(func=run)


def _print_text(r) -> None:
    warn = "   [RANDOM WEIGHTS: labels are meaningless]" if r.random_init else ""
    print(f"{r.video}{warn}")
    print(f"  {'label':<40} {'score':>8} {'video':>8} {'attrib':>8}   (score = {r.branches} branch"
          f"{'es' if r.branches == 'fused' else ''}, {r.precision})")
    for ls in r.labels:
        att = "" if ls.attribute_score is None else f"{ls.attribute_score:8.4f}"
        print(f"  {ls.label[:40]:<40} {ls.score:8.4f} {ls.video_score:8.4f} {att:>8}")
    print("  attributes: " + ", ".join(f"{a} ({s:.3f})" for a, s in r.attributes))
    print(f"  saliency of '{r.labels[0].label}':")
    peak = max(r.saliency)
    for t, s in zip(r.frame_times, r.saliency):
        bar = "#" * int(round(30 * s / peak)) if peak > 0 else ""
        print(f"    {t:8.2f}s  {s:6.3f}  {bar}")


def run(args) -> int:
    labels = load_labels(args.labels)
    model = load_model_from_args(args)
    failed = 0
    for path in args.videos:
        try:
            r = model.classify(path, labels, clips=args.clips, crops=args.crops, top_k=args.top)
        except VideoError as e:
            failed += 1
            print(f"bike: error: {e}", file=sys.stderr)
            if args.json:
                print(json.dumps({"video": path, "error": e.reason}))
            continue
        if args.json:
            print(json.dumps(r.to_dict()))
        else:
            _print_text(r)
    return 1 if failed else 0
