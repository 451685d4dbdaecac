"""``bike eval LIST --labels CSV``: top-1/top-5, zero-shot half-class accuracy or mAP on a labelled list."""
from __future__ import annotations

from .. import output
from ..options import add_model_args, command_parser, load_model_from_args, positive_int


def register(sub) -> None:
    p = command_parser(
        sub, "eval", help="evaluate a model on a labelled list (top-1/top-5, zero-shot half classes, mAP)",
        description="Evaluate on LIST ('path label', 'dir num_frames label', or 'path l1,l2' with --multilabel). "
                    "standard: the model's scores (--branches; a checkpoint without trained attributes heads: "
                    "the video branch alone) averaged over clips x crops views. zeroshot-half: the authors' "
                    "zero-shot protocol (per-frame softmax(100 f.c), 10 random halves of the classes, mean ± std).",
        examples=["bike eval val.txt --labels labels.csv --checkpoint runs/mine/checkpoint.pt --clips 4 --crops 3",
                  "bike eval ucf_test.txt --labels ucf101 --protocol zeroshot-half --format json"])
    p.add_argument("list", metavar="LIST")
    add_model_args(p)
    p.add_argument("--clips", type=positive_int, default=1, metavar="N",
                   help="temporal views per video (default 1; K400: 4)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial crops per video (default 1; K400: 3)")
    p.add_argument("--protocol", choices=("standard", "zeroshot-half"), default="standard")
    p.add_argument("--multilabel", action="store_true", help="multi-label list: report mAP")
    p.add_argument("--splits", type=positive_int, default=10, metavar="N",
                   help="random halves for zeroshot-half (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random halves")
    output.add_format_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import datasets as ds
    from ..errors import UsageError
    from ..evaluate import evaluate_standard, evaluate_zeroshot_half, format_result
    from ..options import resolve_labels
    if args.multilabel and args.protocol != "standard":
        raise UsageError("--multilabel goes with --protocol standard")
    model = None if args.labels else load_model_from_args(args)       # a checkpoint's own labels need it
    labels = resolve_labels(args, model)
    samples = ds.parse_list(args.list, labels, multilabel=args.multilabel)   # a bad list fails before loading
    model = model or load_model_from_args(args)
    if args.protocol == "zeroshot-half":
        result = evaluate_zeroshot_half(model, samples, labels, splits=args.splits, seed=args.seed)
    else:
        result = evaluate_standard(model, samples, labels, clips=args.clips, crops=args.crops,
                                   multilabel=args.multilabel)
    result["model"] = model.describe()
    result["random_init"] = model.random_init
    output.emit(result, args.format, table_fn=lambda r, out: print(
        format_result(r) + ("   [RANDOM WEIGHTS: scores are meaningless]" if r["random_init"] else ""), file=out))
    return 0 if result["videos"] else 1
