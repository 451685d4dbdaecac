"""Near-duplicate videos and clips, from the frame prints the store holds (no decoding).

Copies fill real archives: the same video re-encoded, resized, cropped a little, trimmed at either end.
``bike tag`` stores a small print of every sampled frame (the ``prints`` table, engine/model/fingerprint.py);
this module compares them:

1. **Candidates**: a FAISS search of every frame print among all frame prints (its ``NEIGHBOURS`` nearest)
   finds the pairs of clips of different videos that share a frame with cosine ``>= CANDIDATE_RADIUS``
   (loose on purpose: it only avoids comparing every pair of videos).
2. **Videos**: for each pair of videos with a candidate clip pair, every frame of the video with fewer frames
   is matched to its most similar frame of the other (cosine of prints). ``similarity`` is the median of those
   best matches: a copy, even a trimmed one, matches frame for frame over its whole length; a different
   video does not. ``offset_s`` is the median of (time in b − time in a) over frames that match well: where
   a sits inside b (a trimmed copy's cut).
3. **Clips**: the candidate clip pairs scored the same way, frame by frame (a clip reused in another
   video shows here even when the videos are not copies).

A pair is a duplicate when ``similarity >= threshold`` (default ``THRESHOLD``). ``a`` < ``b``
(lexicographically) in every row. The result is written by :func:`write_duplicates` to
``STORE/_dedup/<model_id>.parquet`` (replaced atomically; a derived file like the FAISS index, recomputed by
``bike dedup``), which ``bike sql`` shows as the view ``duplicates``.
"""
from __future__ import annotations

import io
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.model.config import DEFAULTS

from index.store.parquetio import read_parquet
from index.store.schema import DEDUP_DIR, DUPLICATES
from index.store import Store, StoreError

#: Default similarity (median best-match cosine of frame prints) from which a pair is a duplicate.
THRESHOLD = DEFAULTS.dedup_threshold
#: Cosine of two frame prints from which their clips are compared frame by frame (candidates).
CANDIDATE_RADIUS = 0.4
#: Nearest frame prints looked at per frame when finding candidates.
NEIGHBOURS = 16
#: Up to this many frames the candidate search is exact (FAISS flat); above, IVF.
EXACT_FRAMES = 200_000
SEARCH_CHUNK = 4096
#: A frame pair counts for ``offset_s`` when its cosine is at least this.
OFFSET_MATCH = 0.5

SCHEMA = DUPLICATES


@dataclass
class Prints:
    """Every clip's frame prints of one model, grouped: clip ids, their video ids, times and prints."""
    clip_ids: list
    video_ids: list
    times: list                 # [np.ndarray (T,)]
    prints: list                # [np.ndarray (T, DIM) float32]

    def __len__(self) -> int:
        return len(self.clip_ids)


def load_prints(store: Store, model_id: str) -> Prints:
    t = store.read("prints", ["clip_id", "video_id", "frame_times", "prints"], model_id=model_id)
    ids, vids, times, prints = [], [], [], []
    for cid, vid, ft, pr in zip(t["clip_id"].to_pylist(), t["video_id"].to_pylist(), t["frame_times"].to_pylist(),
                                t["prints"].to_pylist()):
        if not pr:
            continue
        ids.append(cid)
        vids.append(vid)
        times.append(np.asarray(ft, np.float32))
        prints.append(np.asarray(pr, np.float32))
    return Prints(ids, vids, times, prints)


def match(pa_: np.ndarray, ta: np.ndarray, pb: np.ndarray, tb: np.ndarray) -> "tuple[float, float | None]":
    """(similarity, offset_s) of two frame sequences (see the module docstring): the shorter one's frames
    matched into the other. ``offset_s`` is b's time minus a's time (None when no frame matches well)."""
    flip = len(pa_) > len(pb)
    short, ts, long_, tl = (pb, tb, pa_, ta) if flip else (pa_, ta, pb, tb)
    s = short @ long_.T                                        # (n_short, n_long) cosines
    best = s.argmax(axis=1)
    top = s[np.arange(len(short)), best]
    sim = float(np.median(top)) if len(top) else 0.0
    good = top >= OFFSET_MATCH
    if not good.any():
        return sim, None
    off = float(np.median(tl[best[good]] - ts[good]))
    return sim, (-off if flip else off)


