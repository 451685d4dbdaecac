"""``bike serve --store DIR``: a search service and web page over a store (docs/serve.md)."""
from __future__ import annotations

import argparse
import sys

from jobs import output
from jobs.errors import UsageError
from jobs.cli.options import add_store_arg, add_model_id_arg, add_query_precision_arg, command_parser, positive_float, positive_int
from jobs.cli.sqloptions import add_sql_limit_args


def register(sub) -> None:
    p = command_parser(
        sub, "serve", help="search service and web page over a store (http://127.0.0.1:8765/)",
        description="Load the store's model, FAISS index and frame cache once, then answer searches over HTTP "
                    "(JSON API under /api, the same objects as `bike search --format json`) and serve a page to "
                    "search, play the moment, browse tags and run read-only SQL. Binds 127.0.0.1; another "
                    "--host needs --token or --token-file. Batches that `bike tag` commits while it runs appear "
                    "without a restart. API and security: docs/serve.md.",
        examples=["bike serve --store tags/",
                  "bike serve --store tags/ --host 0.0.0.0 --token-file ~/.bike-token --port 8080"])
    add_store_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (this machine only unless changed)")
    p.add_argument("--port", type=_port, default=8765, help="port")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--token", default=None, metavar="T",
                     help="require this token (at least 16 characters) on every /api request")
    tok.add_argument("--token-file", default=None, metavar="F", help="read the token from this file (first line)")
    add_model_id_arg(p)
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="the weights/checkpoint file the store was tagged with, if it has moved")
    p.add_argument("--weights", dest="checkpoint", help=output.argparse_suppress())      # the older name
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda when available)")
    add_query_precision_arg(p)
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch/FAISS threads per query (1: requests run side by side instead)")
    p.add_argument("--cache-gb", type=positive_float, default=None, metavar="GB",
                   help="memory for clip frame embeddings (default 1; the estimate assumes 1024-d float16 frames, "
                        "so a store of small-d clips may need more to be held in memory)")
    p.add_argument("--sql-rows", type=positive_int, default=1000, metavar="N", help="row limit of /api/sql")
    add_sql_limit_args(p, memory="512MB", seconds=5.0, max_bytes="16MB",
                       what="each /api/sql query and each search's where filter (each runs in a process of its "
                            "own; at most 4 at once)")
    p.add_argument("--sql-seconds", dest="sql_timeout", type=positive_float, default=argparse.SUPPRESS,
                   help=output.argparse_suppress())     # the older name of --sql-timeout
    p.add_argument("--max-upload-mb", type=positive_float, default=50.0, metavar="MB",
                   help="largest video accepted by POST /api/search")
    p.add_argument("--decode-workers", type=positive_int, default=2, metavar="N",
                   help="thumbnails and uploaded examples decoded at once (more wait; a full queue gets 503)")
    p.add_argument("--thumb-timeout", type=positive_float, default=10.0, metavar="S",
                   help="a thumbnail not decoded within S seconds is answered 503 with Retry-After")
    p.add_argument("--thumb-cache-mb", type=positive_float, default=256.0, metavar="MB",
                   help="thumbnail cache on disk, per store (least recently used thumbnails are deleted first)")
    p.add_argument("--header-timeout", type=positive_float, default=10.0, metavar="S",
                   help="close a connection whose request line and headers have not arrived within S seconds")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                   help="uvicorn log level (info shows every request)")
    p.set_defaults(func=run)


def _port(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: must be <= 65535")
    return port


def _token(args) -> "str | None":
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as e:
            raise UsageError(f"{args.token_file}: cannot read the token file ({e.strerror or e})") from None
        if not token:
            raise UsageError(f"{args.token_file}: the token file is empty")
        return token
    if args.token is not None and not args.token.strip():
        raise UsageError("--token: empty token")
    return args.token


def run(args) -> int:
    token = _token(args)
    from jobs.serve.security import BindError, check_bind, check_token
    try:
        check_token(token, args.token_file or "--token")
        check_bind(args.host, token)
    except BindError as e:
        raise UsageError(str(e)) from None

    import faiss
    import torch

    from index.store import Store

    from jobs.serve.app import create_app
    from jobs.serve.limits import Limits
    from jobs.serve.server import make_server
    from jobs.serve.service import Service
    torch.set_num_threads(args.threads)                 # once, here: queries never change it
    faiss.omp_set_num_threads(args.threads)
    limits = Limits(sql_rows=args.sql_rows, sql_seconds=args.sql_timeout, sql_memory_bytes=args.sql_memory,
                    sql_max_bytes=args.sql_max_bytes,
                    max_upload_bytes=int(args.max_upload_mb * (1 << 20)), decode_workers=args.decode_workers,
                    thumb_timeout_s=args.thumb_timeout, thumb_cache_bytes=int(args.thumb_cache_mb * (1 << 20)),
                    header_timeout_s=args.header_timeout)
    store = Store(args.store)
    service = Service(store, model_id=args.model_id, limits=limits, weights=args.checkpoint, device=args.device,
                      precision=args.precision,
                      cache_bytes=None if args.cache_gb is None else int(args.cache_gb * (1 << 30)))
    if service.searcher is None:                 # still served: the error report and SQL help exactly then
        output.warn(f"bike: {service.unsearchable}")
        service.warm()                           # the SQL processes: nothing else to load yet
    else:
        output.info(f"bike: serving {service.store.root} (model {service.model_id}); loading…")
        service.warm()
        desc, random_init = service.searcher.describe_model()
        print(f"bike: model: {desc}" + ("   [RANDOM WEIGHTS: scores are meaningless]" if random_init else ""),
              file=sys.stderr)
    server = make_server(create_app(service, token), args.host, args.port, limits, args.log_level)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"bike: open http://{host}:{args.port}/" + ("  (token required)" if token else ""),
          file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        service.decoding.close()
    return 0
