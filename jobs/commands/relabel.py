"""``bike relabel --store DIR --labels SET``: new labels for stored clips, without decoding any video."""
from __future__ import annotations

from ..options import add_model_args, model_kwargs


def register(sub) -> None:
    p = sub.add_parser(
        "relabel", help="score stored clips against a new label set (no decoding)",
        description="Score every clip the store holds for a model against a new label set, from the stored "
                    "per-frame embeddings and attribute phrases (concept spotting + attributes branch); no "
                    "video is decoded. The rows are written under the model_id that `bike tag --labels SET` "
                    "would use. The model is the one that tagged the clips, read from the store (same "
                    "weights, frames, lexicon); model options are only needed to point at weights that moved, "
                    "and must name that same model.",
        epilog="examples:\n  bike relabel --store tags/ --labels ucf101\n"
               "  bike relabel --store tags/ --labels my_labels.csv --from 3f2a9c0d1e4b5a67\n"
               "  bike relabel --store tags/ --labels ucf101 --checkpoint moved/k400.pt",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, metavar="DIR", help="store directory")
    add_model_args(p)
    p.add_argument("--from", dest="source", default=None, metavar="MODEL_ID",
                   help="source model_id (default: the one this model tagged; see `bike sql ... FROM models`)")
    p.add_argument("--batch", type=int, default=64, metavar="N", help="videos per store batch (default 64)")
    p.add_argument("--force", action="store_true", help="redo videos already relabelled (replaces them)")
    p.add_argument("--no-index", action="store_true", help="do not update the vector index at the end")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UsageError
    from ..relabel import RelabelOptions, run_relabel
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    summary = run_relabel(RelabelOptions(store=args.store, labels=args.labels, model_kwargs=model_kwargs(args),
                                         source=args.source, batch=args.batch, force=args.force,
                                         index=not args.no_index,
                                         progress=False if args.no_progress else None))
    for line in summary.lines():
        print(line)
    return 1 if summary.index_failed else 0
