"""``bike search --store DIR "QUERY"``: the best clips for a text (or an example), with the matching moment."""
from __future__ import annotations

import json
import sys

from index.search import Searcher
from index.store import Store, StoreError
from index.where import WhereError

from ..errors import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="text-to-video search over a store, with the moment in each clip",
        description="Search a tagged store. The query text is encoded as typed (no prompt template); FAISS finds "
                    "candidate clips, every candidate is re-ranked with concept spotting over its stored frame "
                    "embeddings, and each result names the moment (frame time of the saliency peak). "
                    "--where filters first with a DuckDB condition over the view search_clips (one row per clip "
                    "and label; columns: clip_id, video_id, clip_index, start_s, end_s, clip_s, path, size, "
                    "duration_s, fps, width, height, codec, tagged_at, rank, label, score, video_score, "
                    "attribute_score, peak_s, top_label, labels, attributes; see docs/search.md).")
    p.add_argument("query", nargs="?", default=None, help="what to look for, in words")
    p.add_argument("--store", required=True, metavar="DIR", help="the store directory (from `bike tag`)")
    p.add_argument("-k", type=int, default=10, help="results to return (default 10)")
    p.add_argument("--where", default=None, metavar="SQL",
                   help="DuckDB condition, e.g. \"label = 'surfing crowd' AND duration_s > 5\"")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--like", default=None, metavar="VIDEO", help="query by an example video file")
    ex.add_argument("--clip", default=None, metavar="CLIP_ID", help="query by a stored clip (it comes first)")
    p.add_argument("--format", default="table", choices=("table", "json"), help="output (default table)")
    p.add_argument("--model-id", default=None, metavar="ID",
                   help="which model's clips (default: the only one, else the most recently tagged)")
    p.add_argument("--candidates", type=int, default=None, metavar="N",
                   help="FAISS candidates to re-rank (default max(200, 10·k))")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="the weights/checkpoint file the store was tagged with, if it has moved")
    p.add_argument("--gpu", action="store_true", help="search the FAISS index on GPUs (faiss-gpu)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda when available)")
    p.set_defaults(func=run)


def _short(items, n: int, width: int) -> str:
    text = ", ".join(f"{a} ({s:.2f})" for a, s in items[:n])
    return text if len(text) <= width else text[:width - 1] + "…"


def print_table(res, out=None) -> None:
    out = out or sys.stdout                  # looked up per call (tests and notebooks swap sys.stdout)
    warn = "   [RANDOM WEIGHTS: scores are meaningless]" if res.random_init else ""
    print(f"{res.kind} query {res.query!r}: {len(res)} result(s) from {res.candidates} candidates "
          f"in {res.seconds * 1000:.0f} ms{warn}", file=out)
    if not res:
        return
    print(f"{'#':>3} {'score':>7} {'moment':>8} {'clip span':>15}  {'video':<34} labels | attributes", file=out)
    for r in res:
        path = r.path or r.video_id
        path = path if len(path) <= 34 else "…" + path[-33:]
        span = f"{r.start_s:.1f}-{r.end_s:.1f}s"
        print(f"{r.rank:>3} {r.score:7.4f} {r.moment_s:7.2f}s {span:>15}  {path:<34} "
              f"{_short(r.labels, 2, 50)} | {_short(r.attributes, 2, 40)}", file=out)


def run(args) -> int:
    if args.query is None and args.like is None and args.clip is None:
        raise UsageError("give a text QUERY, --like VIDEO or --clip CLIP_ID")
    if args.query is not None and (args.like or args.clip):
        raise UsageError("give either a text QUERY or --like/--clip, not both")
    try:
        searcher = Searcher(Store(args.store), args.model_id, weights=args.weights, device=args.device,
                            gpu=args.gpu)
        kwargs = {} if args.candidates is None else {"candidates": args.candidates}
        res = searcher.search(args.query, k=args.k, where=args.where, like=args.like, clip=args.clip, **kwargs)
    except (StoreError, WhereError) as e:
        raise UsageError(str(e)) from None
    print(f"bike: model: {res.model}", file=sys.stderr)
    for note in res.notes:
        print(f"bike: note: {note}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(res.to_dict()))
    else:
        print_table(res)
    return 0
