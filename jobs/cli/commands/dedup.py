"""``bike dedup --store DIR``: near-duplicate videos and clips (re-encoded, resized, cropped, trimmed copies)."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import add_store_arg, add_model_id_arg, command_parser, unit_interval


def register(sub) -> None:
    from engine.model.config import DEFAULTS
    p = command_parser(
        sub, "dedup", help="find near-duplicate videos and clips from the stored frame prints (no decoding)",
        description="Compare the small visual print bike tag stores for every sampled frame (the prints table) "
                    "and list the pairs of videos that are copies of each other (re-encoded, resized, cropped a "
                    "little, trimmed at either end: offset_s says where one starts inside the other) and the "
                    "pairs of clips that show the same pictures. The result replaces the store's duplicates "
                    "table (bike sql: SELECT * FROM duplicates), which search uses to show one copy only. "
                    "Stores tagged before prints existed need `bike tag --force` for their videos to take part.",
        examples=["bike dedup --store tags/",
                  "bike dedup --store tags/ --threshold 0.7 --format json",
                  "bike sql --store tags/ \"SELECT * FROM duplicates WHERE kind = 'video'\""])
    add_store_arg(p)
    p.add_argument("--threshold", type=unit_interval, default=DEFAULTS.dedup_threshold, metavar="T",
                   help="similarity (median best-match cosine of frame prints, 0-1] from which a pair is a "
                        "duplicate (bench/dedup.py measured the default)")
    p.add_argument("--dry-run", action="store_true", help="print the pairs without writing them to the store")
    add_model_id_arg(p)
    output.add_format_arg(p, what="json/jsonl/csv: one object per pair")
    p.set_defaults(func=run)


def run(args) -> int:
    from index.search.dedup import dedup
    rep = dedup(args.store, model_id=args.model_id, threshold=args.threshold, write=not args.dry_run)
    if rep.missing:
        output.warn(f"bike: {rep.missing} clip(s) of model {rep.model_id} have no frame prints (tagged before "
                    "prints existed): they take no part; `bike tag --force` their videos to include them")
    videos = sum(r["kind"] == "video" for r in rep.rows)
    output.info(f"bike dedup: {videos} duplicate video pair(s), {len(rep.rows) - videos} clip pair(s) among "
                f"{rep.videos} video(s), {rep.clips} clip(s) of model {rep.model_id} ({rep.candidates} candidate "
                f"clip pairs compared) in {rep.seconds:.1f} s"
                + ("" if args.dry_run else "; stored as the duplicates table"))
    cols = ["kind", "a", "b", "similarity", "offset_s"]
    output.emit([{c: (round(r[c], 4) if isinstance(r[c], float) else r[c]) for c in cols} for r in rep.rows],
                args.format, columns=cols)
    return 0
