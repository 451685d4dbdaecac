"""``bike relabel --store DIR --labels SET``: new labels for stored clips, without decoding any video."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import (add_model_args, add_model_id_arg, add_store_arg, command_parser, model_kwargs,
                       positive_int)


def register(sub) -> None:
    p = command_parser(
        sub, "relabel", help="score stored clips against a new label set (no decoding)",
        description="Score every clip the store holds for a model against a new label set, from the stored "
                    "per-frame embeddings and attribute phrases (concept spotting + attributes branch); no "
                    "video is decoded. The rows are written under the model_id that `bike tag --labels SET` "
                    "would use. The model is the one that tagged the clips, read from the store (same "
                    "weights, frames, lexicon); model options point at weights that moved, or name a model "
                    "with the same image tower, temporal header and text tower (a `bike adapt --mode fast` "
                    "checkpoint of it: its classes and attributes heads then score the clips).",
        examples=["bike relabel --store tags/ --labels ucf101",
                  "bike relabel --store tags/ --labels my_labels.csv --model-id 3f2a9c0d1e4b5a67",
                  "bike relabel --store tags/ --labels ucf101 --checkpoint moved/k400.pt --format json",
                  "bike relabel --store tags/ --checkpoint runs/new/adapted.pt   # its adapted classes"])
    add_store_arg(p)
    add_model_args(p)
    for action in p._actions:               # the stored clips fix these: the source's unless given
        if action.dest in ("frames", "lexicon"):
            action.default = None
            action.help = f"{action.help.split(' (default')[0]} (default: the one the clips were tagged with)"
    add_model_id_arg(p, help="the source model_id whose clips are relabelled (default: the one this model "
                             "tagged; `bike sql --store S \"SELECT * FROM models\"` lists them)")
    p.add_argument("--from", dest="model_id", default=None, help=output.argparse_suppress())   # older name
    p.add_argument("--batch", type=positive_int, default=64, metavar="N",
                   help="videos per store batch: the unit of commit (default 64)")
    p.add_argument("--force", action="store_true", help="redo videos already relabelled (replaces them)")
    p.add_argument("--no-index", action="store_true", help="do not update the vector index at the end")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    output.add_format_arg(p, what="prints the job summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from jobs.cli.options import resolve_labels
    from jobs.tag.relabel import RelabelOptions, run_relabel
    summary = run_relabel(RelabelOptions(store=args.store, labels=resolve_labels(args),
                                         model_kwargs=model_kwargs(args), source=args.model_id, batch=args.batch,
                                         force=args.force, index=not args.no_index,
                                         progress=False if args.no_progress or output.verbosity() < 0 else None),
                          log=output.info)
    output.emit(summary, args.format,
                table_fn=lambda s, out: [print(output.safe(line), file=out) for line in s.lines()])
    return 1 if summary.index_failed else 0
