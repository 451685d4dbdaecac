"""``bike export``: save a found clip as an MP4, every result of a query as files, or a video as a contact sheet."""
from __future__ import annotations

import os

from jobs import output
from jobs.cli.options import (add_store_arg, add_model_id_arg, add_top_arg, command_parser,
                       nonneg_float)


def register(sub) -> None:
    p = command_parser(
        sub, "export", help="cut a stored clip (or a query's results) out of its video as MP4; contact sheets",
        description="Cut what you found out of the original video, in-process (PyAV). By default the packets "
                    "are copied as they are (no re-encoding: fast, same quality), so the file starts at the "
                    "keyframe at or before the clip's start: the output says how much earlier. --exact "
                    "re-encodes (H.264 + AAC) for a frame-exact start and end. Audio is kept. With --query, one "
                    "file per result is written into --out (a folder), named by rank, video and time. With "
                    "--sheet, a video id gives one captioned thumbnail per stored clip.",
        examples=["bike export --store tags/ CLIP_ID --out goal.mp4",
                  "bike export --store tags/ CLIP_ID --out goal.mp4 --pad 2 --exact",
                  "bike export --store tags/ --query \"a dog catches a frisbee\" -k 5 --out found/",
                  "bike export --store tags/ VIDEO_ID --sheet sheet.jpg"])
    p.add_argument("id", nargs="?", default=None, metavar="CLIP_ID|VIDEO_ID",
                   help="a clip id (from `bike search`), or with --sheet a video id")
    add_store_arg(p)
    p.add_argument("--out", default=None, metavar="FILE|DIR",
                   help="the MP4 to write (a clip id), or the folder for the files (--query)")
    p.add_argument("--query", default=None, metavar="TEXT", help="export the top -k results of this search")
    add_top_arg(p, 5, "results of --query to export")
    p.add_argument("--where", default=None, metavar="SQL", help="with --query: the search's DuckDB filter")
    p.add_argument("--pad", type=nonneg_float, default=0.0, metavar="SECONDS",
                   help="widen the clip by this much on each side (inside the video)")
    p.add_argument("--exact", action="store_true",
                   help="frame-exact start and end: re-encode (H.264 + AAC) instead of copying from a keyframe")
    p.add_argument("--sheet", default=None, metavar="IMAGE",
                   help="write a contact sheet of the video (one thumbnail per stored clip, with times): .jpg or .png")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    add_model_id_arg(p)
    output.add_format_arg(p, what="json/jsonl: what was written, with the real start and end")
    p.set_defaults(func=run)


def _check_out(path: str, force: bool, suffixes) -> None:
    from jobs.errors import UsageError
    if os.path.splitext(path)[1].lower() not in suffixes:
        raise UsageError(f"--out {path}: give a file ending in {' or '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{path}: folder {folder} does not exist")
    if os.path.exists(path) and not force:
        raise UsageError(f"{path}: exists already (--force overwrites it)")


def run(args) -> int:
    from jobs.errors import UsageError
    from index.store import Store

    from jobs.serve.export import contact_sheet, export_clip, export_results
    if args.query is not None and args.id is not None:
        raise UsageError("give a clip id or --query TEXT, not both")
    if args.sheet is not None:
        if args.id is None:
            raise UsageError("--sheet needs a video id: bike export --store S VIDEO_ID --sheet sheet.jpg")
        _check_out(args.sheet, args.force, (".jpg", ".jpeg", ".png"))
        store = Store(args.store)
        out, n = contact_sheet(store, args.id, args.sheet, model_id=args.model_id)
        output.emit([{"video_id": args.id, "sheet": str(out), "thumbnails": n}], args.format)
        return 0
    if args.out is None:
        raise UsageError("give --out: the MP4 to write (a clip id) or a folder (--query)")
    store = Store(args.store)
    if args.query is not None:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise UsageError(f"--out {args.out}: with --query, --out is a folder")
        from index.search.search import Searcher
        res = Searcher(store, model_id=args.model_id).search(args.query, k=args.top, where=args.where)
        if res.random_init:
            output.warn("bike: RANDOM WEIGHTS: the search's ranking is meaningless")

        def said(item) -> None:
            r, rep, err = item
            if err:
                output.warn(f"bike: {output.safe(r.clip_id)}: not exported: {output.safe(err)}")
            else:
                output.info(f"bike: {r.rank}. {output.safe(rep.path)} ({rep.start_s:.2f}–{rep.end_s:.2f} s)")
        done = export_results(res, args.out, pad_s=args.pad, exact=args.exact, store=store, on_done=said)
        rows = [dict(rank=r.rank, clip_id=r.clip_id, video_id=r.video_id, **(rep.to_dict() if rep else {}),
                     error=err) for r, rep, err in done]
        output.emit(rows, args.format)
        return 0 if all(err is None for _, _, err in done) else 1
    if args.id is None:
        raise UsageError("give a clip id (from `bike search`) or --query TEXT")
    _check_out(args.out, args.force, (".mp4",))
    rep = export_clip(store, args.id, args.out, pad_s=args.pad, exact=args.exact, model_id=args.model_id)
    if not rep.exact and rep.early_s > 0.005:
        output.info(f"bike: starts {rep.early_s:.2f} s before the clip, at the keyframe {rep.start_s:.2f} s "
                    "(stream copy; --exact cuts frame-exactly)")
    output.emit([rep.to_dict()], args.format)
    return 0
