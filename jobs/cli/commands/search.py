"""``bike search --store DIR "QUERY"``: the best clips for a text (or an example), with the matching moment."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from jobs import output
from jobs.cli.options import add_store_arg, add_model_id_arg, add_query_precision_arg, add_top_arg, command_parser, positive_int
from jobs.cli.sqloptions import add_sql_limit_args, sql_limits


def register(sub) -> None:
    p = command_parser(
        sub, "search", help="text-to-video search over a store, with the moment in each clip",
        description="Search a tagged store. The query text is encoded as typed (no prompt template); FAISS finds "
                    "candidate clips, every candidate is re-ranked with concept spotting over its stored frame "
                    "embeddings, and each result names the moment (the frame most like the query) and its span "
                    "(the frames around the peak whose smoothed relevance stays above 60% of the way from the "
                    "curve's minimum to the peak, read along neighbouring result clips of the same video; '+': it "
                    "continues into a neighbouring result clip) with a ready-to-paste `ffplay -ss START PATH` line. "
                    "--where filters first with a DuckDB condition over the view search_clips (one row per clip "
                    "and label; columns: clip_id, video_id, clip_index, start_s, end_s, clip_s, path, size, "
                    "duration_s, fps, width, height, codec, tagged_at, rank, label, score, video_score, "
                    "attribute_score, peak_s, top_label, labels, attributes; see docs/search.md).",
        examples=["bike search --store tags/ \"a dog catches a frisbee\" -k 5",
                  "bike search --store tags/ surfing --where \"label = 'surfing crowd' AND duration_s > 5\"",
                  "bike search --store tags/ --clip CLIP_ID            # more like this clip",
                  "bike search --store tags/ --like example.mp4 --format json",
                  "bike search --store tags/ \"goal\" -k 1 --open        # play the best moment",
                  "bike search --store tags/ goal --positive VID/3,VID/4 --negative VID/9   # relevance feedback"])
    p.add_argument("query", nargs="?", default=None, help="what to look for, in words")
    add_store_arg(p)
    add_top_arg(p, 10, "results")
    p.add_argument("--where", default=None, metavar="SQL",
                   help="DuckDB condition, e.g. \"label = 'surfing crowd' AND duration_s > 5\"")
    add_sql_limit_args(p, memory="1GB", seconds=60.0, max_bytes=None, what="the --where condition")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--like", default=None, metavar="VIDEO", help="query by an example video file")
    ex.add_argument("--clip", default=None, metavar="CLIP_ID", help="query by a stored clip (it comes first)")
    p.add_argument("--positive", action="append", default=None, metavar="CLIP_ID[,CLIP_ID...]",
                   help="relevance feedback: clips that ARE what you look for (repeat or comma-separate); the "
                        "results are re-ranked towards them (their neighbours join the candidates); with "
                        "positives the QUERY may be left out")
    p.add_argument("--negative", action="append", default=None, metavar="CLIP_ID[,CLIP_ID...]",
                   help="relevance feedback: clips that are NOT what you look for (ranked down)")
    output.add_format_arg(p, what="json: the whole answer, jsonl/csv: one line per clip")
    add_model_id_arg(p)
    p.add_argument("--candidates", type=positive_int, default=None, metavar="N",
                   help="FAISS candidates to re-rank (default max(200, 10·k))")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="the weights/checkpoint file the store was tagged with, if it has moved")
    p.add_argument("--weights", dest="checkpoint", help=output.argparse_suppress())      # the older name
    p.add_argument("--gpu", action="store_true", help="search the FAISS index on GPUs (faiss-gpu)")
    add_query_precision_arg(p)
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda when available)")
    p.add_argument("--no-dedup", action="store_true",
                   help="also show clips of videos that `bike dedup` found to be copies of a video ranked higher")
    p.add_argument("--channels", default="visual,text", metavar="LIST",
                   help="channels to search, fused into one list: visual, text (= subtitle, ocr, speech), or "
                        "any of those (default visual,text; a store without transcripts searches visual only)")
    p.add_argument("--fusion-weights", dest="fusion_weights", default=None, metavar="CH=W,...",
                   help="fusion weights per channel, e.g. visual=1,speech=0.5 (default 1 each; reciprocal rank "
                        "fusion, docs/search.md \"Text channels\")")
    p.add_argument("--open", action="store_true",
                   help="play the best result from its moment (ffplay, else the system player; needs a display)")
    p.set_defaults(func=run)


def _short(items, n: int, width: int) -> str:
    text = ", ".join(f"{a} ({s:.2f})" for a, s in items[:n])
    text = output.safe(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def shell_quote(path: str) -> str:
    """``path`` quoted for a POSIX shell; names with control characters in bash's ``$'...'`` form, whose
    escapes (``\\n``, ``\\x1b``) are exactly those of :func:`jobs.output.safe`: inert on screen, exact when pasted."""
    shown = output.safe(path)
    if shown == path:
        return shlex.quote(path)
    return "$'" + shown.replace("'", "\\'") + "'"


def play_command(r) -> str:
    """A shell line that plays result ``r`` from the start of its moment span (ready to paste, inert in a
    terminal)."""
    return f"ffplay -ss {play_from(r):.2f} {shell_quote(r.path or r.video_id)}"


def play_from(r) -> float:
    """Where playing result ``r`` starts: the start of its moment span (of the joined span when the moment
    crosses into a neighbouring result clip)."""
    return r.joined["start_s"] if r.joined else r.moment_start_s


def print_table(res, out=None) -> None:
    out = out or sys.stdout                  # looked up per call (tests and notebooks swap sys.stdout)
    warn = "   [RANDOM WEIGHTS: scores are meaningless]" if res.random_init else ""
    print(f"{res.kind} query {output.safe(repr(res.query))}: {len(res)} result(s) from {res.candidates} "
          f"candidates in {res.seconds * 1000:.0f} ms{warn}", file=out)
    if not res:
        return
    print(f"{'#':>3} {'score':>7} {'moment':>8} {'moment span':>15} {'clip span':>15}  {'clip_id':<36} "
          "labels | attributes", file=out)
    for r in res:
        span = f"{r.start_s:.1f}-{r.end_s:.1f}s"
        lo, hi = (r.joined["start_s"], r.joined["end_s"]) if r.joined else (r.moment_start_s, r.moment_end_s)
        moment = f"{lo:.1f}-{hi:.1f}s" + ("+" if r.joined else "")
        print(f"{r.rank:>3} {r.score:7.4f} {r.moment_s:7.2f}s {moment:>15} {span:>15}  {output.safe(r.clip_id):<36} "
              f"{_short(r.labels, 2, 50)} | {_short(r.attributes, 2, 40)}", file=out)
        print(f"{'':>12}{play_command(r)}", file=out)
        if getattr(r, "text", None) is not None or getattr(r, "matched", ["visual"]) != ["visual"]:
            words = output.safe(r.text or "")
            words = words if len(words) <= 100 else words[:99] + "…"
            print(f"{'':>12}matched {'+'.join(r.matched)}" + (f" at {r.moment_s:.2f}s: \"{words}\"" if r.text else ""),
                  file=out)


def has_display() -> bool:
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_result(r) -> None:
    """Start a player at the result's moment (detached); say why not when there is no display or player."""
    path = r.path
    if not path or not os.path.isfile(path):
        output.warn(f"bike: cannot open {output.safe(path or r.video_id)}: the file is not there")
        return
    if not has_display():
        output.warn("bike: --open: no display here; paste the ffplay line above on a machine with one")
        return
    if shutil.which("ffplay"):
        cmd = ["ffplay", "-autoexit", "-loglevel", "error", "-ss", f"{play_from(r):.2f}", path]
    else:
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        if not shutil.which(opener):
            output.warn("bike: --open: neither ffplay nor a system opener found")
            return
        cmd = [opener, path]
    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    output.info(f"bike: playing {output.safe(path)} from {play_from(r):.2f} s")