def _frame_index(vectors: np.ndarray):
    """A FAISS inner-product index over frame prints: exact up to ``EXACT_FRAMES``, IVF above."""
    import faiss
    d = vectors.shape[1]
    if len(vectors) <= EXACT_FRAMES:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(min(4096, max(64, np.sqrt(len(vectors)))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(vectors[rng.choice(len(vectors), min(len(vectors), 64 * nlist), replace=False)])
        index.nprobe = 16
    index.add(vectors)
    return index


def _distinct(prints: np.ndarray, same: float = 0.98) -> np.ndarray:
    """A clip's frame prints without repeats (a frame within ``same`` cosine of a kept one is dropped) and
    without flat frames: a static shot is one print, so it cannot crowd other videos out of a neighbour list."""
    kept: list = []
    for x in prints:
        if not np.any(x) or any(float(x @ y) >= same for y in kept):
            continue
        kept.append(x)
    return np.asarray(kept, np.float32).reshape(-1, prints.shape[1])


def _candidates(p: Prints, radius: float, k: int = NEIGHBOURS) -> "list[tuple[int, int]]":
    """Pairs (i, j), i < j, of clips of different videos where a frame of one has a frame of the other among
    its ``k`` nearest prints with a cosine of at least ``radius``."""
    if len(p) < 2:
        return []
    reps = [_distinct(x) for x in p.prints]
    frames = np.concatenate(reps).astype(np.float32)
    if not len(frames):
        return []
    owner = np.concatenate([np.full(len(x), i) for i, x in enumerate(reps)])
    vids = np.asarray(p.video_ids, dtype=object)
    index = _frame_index(frames)
    pairs = set()
    for lo in range(0, len(frames), SEARCH_CHUNK):
        sims, found = index.search(frames[lo:lo + SEARCH_CHUNK], min(k + 1, len(frames)))
        for row, (ss, ff) in enumerate(zip(sims, found), lo):
            i = int(owner[row])
            for s, f in zip(ss, ff):
                if f < 0 or s < radius:
                    continue
                j = int(owner[f])
                if vids[i] != vids[j]:
                    pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def find_duplicates(p: Prints, threshold: float = THRESHOLD, radius: float = CANDIDATE_RADIUS,
                    clips: bool = True, pairs: "list | None" = None) -> "list[dict]":
    """Duplicate videos (and clips) among ``p`` → rows of :data:`SCHEMA` (without model_id/threshold/found_at).
    ``pairs``: the candidate clip pairs when already computed (:func:`_candidates`)."""
    pairs = _candidates(p, radius) if pairs is None else pairs
    rows = []
    videos: dict = defaultdict(list)                      # video_id → indices of its clips, in time order
    for i, vid in enumerate(p.video_ids):
        videos[vid].append(i)
    for v in videos.values():
        v.sort(key=lambda i: float(p.times[i][0]) if len(p.times[i]) else 0.0)
    seq = {v: (np.concatenate([p.prints[i] for i in idx]), np.concatenate([p.times[i] for i in idx]))
           for v, idx in videos.items()}
    seen = set()
    for i, j in pairs:
        a, b = sorted((p.video_ids[i], p.video_ids[j]))
        if (a, b) in seen:
            continue
        seen.add((a, b))
        sim, off = match(seq[a][0], seq[a][1], seq[b][0], seq[b][1])
        if sim >= threshold:
            rows.append({"kind": "video", "a": a, "b": b, "similarity": sim, "offset_s": off})
    if clips:
        for i, j in pairs:
            (ca, ia), (cb, ib) = sorted([(p.clip_ids[i], i), (p.clip_ids[j], j)])
            sim, off = match(p.prints[ia], p.times[ia], p.prints[ib], p.times[ib])
            if sim >= threshold:
                rows.append({"kind": "clip", "a": ca, "b": cb, "similarity": sim, "offset_s": off})
    rows.sort(key=lambda r: (r["kind"] != "video", -r["similarity"], r["a"], r["b"]))
    return rows


def dedup_key(model_id: str) -> str:
    return f"{DEDUP_DIR}/{model_id}.parquet"


def write_duplicates(store: Store, model_id: str, rows: "list[dict]", threshold: float) -> str:
    """Replace the store's duplicates of ``model_id`` with ``rows`` (written whole, then renamed)."""
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    full = [{**r, "model_id": model_id, "threshold": float(threshold), "found_at": now} for r in rows]
    table = pa.Table.from_pylist(full, schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = dedup_key(model_id)
    store.fs.write(key, buf.getvalue())
    return key


def read_duplicates(store: Store, model_id: str) -> "pa.Table | None":
    """The last ``bike dedup`` result of ``model_id``, or None when it never ran."""
    try:
        raw = store.fs.read(dedup_key(model_id))
    except (FileNotFoundError, OSError):
        return None
    try:
        return read_parquet(raw, schema=SCHEMA)
    except Exception as e:  # noqa: BLE001 - a damaged derived file: say so, `bike dedup` rewrites it
        raise StoreError(f"{store.root}: {dedup_key(model_id)} is damaged ({type(e).__name__}); "
                         "rerun `bike dedup` to rewrite it") from None


@dataclass
class DedupReport:
    model_id: str
    clips: int                  # clips with prints
    videos: int
    candidates: int
    rows: list
    seconds: float
    missing: int                # clips of this model with no prints (tagged before prints existed)


def dedup(store: "Store | str", model_id: "str | None" = None, threshold: float = THRESHOLD,
          write: bool = True) -> DedupReport:
    """Find and (``write``) store the duplicates of one model's clips."""
    from .vectors import resolve_model_id
    store = store if isinstance(store, Store) else Store(store)
    mid = resolve_model_id(store, model_id)
    t0 = time.perf_counter()
    p = load_prints(store, mid)
    n_clips = store.read("clips", ["clip_id"], model_id=mid).num_rows
    pairs = _candidates(p, CANDIDATE_RADIUS)
    rows = find_duplicates(p, threshold, pairs=pairs)
    if write:
        with store.lock():
            write_duplicates(store, mid, rows, threshold)
    return DedupReport(mid, len(p), len(set(p.video_ids)), len(pairs), rows, time.perf_counter() - t0,
                       max(0, n_clips - len(p)))


def video_groups(store: Store, model_id: str) -> "dict[str, str]":
    """video_id → one id standing for all its copies (the smallest of the group), from the last ``bike dedup``
    of ``model_id``; empty when it never ran. Copies of copies are one group."""
    table = read_duplicates(store, model_id)
    if table is None or not table.num_rows:
        return {}
    parent: dict = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x
    for kind, a, b in zip(table["kind"].to_pylist(), table["a"].to_pylist(), table["b"].to_pylist()):
        if kind == "video":
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
                parent.setdefault(min(ra, rb), min(ra, rb))
    return {v: root(v) for v in parent}


def collapse(ranked: list, groups: "dict[str, str]") -> "tuple[list, int]":
    """``ranked`` (items whose first element is a clip id ``<video_id>/<n>``, best first) without the clips of
    videos that are copies of a video ranked higher → (kept, how many were left out)."""
    if not groups:
        return ranked, 0
    shown: dict = {}                         # group → the video of it that was ranked first
    kept = []
    for item in ranked:
        vid = str(item[0]).rsplit("/", 1)[0]
        g = groups.get(vid)
        if g is not None and shown.setdefault(g, vid) != vid:
            continue
        kept.append(item)
    return kept, len(ranked) - len(kept)
