"""``bike eval LIST --labels CSV``: top-1/top-5, zero-shot half-class accuracy or mAP on a labelled list."""
from __future__ import annotations

import json

from engine.labels import load_labels

from .. import datasets as ds
from ..errors import UsageError
from ..options import add_model_args, load_model_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on a labelled list (top-1/top-5, zero-shot half classes, mAP)",
        description="Evaluate on LIST ('path label', 'dir num_frames label', or 'path l1,l2' with --multilabel). "
                    "standard: the model's scores (--branches; a checkpoint without trained attributes heads: "
                    "the video branch alone) averaged over clips x crops views. zeroshot-half: the authors' "
                    "zero-shot protocol (per-frame softmax(100 f.c), 10 random halves of the classes, mean ± std).")
    p.add_argument("list", metavar="LIST")
    add_model_args(p)
    p.add_argument("--clips", type=int, default=1, help="temporal views per video (default 1; K400: 4)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial crops per video (default 1; K400: 3)")
    p.add_argument("--protocol", choices=("standard", "zeroshot-half"), default="standard")
    p.add_argument("--multilabel", action="store_true", help="multi-label list: report mAP")
    p.add_argument("--splits", type=int, default=10, help="random halves for zeroshot-half (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random halves")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluate import evaluate_standard, evaluate_zeroshot_half, format_result
    if args.clips < 1:
        raise UsageError("--clips must be >= 1")
    if args.multilabel and args.protocol != "standard":
        raise UsageError("--multilabel goes with --protocol standard")
    labels = load_labels(args.labels)
    samples = ds.parse_list(args.list, labels, multilabel=args.multilabel)
    model = load_model_from_args(args)
    if args.protocol == "zeroshot-half":
        result = evaluate_zeroshot_half(model, samples, labels, splits=args.splits, seed=args.seed)
    else:
        result = evaluate_standard(model, samples, labels, clips=args.clips, crops=args.crops,
                                   multilabel=args.multilabel)
    result["model"] = model.describe()
    if args.json:
        print(json.dumps(result))
    else:
        print(format_result(result))
    return 0 if result["videos"] else 1
