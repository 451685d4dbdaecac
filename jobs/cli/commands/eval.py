"""``bike eval LIST --labels CSV``: top-1/top-5, zero-shot half-class accuracy or mAP on a labelled list;
``bike eval --moments ANN.jsonl --store S``: moment retrieval (R1@0.5, R1@0.7, mAP, mIoU) of search on a store."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import (add_store_arg, add_model_args, add_model_id_arg, command_parser,
                       load_model_from_args, positive_int)


def register(sub) -> None:
    p = command_parser(
        sub, "eval", help="evaluate a model on a labelled list (top-1/top-5, zero-shot half classes, mAP)",
        description="Evaluate on LIST ('path label', 'dir num_frames label', or 'path l1,l2' with --multilabel). "
                    "standard: the model's scores (--branches; a checkpoint without trained attributes heads: "
                    "the video branch alone) averaged over clips x crops views. zeroshot-half: the authors' "
                    "zero-shot protocol (per-frame softmax(100 f.c), 10 random halves of the classes, mean ± std).",
        examples=["bike eval val.txt --labels labels.csv --checkpoint runs/mine/checkpoint.pt --clips 4 --crops 3",
                  "bike eval ucf_test.txt --labels ucf101 --protocol zeroshot-half --format json",
                  "bike eval --moments test.jsonl --store tags/ --predictions preds.jsonl   # moment retrieval"])
    p.add_argument("list", metavar="LIST", nargs="?", default=None, help="the labelled list (not with --moments)")
    add_model_args(p)
    p.add_argument("--clips", type=positive_int, default=1, metavar="N",
                   help="temporal views per video (default 1; K400: 4)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial crops per video (default 1; K400: 3)")
    p.add_argument("--protocol", choices=("standard", "zeroshot-half"), default="standard")
    p.add_argument("--multilabel", action="store_true", help="multi-label list: report mAP")
    p.add_argument("--splits", type=positive_int, default=10, metavar="N",
                   help="random halves for zeroshot-half (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random halves")
    m = p.add_argument_group("moments (docs/search.md \"Evaluating moments\")")
    m.add_argument("--moments", default=None, metavar="ANN.jsonl",
                   help="evaluate search's moments on QVHighlights-style annotations (one {qid, query, vid, "
                        "relevant_windows} per line; vid: a stored video's file-name stem, path or video_id)")
    add_store_arg(m, required=False, note='the tagged store to search, with --moments')
    add_model_id_arg(m)
    m.add_argument("--scope", choices=("video", "corpus"), default="video",
                   help="video: rank the moments of the query's video only (the benchmark's protocol, default); "
                        "corpus: search the whole store, as a user does (also reports video R@1/R@5)")
    m.add_argument("--per-query", action="store_true", help="also list every query's top window and IoU")
    m.add_argument("--predictions", default=None, metavar="FILE.jsonl",
                   help="write the predictions in the QVHighlights submission layout (qid, query, vid, "
                        "pred_relevant_windows: up to 10 [start, end, score], best first)")
    output.add_format_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from jobs.errors import UsageError
    if args.moments is not None:
        if args.list is not None:
            raise UsageError("give either LIST or --moments ANN.jsonl, not both")
        return run_moments(args)
    if args.list is None:
        raise UsageError("give a labelled LIST (or --moments ANN.jsonl --store DIR)")
    if args.store is not None:
        raise UsageError("--store goes with --moments")
    return run_classes(args)


def run_moments(args) -> int:
    """``--moments``: search the store for every annotated query and score the moments (jobs/train/momenteval.py)."""
    from index.search.search import Searcher
    from index.store import Store, StoreError
    from index.store.where import WhereError

    from jobs.errors import UsageError
    from jobs.train.momenteval import evaluate_moments, format_per_query, format_report, read_annotations, write_predictions
    if args.store is None:
        raise UsageError("--moments needs --store DIR (the tagged store to search)")
    annotations = read_annotations(args.moments)
    try:
        searcher = Searcher(Store(args.store), args.model_id, weights=args.checkpoint, device=args.device,
                            precision=None if args.precision == "auto" else args.precision)
        result = evaluate_moments(searcher, annotations, scope=args.scope)
        desc, random_init = searcher.describe_model()
    except (StoreError, WhereError) as e:
        raise UsageError(str(e)) from None
    if args.predictions:
        write_predictions(args.predictions, result["predictions"])
        output.info(f"bike: wrote {len(result['predictions'])} prediction line(s) to {args.predictions}")
    if result["unknown_vids"]:
        output.warn(f"bike: {len(result['unknown_vids'])} query(ies) name no stored video (or several): "
                    + ", ".join(map(str, result["unknown_vids"][:10])))
    doc = {k: result[k] for k in ("scope", "queries", "metrics", "baselines", "unknown_vids")}
    doc.update(model=desc, random_init=random_init)
    if args.per_query:
        doc["per_query"] = result["per_query"]
    warn = "   [RANDOM WEIGHTS: scores are meaningless]" if random_init else ""

    def table(d, out):
        print(format_report(d) + warn, file=out)
        if args.per_query:
            print(format_per_query(d["per_query"]), file=out)
    output.emit(doc if args.format in ("json", "table") else result["per_query"], args.format, table_fn=table)
    return 0 if result["queries"] else 1


def run_classes(args) -> int:
    from jobs.train import datasets as ds
    from jobs.errors import UsageError
    from jobs.train.evaluate import evaluate_standard, evaluate_zeroshot_half, format_result
    from jobs.cli.options import resolve_labels
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
