"""Text retrieval over the ``transcripts`` table: a BM25 index (the ``bm25s`` library), kept in the store.

    STORE/_index/_text/manifest.json         what the index covers (batches), written LAST
    STORE/_index/_text/bm25-<gen>.npz        the bm25s index files and the rows they point at, in one file

Like the FAISS index (index/search/vectors.py): a new generation is written under a new name, then the manifest that
names it replaces the old one (atomic locally, a whole-object PUT on object storage), so a reader always finds
a complete index. :func:`update_text_index` runs at the end of ``bike tag`` (when a text channel wrote rows)
and in ``bike index``; it rebuilds the whole index when any transcripts batch is not covered (BM25 statistics
are corpus-wide, and rebuilding is cheap: ~1 s per 100k spans). A searcher whose index is missing or stale
builds one in memory from the committed rows and says so (``notes``).

One document per transcripts row (a subtitle cue, an OCR span, a speech segment). Tokens: bm25s's
tokenizer (lower-cased words, English stop words removed); a query's words that no document holds are
ignored. The file is read with ``allow_pickle=False`` (a store is untrusted input).
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from index.store import Store, StoreError

INDEX_KEY = "_index/_text"
MANIFEST = "manifest.json"
#: Largest index file a reader opens (bytes).
MAX_INDEX_BYTES = 4 << 30
#: Text of a hit kept in results (characters).
HIT_TEXT_CHARS = 300


class TextIndexError(StoreError):
    """A text index that cannot be built or read; the message says how to rebuild it."""


@dataclass
class TextHit:
    """One transcripts row that matches a query, with its BM25 score (higher is better)."""
    score: float
    video_id: str
    start_s: float
    end_s: float
    text: str
    source: str                 # subtitle | ocr | speech
    path: "str | None"


@dataclass
class TextIndexReport:
    count: int
    batches: int
    rebuilt: bool
    seconds: float

    def line(self) -> str:
        what = f"rebuilt over {self.count} spans of {self.batches} batches" if self.rebuilt else "up to date"
        return f"text index {what} ({self.seconds:.2f} s)"


def _text_batches(store: Store) -> "list[dict]":
    return [c for c in store.commits() if c["tables"].get("transcripts") or
            (str(c.get("model_id", "")).startswith("text:") and c.get("replace"))]


def _covered_names(records: "list[dict]") -> "list[str]":
    """Batch names of ``records`` and of the batches compacted into them (compaction never makes it stale)."""
    out = []
    for c in records:
        out.append(c["batch"])
        out.extend(c.get("compacted", []) or [])
    return sorted(set(out))


def _tokenize(texts: "list[str]"):
    import bm25s
    return bm25s.tokenize(texts, stopwords="en", show_progress=False)


class TextIndex:
    """A BM25 index over transcripts rows (built in memory, or loaded from the store)."""

    def __init__(self, retriever, rows: dict, batches: "list[str]"):
        self.retriever, self.rows, self.batches = retriever, rows, batches

    def __len__(self) -> int:
        return len(self.rows["video_id"])

    @classmethod
    def build(cls, store: Store) -> "TextIndex":
        """Index every committed transcripts row of ``store``."""
        import bm25s
        t = store.read("transcripts", ["video_id", "start_s", "end_s", "text", "source", "path"])
        rows = {k: t[k].to_pylist() for k in t.column_names if k != "model_id"}
        retriever = None
        if t.num_rows:
            retriever = bm25s.BM25()
            retriever.index(_tokenize([x or "" for x in rows["text"]]), show_progress=False)
        return cls(retriever, rows, _covered_names(_text_batches(store)))

    def search(self, query: str, k: int = 50, sources=None, videos=None) -> "list[TextHit]":
        """The best ``k`` rows for ``query`` (BM25 > 0 only), optionally of some ``sources`` / ``videos``."""
        if self.retriever is None or not query.strip():
            return []
        import bm25s
        words = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        vocab = self.retriever.vocab_dict
        words = [w for w in words if w in vocab]
        if not words:
            return []
        scores = np.asarray(self.retriever.get_scores(words), np.float32)
        keep = scores > 0
        if sources is not None:
            keep &= np.isin(np.asarray(self.rows["source"], object), list(sources))
        if videos is not None:
            keep &= np.isin(np.asarray(self.rows["video_id"], object), list(videos))
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-scores[idx], kind="stable")][:k]
        r = self.rows
        return [TextHit(float(scores[i]), r["video_id"][i], float(r["start_s"][i]), float(r["end_s"][i]),
                        (r["text"][i] or "")[:HIT_TEXT_CHARS], r["source"][i], r["path"][i]) for i in idx]

    # ---- persistence ---------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """One ``.npz``: the bm25s files (byte arrays) and the rows as JSON."""
        arrays = {"rows": np.frombuffer(json.dumps(self.rows).encode(), np.uint8)}
        if self.retriever is not None:
            with tempfile.TemporaryDirectory() as d:
                self.retriever.save(d)
                for name in os.listdir(d):
                    with open(os.path.join(d, name), "rb") as f:
                        arrays["f_" + name] = np.frombuffer(f.read(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, batches: "list[str]") -> "TextIndex":
        import bm25s
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            rows = json.loads(z["rows"].tobytes())
            files = {k[2:]: z[k].tobytes() for k in z.files if k.startswith("f_")}
        retriever = None
        if files:
            with tempfile.TemporaryDirectory() as d:
                for name, blob in files.items():
                    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                        raise ValueError(f"odd file name {name!r} in the index")
                    with open(os.path.join(d, name), "wb") as f:
                        f.write(blob)
                retriever = bm25s.BM25.load(d)
        if not isinstance(rows, dict) or len({len(v) for v in rows.values()}) > 1:
            raise ValueError("rows do not line up")
        return cls(retriever, rows, batches)


def _read_manifest(store: Store) -> "dict | None":
    key = f"{INDEX_KEY}/{MANIFEST}"
    try:
        got = store.fs.read_tagged(key)
        if got is None:
            return None
        m = json.loads(got[0])
        if not re.fullmatch(r"bm25-[0-9]+\.npz", str(m.get("file", ""))):
            raise ValueError("file is not an index file name")
        return m
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise TextIndexError(f"{store.fs.path(key)}: unreadable text index manifest ({e}); rebuild it with "
                             f"`bike index --store {store.root}`") from None


def pending(store: Store, manifest: "dict | None") -> "list[dict]":
    """Committed transcripts batches the index does not cover."""
    covered = set(manifest["batches"]) if manifest else set()
    return [c for c in _text_batches(store) if c["batch"] not in covered and
            not (c.get("compacted") and set(c["compacted"]) <= covered)]


def open_text_index(store: Store) -> "tuple[TextIndex | None, list[str]]":
    """The store's text index, current → (index, notes). Missing or stale: built in memory from the rows (and
    a note says so); a store without transcripts → (None, [])."""
    manifest = _read_manifest(store)
    if manifest is not None and not pending(store, manifest):
        key = f"{INDEX_KEY}/{manifest['file']}"
        size = store.fs.list(INDEX_KEY).get(manifest["file"])
        if size is not None and size <= MAX_INDEX_BYTES:
            try:
                return TextIndex.from_bytes(store.fs.read(key), manifest["batches"]), []
            except Exception as e:  # noqa: BLE001 - damaged or planted: rebuild in memory, say so
                note = f"text index unreadable ({type(e).__name__}); searched the transcripts directly"
                return TextIndex.build(store), [note]
    if not _text_batches(store):
        return None, []
    idx = TextIndex.build(store)
    return idx, [f"text index {'stale' if manifest else 'missing'}: built in memory over {len(idx)} spans "
                 f"(update it with `bike index --store {store.root}`)"]


def has_transcripts(store: Store) -> bool:
    """Whether any committed batch holds (or replaced) transcripts rows: a text index to keep."""
    return bool(_text_batches(store))


def update_text_index(store: "Store | str") -> TextIndexReport:
    """Build the text index when a transcripts batch is not covered (see the module docstring); one writer at
    a time (``index.search.vectors.index_lock``: a lock file locally, the writer lease on object storage, which
    ``bike tag`` already holds)."""
    from .vectors import index_lock
    store = store if isinstance(store, Store) else Store(store)
    with index_lock(store, store.fs.path(INDEX_KEY)):
        return _update(store)


def _update(store: Store) -> TextIndexReport:
    t0 = time.perf_counter()
    store.commits(refresh=True)
    manifest = _read_manifest(store)
    if manifest is not None and not pending(store, manifest):
        return TextIndexReport(int(manifest.get("count", 0)), len(manifest["batches"]), False,
                               time.perf_counter() - t0)
    idx = TextIndex.build(store)
    data = idx.to_bytes()
    name = f"bm25-{time.time_ns():020d}.npz"

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    store.fs.write_file(f"{INDEX_KEY}/{name}", write)
    new = {"file": name, "batches": idx.batches, "count": len(idx), "built_at": time.time(),
           "previous": manifest["file"] if manifest else None}
    if store.remote:
        store._check_lease()
    store.fs.write(f"{INDEX_KEY}/{MANIFEST}", json.dumps(new, indent=1).encode())
    keep = {name, MANIFEST, new["previous"]}
    for f in store.fs.list(INDEX_KEY):
        if f not in keep and f.startswith("bm25-"):
            store.fs.delete(f"{INDEX_KEY}/{f}")
    return TextIndexReport(len(idx), len(idx.batches), True, time.perf_counter() - t0)
