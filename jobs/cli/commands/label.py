"""``bike label NAME --store DIR --positive CLIP_ID...``: a tag of your own, from example clips (index/search/usertags.py)."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import add_store_arg, add_model_id_arg, command_parser


def register(sub) -> None:
    p = command_parser(
        sub, "label", help="a tag of your own from a few example clips, scored for every stored clip (no decoding)",
        description="Define a tag by examples: clips that are it (--positive), optionally clips that are not "
                    "(--negative) and a text --query. Every stored clip of the model is scored from its stored "
                    "frame embeddings (MaxSim to the positives minus half of it to the negatives, standardised, "
                    "plus half the standardised concept-spotting score of the query), nothing is decoded. The "
                    "rows, with the tag's definition (examples, query, model, dates), go to the store's "
                    "user_labels table (bike sql). New batches: `bike label --refresh` rescores every stored "
                    "tag over all the clips the store holds now.",
        examples=["bike label \"goal celebration\" --store tags/ --positive V1/3,V2/0,V7/5 --negative V4/1",
                  "bike sql --store tags/ \"SELECT clip_id, score FROM user_labels WHERE label = 'goal "
                  "celebration' AND tagged ORDER BY rank\"",
                  "bike label --refresh --store tags/                  # after bike tag added batches"])
    p.add_argument("name", nargs="?", default=None, help="the tag's name (the label column of user_labels)")
    add_store_arg(p)
    p.add_argument("--positive", action="append", default=None, metavar="CLIP_ID[,CLIP_ID...]",
                   help="clips that ARE the tag (repeat or comma-separate; at least one)")
    p.add_argument("--negative", action="append", default=None, metavar="CLIP_ID[,CLIP_ID...]",
                   help="clips that are NOT the tag")
    p.add_argument("--query", default=None, metavar="TEXT", help="a text that describes the tag (optional)")
    p.add_argument("--refresh", action="store_true",
                   help="rescore every stored tag (or only NAME) over the clips the store holds now")
    add_model_id_arg(p)
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="the weights file the store was tagged with, if it moved (needed for --query only)")
    output.add_format_arg(p, what="json/jsonl/csv: one object per tag")
    p.set_defaults(func=run)


def run(args) -> int:
    from index.search.feedback import parse_ids
    from index.search.search import Searcher
    from index.store import Store, StoreError
    from index.search.usertags import Definition, definitions, write_label

    from jobs.errors import UsageError
    try:
        store = Store(args.store)
        if args.refresh:
            if args.positive or args.negative or args.query:
                raise UsageError("--refresh rescores stored tags as they were defined: give no "
                                 "--positive/--negative/--query (define a tag again without --refresh)")
            todo = [d for d in definitions(store, args.model_id) if args.name is None or d.label == args.name]
            if args.name is not None and not todo:
                raise UsageError(f"no stored tag named {args.name!r} in {args.store}")
        else:
            if not args.name:
                raise UsageError("give the tag's NAME (or --refresh)")
            if not parse_ids(args.positive):
                raise UsageError("give at least one --positive CLIP_ID")
            todo = [Definition(args.name, "", list(parse_ids(args.positive)), list(parse_ids(args.negative)),
                               args.query)]
        reports, searchers = [], {}
        with store.lock():
            for d in todo:
                mid = d.model_id or args.model_id
                if mid not in searchers:
                    searchers[mid] = Searcher(store, mid, weights=args.checkpoint)
                reports.append(write_label(searchers[mid], d))
    except StoreError as e:
        raise UsageError(str(e)) from None
    if not reports:
        output.info(f"bike label: no stored tags in {args.store}")
    rows = []
    for r in reports:
        d = r.definition
        output.info(f"bike label: {d.label!r}: {r.tagged} of {r.clips} clips tagged (threshold {r.threshold:.3f}) "
                    f"from {len(d.positives)} positive, {len(d.negatives)} negative clip(s)"
                    + (f" and the query {d.query!r}" if d.query else "") + f", model {d.model_id}, "
                    f"{r.seconds:.1f} s; stored as {r.key} (bike sql: user_labels)")
        rows.append({"label": d.label, "model_id": d.model_id, "clips": r.clips, "tagged": r.tagged,
                     "threshold": round(r.threshold, 4), "positives": ",".join(d.positives),
                     "negatives": ",".join(d.negatives), "query": d.query,
                     "top": ",".join(c for c, _ in r.top[:5])})
    output.emit(rows, args.format, columns=["label", "model_id", "clips", "tagged", "threshold", "positives",
                                            "negatives", "query", "top"])
    return 0
