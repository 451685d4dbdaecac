"""``bike index --store DIR``: build or extend the FAISS index of a store's clip embeddings (index/vectors.py)."""
from __future__ import annotations

from .. import output
from ..options import add_endpoint_arg, apply_endpoint, add_model_id_arg, command_parser


def register(sub) -> None:
    p = command_parser(
        sub, "index", help="build or extend the FAISS index of a store's clip embeddings",
        description="Build the FAISS index over the 'embeddings' table of one model, or extend it with the clips "
                    "of batches tagged since (a re-tag with --force or a change of kind rebuilds it). "
                    "--kind auto: exact (flat) below 100k clips, IVF-Flat up to 10M, IVF-PQ above. "
                    "The index lives in STORE/_index/<model_id>/; search works without it (exact scan). "
                    "No model is loaded.",
        examples=["bike index --store tags/", "bike index --store tags/ --kind ivf-flat --format json"])
    p.add_argument("--store", required=True, metavar="DIR", help="the store: a directory, or s3://bucket/prefix/ (from `bike tag`)")
    add_endpoint_arg(p)
    p.add_argument("--kind", default="auto", metavar="KIND",
                   help="index kind: auto (by size) or one of index.vectors.KINDS (flat, ivf, ivfpq, ...)")
    p.add_argument("--gpu", action="store_true", help="train/add on the GPUs of a faiss-gpu install")
    add_model_id_arg(p)
    output.add_format_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    apply_endpoint(args)
    from index.store import Store, StoreError
    from index.vectors import KINDS, update_index

    from ..errors import UsageError
    if args.kind not in KINDS:
        raise UsageError(f"--kind {args.kind}: choose one of {', '.join(KINDS)}")
    try:
        report = update_index(Store(args.store), args.model_id, kind=args.kind, gpu=args.gpu,
                              log=lambda msg: output.info(f"bike: {msg}"))
    except StoreError as e:
        raise UsageError(str(e)) from None
    output.emit(report, args.format, table_fn=lambda r, out: print(f"bike: {output.safe(r.line())}", file=out))
    return 0
