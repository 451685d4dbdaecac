"""A model's clip embeddings read in bounded chunks, for building FAISS indexes larger than memory.

``bike index`` on a large store never holds all vectors at once (index/search/vectors.py):

1. :func:`scan_ids` reads only the ``clip_id`` column of every shard: how many vectors there are, their width,
   and which row of each clip is the newest (a replacement whose clean-up a crash interrupted can leave a clip
   in two batches; the newest row wins, as in ``_newest_only``);
2. :func:`sample` gathers a uniform random sample of the kept rows (to train IVF / PQ);
3. :func:`chunks` yields the kept rows in chunks of at most ``chunk`` vectors, to ``index.add`` one by one.

Memory: the clip ids (~40 bytes each), one chunk of vectors, and the training sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from index.store import Store

#: Rows read from Parquet at a time.
READ_ROWS = 65_536


@dataclass
class Scan:
    """What :func:`scan_ids` found: the shards to read, every row's clip id, and which rows to keep."""
    paths: list                 # Parquet shards (paths or URLs), in commit order
    ids: list                   # clip_id of every row of model_id in those files, in reading order
    keep: np.ndarray            # bool per row: the newest row of its clip (and not in ``skip``)
    dim: int                    # vector width (0 when there are no rows)
    store: "Store | None" = None  # the store they are read from (its filesystem, index/store/storefs.py)
    records: list = None        # the commit record of each shard

    @property
    def count(self) -> int:
        return int(self.keep.sum())


def _shards(store: Store, model_id: str, batches) -> list:
    """Commit records of the batches with embeddings of ``model_id`` (in ``batches``; all when None)."""
    wanted = None if batches is None else set(batches)
    return [c for c in store.commits() if c["model_id"] == model_id and c["tables"].get("embeddings")
            and (wanted is None or c["batch"] in wanted)]


def _batches(store: Store, rec: dict, model_id: str, columns):
    """Record batches of one shard restricted to ``model_id`` (none when the shard is gone: rewritten away
    by a replacement batch)."""
    f = store.open_shard("embeddings", rec)
    if f is None:
        return
    # a shard on object storage is a Python file object: read it in this thread (index/store/parquetio.py says why)
    for rb in f.iter_batches(batch_size=READ_ROWS, columns=[*columns, "model_id"], use_threads=not store.remote):
        mask = pc.equal(rb.column(rb.schema.get_field_index("model_id")), model_id)
        yield rb.filter(mask)


def scan_ids(store: Store, model_id: str, batches=None, skip: "set | None" = None) -> Scan:
    """Pass 1 (clip ids only) over the embeddings of ``model_id`` in ``batches`` (all when None); rows whose
    clip id is in ``skip`` (already indexed) are not kept."""
    records = _shards(store, model_id, batches)
    ids: list = []
    dim = 0
    for rec in records:
        for rb in _batches(store, rec, model_id, ["clip_id"]):
            ids.extend(rb.column(0).to_pylist())
        if not dim:
            for rb in _batches(store, rec, model_id, ["embedding"]):
                if rb.num_rows:
                    dim = len(rb.column(0)[0])
                    break
    last = {c: i for i, c in enumerate(ids)}
    keep = np.zeros(len(ids), bool)
    keep[list(last.values())] = True
    if skip:
        keep &= np.fromiter((c not in skip for c in ids), bool, len(ids))
    return Scan([store.shard_path("embeddings", r) for r in records], ids, keep, dim, store, records)


def _rows(scan: Scan, model_id: str):
    """Pass over every row of the scan: yields (first row number, clip ids, vectors float32 (n, dim))."""
    row = 0
    for p, rec in zip(scan.paths, scan.records):
        for rb in _batches(scan.store, rec, model_id, ["clip_id", "embedding"]):
            n = rb.num_rows
            if not n:
                continue
            emb = rb.column(1)
            lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
            if (lengths != scan.dim).any():
                from .vectors import VectorIndexError
                raise VectorIndexError(f"{p}: embeddings of widths {sorted(set(lengths.tolist()))} where the "
                                       f"model's are {scan.dim}-d; re-tag this model with `bike tag --force`")
            flat = np.asarray(emb.flatten(), dtype=np.float32)
            yield row, rb.column(0).to_pylist(), flat.reshape(n, scan.dim)
            row += n


def chunks(scan: Scan, model_id: str, chunk: int):
    """Kept rows in chunks of at most ``chunk``: yields (clip ids, vectors (m, dim) float32)."""
    buf_ids: list = []
    buf_vecs: list = []
    size = 0
    for start, ids, vecs in _rows(scan, model_id):
        mask = scan.keep[start:start + len(ids)]
        if not mask.any():
            continue
        buf_ids.extend(c for c, k in zip(ids, mask) if k)
        buf_vecs.append(vecs[mask])
        size += int(mask.sum())
        while size >= chunk:
            allv = np.concatenate(buf_vecs)
            yield buf_ids[:chunk], allv[:chunk]
            buf_ids, buf_vecs, size = buf_ids[chunk:], [allv[chunk:]], size - chunk
    if size:
        yield buf_ids, np.concatenate(buf_vecs)


def sample(scan: Scan, model_id: str, size: int, seed: int = 0) -> np.ndarray:
    """A uniform random sample of ``size`` kept rows (all of them when fewer), (size, dim) float32."""
    kept = np.flatnonzero(scan.keep)
    if size < len(kept):
        kept = np.sort(np.random.default_rng(seed).choice(kept, size, replace=False))
    out = np.zeros((len(kept), scan.dim), np.float32)
    at = 0
    for start, ids, vecs in _rows(scan, model_id):
        lo = np.searchsorted(kept, start)
        hi = np.searchsorted(kept, start + len(ids))
        if hi > lo:
            out[at:at + hi - lo] = vecs[kept[lo:hi] - start]
            at += hi - lo
        if at == len(kept):
            break
    return out
