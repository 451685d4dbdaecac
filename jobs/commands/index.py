"""``bike index --store DIR``: build or extend the FAISS index of a store's clip embeddings (index/vectors.py)."""
from __future__ import annotations

import sys

from index.store import Store, StoreError
from index.vectors import KINDS, update_index

from ..errors import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "index", help="build or extend the FAISS index of a store's clip embeddings",
        description="Build the FAISS index over the 'embeddings' table of one model, or extend it with the clips "
                    "of batches tagged since (a re-tag with --force or a change of kind rebuilds it). "
                    "--kind auto: exact (flat) below 100k clips, IVF-Flat up to 10M, IVF-PQ above. "
                    "The index lives in STORE/_index/<model_id>/; search works without it (exact scan).")
    p.add_argument("--store", required=True, metavar="DIR", help="the store directory (from `bike tag`)")
    p.add_argument("--kind", default="auto", choices=KINDS, help="index kind (default auto: by size)")
    p.add_argument("--gpu", action="store_true", help="train/add on the GPUs of a faiss-gpu install")
    p.add_argument("--model-id", default=None, metavar="ID",
                   help="which model's clips (default: the only one, else the most recently tagged)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        report = update_index(Store(args.store), args.model_id, kind=args.kind, gpu=args.gpu,
                              log=lambda msg: print(f"bike: {msg}", file=sys.stderr))
    except StoreError as e:
        raise UsageError(str(e)) from None
    print(f"bike: {report.line()}")
    return 0