def run(args) -> int:
    from index.search.search import Searcher
    from index.store import Store, StoreError
    from index.store.where import WhereError

    from jobs.errors import UsageError
    if args.query is None and args.like is None and args.clip is None and not args.positive:
        raise UsageError("give a text QUERY, --like VIDEO, --clip CLIP_ID or --positive CLIP_ID")
    if args.query is not None and (args.like or args.clip):
        raise UsageError("give either a text QUERY or --like/--clip, not both")
    try:
        searcher = Searcher(Store(args.store), args.model_id, weights=args.checkpoint, device=args.device,
                            gpu=args.gpu, precision=args.precision, sql_limits=sql_limits(args))
        kwargs = {} if args.candidates is None else {"candidates": args.candidates}
        fb = {"positive": args.positive, "negative": args.negative}      # relevance feedback (index/search/feedback.py)
        if args.query is not None:                  # visual + text channels, fused (index/search/textsearch.py)
            from index.search.textsearch import fused_search
            res = fused_search(searcher, args.query, k=args.top, channels=args.channels, where=args.where,
                               weights=args.fusion_weights, dedup=not args.no_dedup, **fb, **kwargs)
        else:
            res = searcher.search(args.query, k=args.top, where=args.where, like=args.like, clip=args.clip,
                                  dedup=not args.no_dedup, **fb, **kwargs)
    except (StoreError, WhereError) as e:
        raise UsageError(str(e)) from None
    output.info(f"bike: model: {res.model}")
    for note in res.notes:
        output.info(f"bike: note: {note}")
    if args.format == "json":
        output.write_json(res.to_dict())
    elif args.format == "table":
        print_table(res)
    else:
        output.emit([{"model_id": res.model_id, "random_init": res.random_init, **r.to_dict()} for r in res],
                    args.format)
    if args.open and res:
        open_result(res[0])
    return 0
