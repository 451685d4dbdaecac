"""Per-frame embeddings of candidate clips, read from the store's ``clips`` table for re-ranking.

:class:`ClipFrames` answers ``get(clip_ids)`` → the clips' frame embeddings (after the temporal header),
frame times and spans. A store whose clips fit in ``cache_bytes`` (default 1 GiB of float16 frames, about
130k clips of 8×512) is read once into memory and every query after that is a lookup; a larger one is
queried per search through DuckDB (``clip_id IN (...)`` over the Parquet shards), which costs a scan of the
``clip_id`` column per query.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from index.store import Store

CACHE_BYTES = 1 << 30
_COLS = ["clip_id", "model_id", "video_id", "start_s", "end_s", "frame_times", "frame_embeddings"]


@dataclass
class ClipRow:
    clip_id: str
    video_id: str
    start_s: float
    end_s: float
    frame_times: np.ndarray      # (T,) seconds from the start of the video
    frames: np.ndarray           # (T, D) float16, after the temporal header


def _frames_of(t: pa.Table) -> "list[np.ndarray]":
    """list<list<float16>> column → one (T, D) array per row (one reshape when all rows share T×D)."""
    col = t["frame_embeddings"].combine_chunks()
    inner = col.flatten()
    values = np.asarray(inner.flatten(), dtype=np.float16)
    t_len = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    d_len = pc.list_value_length(inner).to_numpy(zero_copy_only=False)
    if len(t_len) and (t_len == t_len[0]).all() and (d_len == d_len[0]).all():
        return list(values.reshape(len(t_len), int(t_len[0]), int(d_len[0])))
    out, at, row = [], 0, 0
    for n in t_len:
        d = int(d_len[row]) if n else 0
        out.append(values[at:at + n * d].reshape(n, d))
        at, row = at + n * d, row + n
    return out


def _rows(t: pa.Table) -> "list[ClipRow]":
    frames = _frames_of(t)
    times = t["frame_times"].to_pylist()
    return [ClipRow(c, v, float(s), float(e), np.asarray(ft, np.float64), f)
            for c, v, s, e, ft, f in zip(t["clip_id"].to_pylist(), t["video_id"].to_pylist(),
                                         t["start_s"].to_pylist(), t["end_s"].to_pylist(), times, frames)]


class ClipFrames:
    """Frame embeddings of one model's clips (see the module docstring)."""

    def __init__(self, store: Store, model_id: str, cache_bytes: int = CACHE_BYTES):
        self.store, self.model_id, self.cache_bytes = store, model_id, cache_bytes
        self._cache: "dict[str, ClipRow] | None" = None
        self._cached_batches: "set[str]" = set()
        self._fits: "bool | None" = None

    def _batches(self) -> "list[dict]":
        return [c for c in self.store.commits() if c["model_id"] == self.model_id and c["tables"].get("clips")]

    def _estimate_bytes(self, batches) -> int:
        n = sum(c["tables"]["clips"] for c in batches)
        row = self.store.read("models", ["frames"], model_id=self.model_id).to_pylist()
        frames = int(row[-1]["frames"]) if row and row[-1]["frames"] else 8
        return n * frames * 2 * 1024       # float16, up to 1024-d (ViT-L: 768)

    def _load(self, batches) -> None:
        """Read the clips of ``batches`` into the cache (all shards once; new shards on later calls)."""
        for c in batches:
            if c["batch"] in self._cached_batches:
                continue
            t = self.store.read_shard("clips", c, columns=_COLS)
            if t is not None:
                t = t.filter(pc.equal(t["model_id"], self.model_id))
                for r in _rows(t):
                    self._cache[r.clip_id] = r
            self._cached_batches.add(c["batch"])

    @property
    def in_memory(self) -> bool:
        """Whether this model's clips fit the cache (decided once, on first use)."""
        if self._fits is None:
            self._fits = self._estimate_bytes(self._batches()) <= self.cache_bytes
        return self._fits

    def get(self, clip_ids) -> "dict[str, ClipRow]":
        """clip_id → :class:`ClipRow` for the ids the store holds (missing ids are left out)."""
        clip_ids = list(dict.fromkeys(clip_ids))
        batches = self._batches()
        if self.in_memory:
            if self._cache is None:
                self._cache = {}
            new = [c for c in batches if c["batch"] not in self._cached_batches]
            gone = self._cached_batches - {c["batch"] for c in batches}
            if new or gone:
                if gone or any(c.get("replace") for c in new):   # --force rewrote older shards, or a batch
                    self._cache, self._cached_batches = {}, set()  # went (damaged, merged): read all again
                self._load(batches)
            return {c: self._cache[c] for c in clip_ids if c in self._cache}
        return self._query(clip_ids)

    def _query(self, clip_ids) -> "dict[str, ClipRow]":
        if not clip_ids:
            return {}
        con = self.store.connect()
        rel = con.sql(f"SELECT {', '.join(_COLS)} FROM clips WHERE model_id = $m AND clip_id IN "
                      f"(SELECT unnest($ids))", params={"m": self.model_id, "ids": clip_ids})
        t = getattr(rel, "to_arrow_table", None) or getattr(rel, "fetch_arrow_table", None) or rel.arrow
        t = t()                                     # DuckDB 2: to_arrow_table (1.x: fetch_arrow_table / arrow)
        if isinstance(t, pa.RecordBatchReader):
            t = t.read_all()
        return {r.clip_id: r for r in _rows(t)}
