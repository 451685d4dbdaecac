"""``bike index --store DIR``: build or extend the FAISS index of a store's clip embeddings (index/search/vectors.py),
and rebuild the BM25 index of its text channels when transcripts batches are not covered (index/search/textindex.py)."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import add_store_arg, add_model_id_arg, command_parser


def register(sub) -> None:
    p = command_parser(
        sub, "index", help="build or extend the FAISS index of a store's clip embeddings",
        description="Build the FAISS index over the 'embeddings' table of one model, or extend it with the clips "
                    "of batches tagged since (a re-tag with --force or a change of kind rebuilds it). "
                    "--kind auto: exact (flat) below 100k clips, IVF-Flat (ivf) up to 10M, IVF-PQ (ivfpq) "
                    "above; another kind sticks (later updates, e.g. by `bike tag`, keep it) until --kind "
                    "auto or another kind is given. "
                    "The index lives in STORE/_index/<model_id>/; search works without it (exact scan). "
                    "The BM25 index of the text channels (STORE/_index/_text/) is rebuilt too when a "
                    "transcripts batch is not covered. No model is loaded.",
        examples=["bike index --store tags/", "bike index --store tags/ --kind ivf --format json",
                  "bike index --store tags/ --kind auto        # choose by size again after another --kind"])
    add_store_arg(p)
    p.add_argument("--kind", default=None, type=_kind, metavar="KIND",
                   help="index kind: auto (by size), flat, ivf (alias ivf-flat), ivfpq (alias ivf-pq) or hnsw "
                        "(default: the kind last asked for, else auto)")
    p.add_argument("--gpu", action="store_true", help="train/add on the GPUs of a faiss-gpu install")
    add_model_id_arg(p)
    output.add_format_arg(p)
    p.set_defaults(func=run)


#: Other spellings of the index kinds (the names the help and the docs use for them).
KIND_ALIASES = {"ivf-flat": "ivf", "ivf_flat": "ivf", "ivf-pq": "ivfpq", "ivf_pq": "ivfpq", "exact": "flat"}
#: The kinds of index.search.vectors.KINDS (kept here so that `bike --help` does not import FAISS; a test checks them).
KIND_NAMES = ("auto", "flat", "ivf", "ivfpq", "hnsw")


def _kind(text: str) -> str:
    import argparse
    kind = KIND_ALIASES.get(text.strip().lower(), text.strip().lower())
    if kind not in KIND_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(KIND_NAMES)} (or ivf-flat, ivf-pq)")
    return kind


def run(args) -> int:
    from index.store import Store, StoreError
    from index.search.textindex import has_transcripts, update_text_index
    from index.search.vectors import update_index

    from jobs.errors import UsageError
    try:
        store = Store(args.store)
        # the BM25 index of the text channels (index/search/textindex.py), first: it needs no embeddings
        text = update_text_index(store) if has_transcripts(store) else None
        report = update_index(store, args.model_id, kind=args.kind, gpu=args.gpu,
                              log=lambda msg: output.info(f"bike: {msg}"))
    except StoreError as e:
        raise UsageError(str(e)) from None

    def table(r, out):
        print(f"bike: {output.safe(r.line())}", file=out)
        if text is not None:
            print(f"bike: {output.safe(text.line())}", file=out)
    if text is not None and args.format != "table":      # the emitted record stays the vector index's
        output.info(f"bike: {text.line()}")
    output.emit(report, args.format, table_fn=table)
    return 0
