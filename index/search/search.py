"""Search a store: text (or an example clip / video) → the best clips, each with the moment that matches.

    >>> from index.search.search import Searcher
    >>> s = Searcher("my_store")                       # loads the model that tagged the store
    >>> for r in s.search("a dog catches a frisbee", k=5, where="duration_s > 5"):
    ...     print(r.rank, r.score, r.path, r.start_s, r.end_s, r.moment_s, r.labels[:2])

How a query is answered (docs/search.md "How a text query is answered"):

1. **Query features.** A text query goes through the CLIP text tower AS TYPED — no prompt template (the
   label template "This is a video about {}" is for class names; a user's sentence is already a
   description). It gives the end-of-text feature ``cls`` (D) and all 77 token features (77, D)
   (docs/model.md §2). An example (``clip=CLIP_ID`` from the store, or ``like=VIDEO`` decoded and embedded with
   the model, temporal header included) gives its T frame embeddings; its vector is their normalised mean.
2. **Candidates.** ``cls`` (or the example vector) searches the FAISS index of clip embeddings
   (index/search/vectors.py) for the top N = max(candidates, 10·k) clips; a model with at most RERANK_ALL_MAX
   (2000) clips skips this and re-ranks every clip. Clips of batches the index does not
   cover yet (stale index) are scanned exactly beside it; with no index at all every clip is scanned
   exactly. Both cases are reported in ``SearchResults.notes``.
3. **Filter.** ``where`` (a DuckDB condition over the ``search_clips`` view, index/store/where.py) first selects
   the allowed clips: when at most max(N, EXACT_FILTER_MAX) clips qualify they are ALL re-ranked (the answer
   is then exact); otherwise FAISS searches only among them (an ID selector).
4. **Re-rank.** Every candidate is scored against the query with its stored per-frame embeddings
   (index/search/rerank.py): concept spotting for text, MaxSim for examples. The moment is the frame of highest
   relevance (cosine of the frame with the query), its span the run of frames around it whose smoothed
   relevance stays above 60% of the way from the curve's minimum to the peak, read along neighbouring result
   clips of the same video (index/search/moments.py); a run that goes on into neighbouring result clips is
   ``joined``. Results are sorted by this score; for ``clip=`` the clip itself comes first.
   **Relevance feedback** (``positive=`` / ``negative=`` clip ids, index/search/feedback.py): the examples'
   Rocchio vector adds its own FAISS candidates, and the score becomes z(example score) + w·z(query score).
5. **Results** carry the video path, clip span, moment, score, the saliency curve and the clip's stored top
   labels and attributes. The CLI (``bike search``) prints the same objects.

**Threads.** One :class:`Searcher` may serve many threads at once (``bike serve`` does): each thread gets its
own DuckDB cursor on one shared in-memory database (the store's views; ``index.store.core.cursor``, which also
gives it the Arrow datasets those views read on object storage); result details (paths, labels,
attributes) are read-only dicts replaced whole on refresh; the lazy loads (model, FAISS index, exact-scan
vectors) and the in-memory frame cache happen under a lock; and the model is called by one thread at a time
(its text-feature cache is a plain ordered dict): the text queries of concurrent searches that meet at that
lock are encoded together in one call, and the last few hundred texts are remembered (index/search/textbatch.py).
:meth:`refresh` starts a new generation of connections; a query in flight keeps the one it started with.
Nothing here changes ``torch.set_num_threads`` per query except index/search/rerank.py's one-thread rule for small
re-ranks, which is a no-op when torch already runs one thread (the server sets that once at start).

**SQL sandbox.** ``--where`` conditions are user SQL, so the connection is sandboxed in DuckDB's own
configuration (:func:`readonly_connection`): it reads the store's committed shards and nothing else on disk,
loads no extensions, and its configuration is locked. A ``--where`` condition is evaluated in a child process
bounded in memory and time (``sql_limits``, index/store/sqlbox.py), never on the searcher's own connection.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from engine.model.classify import AttributeScore, ScorePair

from .dedup import collapse
from .feedback import Feedback, FeedbackError, combine, parse_ids
from .textbatch import TextEncoder
from .frames import CACHE_BYTES, ClipFrames
from .moments import set_moments
from .rerank import Ranked, example_vector, rerank_example, rerank_text
from index.store.core import Store, StoreError, cursor
from .vectors import exact_search, open_index, read_vectors, resolve_model_id
from index.store.sqlbox import Sandbox, SQLLimits

#: Candidates from FAISS per result (N = max(candidates, CANDIDATES_PER_RESULT · k)).
CANDIDATES_PER_RESULT = 10
#: Default minimum number of candidates re-ranked (bench/search.py measures agreement with a full scan).
MIN_CANDIDATES = 200
#: A --where that keeps at most this many clips re-ranks all of them (exact answer).
EXACT_FILTER_MAX = 5000
#: A model with at most this many clips has ALL of them re-ranked (exact answer; ~50-100 ms on one CPU
#: thread at 8×512). The index's top-N proxy is weakest on small stores, where few clips match the query
#: and the rest of the top 10 is decided by frame-level detail (bench/search.py measured 54% top-10
#: overlap at 500 clips with N = 100).
RERANK_ALL_MAX = 2000


def readonly_connection(store: Store):
    """A DuckDB connection with the store's views that reads the store's committed shards and nothing else:
    :func:`index.store.sql.connect_readonly` (external access off except the shard files, no extension
    auto-loading/installing, no spilling to a temp directory, configuration locked so a query cannot turn any
    of it back on)."""
    from index.store.sql import connect_readonly
    return connect_readonly(store)


def describe_model_row(store: Store, model_id: str) -> "tuple[str, bool]":
    """(one line naming a model, random weights?) from its ``models`` row, without loading it."""
    from index.store.storemodel import model_row
    row = model_row(store, model_id)
    src = row.get("checkpoint") or row.get("pretrained") or "RANDOM WEIGHTS (--random-init)"
    return f"{row['name']}, {src}, {row.get('frames')} frames (model not loaded)", bool(row.get("random_init"))


class SearchError(StoreError):
    """A query that cannot be answered as asked; the message says what to change."""


@dataclass(frozen=True)
class ClipLabel(ScorePair):
    """One stored top label of a clip and its fused score; unpacks as ``label, score`` like the pairs it replaced."""
    label: str
    score: float


@dataclass
class SearchResult:
    rank: int                       # 1 = best
    score: float                    # re-rank score (VCS logit for text, MaxSim for examples)
    clip_id: str
    video_id: str
    path: "str | None"              # the video file as tagged
    start_s: float                  # clip span in the video (s)
    end_s: float
    moment_s: float                 # frame time of the relevance peak: where in the clip the query matches
    moment_start_s: float           # the moment's span around the peak, inside [start_s, end_s]
    moment_end_s: float             #   (index/search/moments.py: the rule, also in docs/search.md)
    saliency: list                  # the query's saliency over the clip's T frames (sums to 1)
    frame_times: list               # times (s) of the clip's T sampled frames
    labels: list                    # the clip's stored top labels: [ClipLabel(label, fused score)], best first
    attributes: list                # its stored top attribute phrases: [AttributeScore(attribute, cosine)]
    index_score: "float | None"     # cosine in the FAISS stage (None when the clip was added exactly)
    joined: "dict | None" = None    # the moment continues into neighbouring result clips of the same video:
                                    # {"start_s", "end_s", "clip_ids"} of the merged span (else None)
    matched: list = field(default_factory=lambda: ["visual"])   # channels that found it (index/search/textsearch.py)
    text: "str | None" = None       # the matched subtitle / on-screen / spoken text (text channels)
    # relevance feedback (positive=/negative= clips; index/search/feedback.py), None without it: ``score`` is then
    # z(feedback_score) + w * z(query_score) over the candidates (w: index/search/feedback.py query_weight)
    query_score: "float | None" = None      # the query's own re-rank score (None: a search by examples only)
    feedback_score: "float | None" = None   # MaxSim to the positives - NEGATIVE_WEIGHT * MaxSim to the negatives
    relevance: list = field(default_factory=list)  # per-frame cosine with the query over the T frames (the
                                                   # curve of the moment's span; empty for text-channel hits)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}     # not asdict(): no deep copy of the lists
        d["saliency"], d["frame_times"] = list(self.saliency), list(self.frame_times)
        d["relevance"] = list(self.relevance)
        d["labels"] = [{"label": a, "score": s} for a, s in self.labels]
        d["attributes"] = [{"attribute": a, "score": s} for a, s in self.attributes]
        d["joined"] = None if self.joined is None else {**self.joined, "clip_ids": list(self.joined["clip_ids"])}
        if d["index_score"] is not None and math.isnan(d["index_score"]):
            d["index_score"] = None
        return d


class SearchResults(list):
    """A list of :class:`SearchResult` (best first) plus what the search did (``notes``: stale index, exact
    scan, filter size...)."""

    def __init__(self, results=(), query: str = "", kind: str = "text", model_id: str = "", model: str = "",
                 random_init: bool = False, notes=(), candidates: int = 0, seconds: float = 0.0,
                 positives=(), negatives=()):
        super().__init__(results)
        self.query, self.kind, self.model_id, self.model = query, kind, model_id, model
        self.random_init, self.notes = random_init, list(notes)
        self.candidates, self.seconds = candidates, seconds
        self.positives, self.negatives = list(positives), list(negatives)     # relevance feedback clips

    def to_dict(self) -> dict:
        return {"query": self.query, "kind": self.kind, "model_id": self.model_id, "model": self.model,
                "random_init": self.random_init, "notes": self.notes, "candidates": self.candidates,
                "seconds": round(self.seconds, 4), "positives": self.positives, "negatives": self.negatives,
                "results": [r.to_dict() for r in self]}


@dataclass
class Query:
    """What a query became: the FAISS vector and how to re-rank candidates against it."""
    text: str
    kind: str                            # 'text' | 'clip' | 'video'
    vector: np.ndarray                   # (D,) for the FAISS stage
    tokens: "torch.Tensor | None" = None # (77, D) text token features
    cls: "torch.Tensor | None" = None    # (D,) text end-of-text feature
    example: "np.ndarray | None" = None  # (Te, D) example frames
    self_clip: "str | None" = None       # clip id of a clip= query

    @classmethod
    def from_text_features(cls_, text: str, cls: torch.Tensor, tokens: torch.Tensor) -> "Query":
        """A text query from features: ``cls`` (D,) end-of-text, ``tokens`` (77, D)."""
        cls, tokens = torch.as_tensor(cls).float().reshape(-1), torch.as_tensor(tokens).float()
        return cls_(text, "text", cls.cpu().numpy(), tokens=tokens.reshape(-1, cls.shape[0]), cls=cls)

    def rerank(self, frames: torch.Tensor) -> Ranked:
        if self.kind == "text":
            return rerank_text(frames, self.tokens, self.cls)
        return rerank_example(frames, self.example)


@dataclass
class _Details:
    """One model's result details held in memory: video_id → path, clip_id → [(label, score)] and
    clip_id → [(attribute, score)], best first (read once per generation through the store's views)."""
    paths: dict
    labels: dict
    attributes: dict

    @classmethod
    def load(cls, con, model_id: str) -> "_Details":
        m = {"m": model_id}
        paths = dict(con.execute("SELECT video_id, any_value(path) FROM videos WHERE model_id = $m GROUP BY video_id",
                                 m).fetchall())
        grouped = {}
        for table, column in (("labels", "label"), ("attributes", "attribute")):
            cur = con.execute(f"SELECT clip_id, {column}, score FROM {table} WHERE model_id = $m "
                              f"ORDER BY clip_id, rank", m)
            grouped[table] = _grouped(arrow_table(cur))
        return cls(paths, grouped["labels"], grouped["attributes"])


def arrow_table(cur):
    """A DuckDB result as one Arrow table (DuckDB 2 calls it ``to_arrow_table``; 1.x ``fetch_arrow_table``)."""
    import warnings
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fn = getattr(cur, name, None)
        if fn is not None:
            with warnings.catch_warnings():       # DuckDB 2 notes the copy a cursor result makes: fine here
                warnings.simplefilter("ignore", UserWarning)
                t = fn()
            return t.read_all() if hasattr(t, "read_all") else t
    raise AttributeError("this DuckDB has no Arrow result method")


def _grouped(t) -> "dict[str, list]":
    """Rows (clip_id, name, score) sorted by clip → {clip_id: [(name, score), ...]}; names are shared
    strings (dictionary-encoded), so 500k label rows cost tens of MB, not hundreds."""
    if not t.num_rows:
        return {}
    cid = t.column(0).combine_chunks().dictionary_encode()
    codes = cid.indices.to_numpy(zero_copy_only=False)
    keys = cid.dictionary.to_pylist()
    nm = t.column(1).combine_chunks().dictionary_encode()
    names, ncodes = nm.dictionary.to_pylist(), nm.indices.to_numpy(zero_copy_only=False).tolist()
    scores = t.column(2).to_numpy(zero_copy_only=False).astype(np.float64).tolist()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]).tolist()
    ends = starts[1:] + [len(codes)]
    codes = codes.tolist()
    return {keys[codes[a]]: [(names[ncodes[j]], scores[j]) for j in range(a, b)] for a, b in zip(starts, ends)}


@dataclass
class _Cache:
    vectors: "dict[tuple, tuple]" = field(default_factory=dict)   # batches → (ids, vectors) of exact scans


class Searcher:
    """Search one model's clips in a store. Loads the model and the index once; reuse it for many queries.

    ``model_id``: default the only (or most recently tagged) model with embeddings. ``model``: an already
    loaded :class:`engine.BikeModel` (it must be the one that tagged the store; default: loaded from the
    store's ``models`` row, see index/store/storemodel.py). ``weights``: the weights file, when it moved.
    ``gpu``: search the FAISS index on the GPUs of a faiss-gpu install.
    """

    def __init__(self, store: "Store | str", model_id: "str | None" = None, model=None,
                 weights: "str | None" = None, device=None, gpu: bool = False, cache_bytes: int = CACHE_BYTES,
                 precision: "str | None" = None, sql_limits: "SQLLimits | None" = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self.sql_box = Sandbox(sql_limits or SQLLimits())   # --where runs here: bounded, in a child process
        self._precision = precision          # None: the store's (models.precision); auto|fp32|bf16|fp16
        self.model_id = resolve_model_id(self.store, model_id)
        self._model, self._weights, self._device, self._gpu = model, weights, device, gpu
        self.frames = ClipFrames(self.store, self.model_id, cache_bytes)
        self._index = None
        self._index_loaded = False
        self._base = None                    # the shared DuckDB database of this generation
        self._gen = 0                        # bumped by refresh(): threads then open new cursors
        self._local = threading.local()      # per-thread cursor (and its generation)
        self._details = None                 # in-memory result details (when the clips fit in memory)
        self._row_desc = None
        self._dup_groups: "dict[str, str] | None" = None     # bike dedup's copies (duplicate_groups)
        self._cache = _Cache()
        self._lock = threading.RLock()       # lazy loads, refresh, the frame and vector caches
        self._model_lock = threading.Lock()  # one model call at a time
        self._text = TextEncoder(self._encode_texts)   # concurrent text queries share model calls

    # ---- pieces, loaded on first use -----------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from index.store.storemodel import load_store_model
                    self._model = load_store_model(self.store, self.model_id, weights=self._weights,
                                                   device=self._device, precision=self._precision)
        return self._model

    @property
    def index(self):
        """The FAISS index (index/search/vectors.py ``VectorIndex``), or None when none was built."""
        with self._lock:
            if not self._index_loaded:
                self._index = open_index(self.store, self.model_id)
                if self._index is not None and self._gpu:
                    self._index.to_gpu()
                self._index_loaded = True
            return self._index

    def _database(self):
        """(connection, details, generation) of the current generation, made on first use: the sandboxed store
        views (:func:`readonly_connection`) and, for a store whose clips fit in memory, :class:`_Details` (this
        model's paths, labels and attributes in dicts: a result's details then cost a lookup instead of a scan
        of every Parquet shard)."""
        with self._lock:
            if self._base is None:
                con = readonly_connection(self.store)
                self._details = _Details.load(con, self.model_id) if self.frames.in_memory else None
                self._base = con
            return self._base, self._details, self._gen

    @property
    def con(self):
        """This thread's DuckDB cursor over the store (views of index/store/core.py, sandboxed; plus the
        search_clips view for --where)."""
        base, _, gen = self._database()
        local = self._local
        if getattr(local, "gen", None) != gen or getattr(local, "owner", None) is not base:
            local.con, local.gen, local.owner = cursor(base), gen, base
        return local.con

    @property
    def meta(self):
        """The views result details are read from when they are not held in memory (:class:`_Details`)."""
        return {"videos": "videos", "labels": "labels", "attributes": "attributes"}

    def refresh(self) -> None:
        """Pick up batches committed (and indexes built) since this searcher was made. Safe while other
        threads search: they finish on the connection they started with."""
        with self._lock:
            self.store.commits(refresh=True)
            self._index_loaded, self._index, self._base, self._details = False, None, None, None
            self._dup_groups = None
            self._cache = _Cache()           # exact-scan vectors: "all batches" now means more of them
            self._gen += 1

    def index_status(self) -> "list[str]":
        """Human lines on the index: missing, stale (how many batches/clips it lacks), or current."""
        idx = self.index
        root = self.store.root
        if idx is None:
            n = sum(c["tables"].get("embeddings", 0) for c in self.store.commits() if c["model_id"] == self.model_id)
            return [f"no FAISS index for model {self.model_id}: exact scan over {n} clips "
                    f"(build one with `bike index --store {root}`)"]
        pending = idx.pending()
        if pending:
            n = sum(c["tables"].get("embeddings", 0) for c in pending)
            return [f"index is stale: {len(pending)} newer batch(es) with {n} clips are not in it and were scanned "
                    f"exactly (update it with `bike index --store {root}`)"]
        return []

    # ---- queries -------------------------------------------------------------------------------------
    def text_query(self, text: str) -> Query:
        """Text → end-of-text + 77 token features, without a prompt template (see the module docstring)."""
        if not text or not text.strip():
            raise SearchError("empty query: give a text, --like VIDEO or --clip CLIP_ID")
        cls, tokens = self._text(text)             # batched with concurrent queries, cached (index/search/textbatch.py)
        return Query(text, "text", cls.cpu().numpy(), tokens=tokens, cls=cls)

    def _encode_texts(self, texts: "list[str]"):
        """One model call for the texts of concurrent queries (``TextEncoder``): (cls (B, D), tokens (B, 77, D))."""
        model = self.model
        with self._model_lock:
            run = getattr(model, "_run_text", None)       # uncached: TextEncoder keeps its own per-text cache
            cls, tokens = run(list(texts)) if run is not None else model.encode_text(list(texts))
        return cls.float(), tokens.float()

    def clip_query(self, clip_id: str) -> Query:
        row = self._frames([clip_id]).get(clip_id)
        if row is None:
            raise SearchError(f"--clip {clip_id}: no such clip for model {self.model_id} in {self.store.root} "
                              f"(clip ids look like <video_id>/<n>; list them with `bike sql`)")
        example = row.frames.astype(np.float32)
        return Query(clip_id, "clip", example_vector(example), example=example, self_clip=clip_id)

    def video_query(self, path: str, timeout_s: "float | None" = None) -> Query:
        """Decode an example video (one window over the whole file, the model's T frames) and embed its
        frames with the model, temporal header included (the space of ``clips.frame_embeddings``)."""
        from engine.video import read_video
        m = self.model
        opts = {} if timeout_s is None else {"timeout_s": timeout_s}      # bounded decode (bike serve uploads)
        clip = read_video(path, frames=m.frames, size=m.crop, resize=m.resize, **opts)
        with self._model_lock:
            example = m.temporal(m.encode_frames(m.preprocess(clip.frames[:1])))[0].float().cpu().numpy()
        return Query(str(path), "video", example_vector(example), example=example)

    # ---- the search ----------------------------------------------------------------------------------
    def feedback(self, positive=None, negative=None) -> Feedback:
        """The relevance-feedback examples (clip ids, a comma-separated string or a list) with their stored
        frames; an unknown id is a :class:`SearchError` naming it."""
        try:
            return Feedback.load(positive, negative,
                                 lambda ids: {c: r.frames for c, r in self._frames(ids).items()},
                                 what=f" for model {self.model_id}")
        except FeedbackError as e:
            raise SearchError(str(e)) from None

    def search(self, query: "str | Query | None" = None, k: int = 10, where: "str | None" = None,
               like: "str | None" = None, clip: "str | None" = None,
               candidates: int = MIN_CANDIDATES, dedup: bool = True, positive=None, negative=None,
               select=None) -> SearchResults:
        """The best ``k`` clips for a text ``query``, an example video ``like`` or a stored ``clip``.
        ``query`` may also be a ready :class:`Query` (e.g. text features computed elsewhere). ``dedup``: leave
        out clips of videos that ``bike dedup`` found to be copies of a video ranked higher.
        ``positive`` / ``negative``: relevance feedback, clip ids of this store (index/search/feedback.py); with
        positives the query may be left out (a search by the examples alone). A shard that does not decode
        (corrupted without changing its size) makes its batch damaged: it is left out with a warning and the
        search runs again without it (``Store.retry_without_damaged``).

        ``select``: a function given ``[(clip_id, video_id, score)]`` of the top ``k`` clips (best first) that
        returns the positions to build into results; the others are left out before their details, moments and
        lists are made (``bike serve``'s ``group=video`` ranks hundreds of clips and shows a page of videos).
        Keep every clip of a kept video: a moment is read along its video's neighbouring result clips."""
        return self.store.retry_without_damaged(
            lambda: self._search(query, k, where, like, clip, candidates, dedup, positive, negative, select),
            before_retry=self.refresh)

    def _search(self, query, k, where, like, clip, candidates, dedup, positive, negative,
                select=None) -> SearchResults:
        given = sum(x is not None for x in (query, like, clip))
        fb_ids = bool(parse_ids(positive) or parse_ids(negative))
        if given > 1 or (given == 0 and not parse_ids(positive)):
            raise SearchError("give exactly one of: a text query, --like VIDEO, --clip CLIP_ID"
                              + ("" if not fb_ids else " (or positive clips to search by examples alone)"))
        if k < 1:
            raise SearchError(f"-k {k}: must be at least 1")
        if (query is not None and not isinstance(query, Query)) or like is not None:
            _ = self.model                           # loaded before the clock starts (--clip needs none)
        t0 = time.perf_counter()
        fb = self.feedback(positive, negative) if fb_ids else None
        q = (query if isinstance(query, Query) else self.text_query(query) if query is not None else
             self.clip_query(clip) if clip is not None else self.video_query(like) if like is not None else None)
        n = max(int(candidates), CANDIDATES_PER_RESULT * k)
        allowed = None
        notes: list[str] = []
        if where:
            allowed = self.sql_box.where(self.store, self.model_id, where)
            notes.append(f"--where kept {len(allowed)} clip(s)")
        found = self.candidates(q.vector, n, allowed, notes) if q is not None else {}
        fb_vector = fb.vector() if fb else None
        if fb_vector is not None:                    # Rocchio: the examples' own neighbours are candidates too
            more = self.candidates(fb_vector, n, allowed, [] if q is not None else notes)
            for c, s in more.items():
                found[c] = s if c not in found or math.isnan(found[c]) else max(found[c], s)
        if q is not None and q.self_clip and (allowed is None or q.self_clip in set(allowed)):
            found.setdefault(q.self_clip, float("nan"))
        ranked = self.rerank(q, found, fb)
        if q is not None and q.self_clip:            # the example itself first (it scores the maximum, 1.0)
            ranked.sort(key=lambda r: (r[0] != q.self_clip, -r[1]))
        if dedup:
            ranked, copies = collapse(ranked, self.duplicate_groups())
            if copies:
                notes.append(f"{copies} clip(s) of copies of videos already shown left out (dedup off shows them)")
        if fb:
            notes.append(f"relevance feedback: {len(fb.positives)} positive, {len(fb.negatives)} negative clip(s)")
        top, ranks = ranked[:k], None
        if select is not None:                       # results keep their rank among all the top k
            keep = sorted(set(select([(c, row.video_id, score) for c, score, _, row, *_ in top])))
            top, ranks = [top[i] for i in keep], [i + 1 for i in keep]
        results = self._results(top, found, ranks)
        desc, random_init = self.describe_model()
        text, kind = (q.text, q.kind) if q is not None else (", ".join(fb.positives), "examples")
        return SearchResults(results, text, kind, self.model_id, desc, random_init, notes,
                             len(found), time.perf_counter() - t0,
                             fb.positives if fb else (), fb.negatives if fb else ())

    def duplicate_groups(self) -> "dict[str, str]":
        """video_id → its copies' group, from the store's last ``bike dedup`` (read once per refresh)."""
        if self._dup_groups is None:
            from .dedup import video_groups
            self._dup_groups = video_groups(self.store, self.model_id)
        return self._dup_groups

    def describe_model(self) -> "tuple[str, bool]":
        """(one line naming the model, random weights?) — from the loaded model, else the models row."""
        if self._model is not None:
            return self._model.describe(), self._model.random_init
        if self._row_desc is None:
            self._row_desc = describe_model_row(self.store, self.model_id)
        return self._row_desc

    def candidates(self, vector: np.ndarray, n: int, allowed: "list[str] | None" = None,
                   notes: "list[str] | None" = None) -> "dict[str, float]":
        """clip_id → FAISS-stage cosine of up to ``n`` candidates (``allowed`` restricts them; a small
        allowed set is returned whole, scored NaN: it is re-ranked entirely)."""
        notes = notes if notes is not None else []
        if allowed is not None and len(allowed) <= max(n, EXACT_FILTER_MAX):
            if allowed:
                notes.append(f"all {len(allowed)} filtered clips re-ranked (exact)")
            return {c: float("nan") for c in allowed}
        if allowed is None and self.clip_count() <= max(n, RERANK_ALL_MAX):
            return self._all_clip_ids(notes)
        allowed_set = None if allowed is None else set(allowed)
        idx = self.index
        notes.extend(self.index_status())
        found: dict[str, float] = {}
        if idx is None:
            exact_batches = None                                                    # every batch
        else:
            positions = None if allowed is None else idx.positions(allowed)
            scores, ids = idx.search(vector[None], n, positions)
            found.update(zip(ids[0], map(float, scores[0])))
            exact_batches = tuple(c["batch"] for c in idx.pending())
            if not exact_batches:
                return found
        ids, vecs = self._vectors(exact_batches)
        if allowed_set is not None:
            keep = [i for i, c in enumerate(ids) if c in allowed_set]
            ids, vecs = [ids[i] for i in keep], vecs[keep]
        scores, got = exact_search(vecs, ids, vector[None], n)
        for c, s in zip(got[0], scores[0]):
            found[c] = max(found.get(c, -np.inf), float(s))
        if len(found) > n:
            found = dict(sorted(found.items(), key=lambda kv: -kv[1])[:n])
        return found

    def clip_count(self) -> int:
        """Clip embeddings committed for this model (from the commit records; replaced rows counted twice)."""
        return sum(c["tables"].get("embeddings", 0) for c in self.store.commits() if c["model_id"] == self.model_id)

    def _all_clip_ids(self, notes: "list[str]") -> "dict[str, float]":
        ids, _ = self._vectors(None)
        notes.append(f"all {len(ids)} clips re-ranked (exact; the index is used above {RERANK_ALL_MAX} clips)")
        return {c: float("nan") for c in ids}

    def _vectors(self, batches: "tuple | None"):
        """Embeddings of the given batches (None: all), cached for the searcher's life."""
        with self._lock:
            if batches not in self._cache.vectors:
                self._cache.vectors = {batches: read_vectors(self.store, self.model_id,
                                                             None if batches is None else list(batches))}
            return self._cache.vectors[batches]

    def _frames(self, clip_ids) -> dict:
        """``self.frames.get``: under the lock when the frames are cached in memory (the cache grows as
        batches are committed); a store read per query (larger stores) opens its own connection."""
        if not self.frames.in_memory:
            return self.frames.get(clip_ids)
        with self._lock:
            return self.frames.get(clip_ids)

    def rerank(self, q: "Query | None", found: "dict[str, float]", fb: "Feedback | None" = None) -> "list[tuple]":
        """Re-rank every candidate → [(clip_id, score, saliency (T,), ClipRow, query score, feedback score,
        relevance (T,))] best first. With feedback ``fb`` the score combines both (index/search/feedback.py
        ``combine``); the query and feedback scores are None without it."""
        rows = self._frames(found)
        groups: dict[tuple, list] = {}
        for r in rows.values():                      # clips of the same shape are scored together
            groups.setdefault(r.frames.shape, []).append(r)
        order, qscores, fbscores, sals, rels = [], [], [], [], []
        device = self._model.device if self._model is not None else (
            "cuda" if torch.cuda.is_available() else "cpu")
        fb = fb if fb else None
        for group in groups.values():
            frames = torch.from_numpy(np.stack([r.frames for r in group]).astype(np.float32)).to(device)
            if q is not None:
                ranked = q.rerank(frames)
                qscores.append(np.asarray(ranked.scores, np.float64))
            else:                                    # examples alone: saliency against the positives
                ranked = rerank_example(frames, np.concatenate(fb.positive_frames))
            if fb is not None:
                fbscores.append(fb.scores(frames))
            order.extend(group)
            sals.extend(ranked.saliency)
            rels.extend(ranked.relevance if ranked.relevance is not None else [None] * len(group))
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
        qs = cat(qscores) if q is not None else None
        if fb is None:
            out = [(r.clip_id, float(s), sal, r, None, None, rel) for r, s, sal, rel in zip(order, qs, sals, rels)]
        else:
            fs = cat(fbscores)
            final = combine(fs, qs)
            out = [(r.clip_id, float(final[i]), sals[i], r, None if qs is None else float(qs[i]), float(fs[i]),
                    rels[i])
                   for i, r in enumerate(order)]
        out.sort(key=lambda x: -x[1])
        return out

    def _results(self, ranked: "list[tuple]", found: "dict[str, float]",
                 ranks: "list[int] | None" = None) -> "list[SearchResult]":
        clip_ids = [c for c, *_ in ranked]
        video_ids = list({x[3].video_id for x in ranked})
        details = self._database()[1]
        if details is not None:                      # copies: a caller may change its results' lists
            paths = {v: details.paths.get(v) for v in video_ids}
            labels = {c: list(details.labels.get(c, ())) for c in clip_ids}
            attributes = {c: list(details.attributes.get(c, ())) for c in clip_ids}
        else:
            paths = dict(self.con.execute(
                "SELECT video_id, any_value(path) FROM videos WHERE model_id = $m AND video_id IN "
                "(SELECT unnest($v)) GROUP BY video_id", {"m": self.model_id, "v": video_ids}).fetchall()) if ranked else {}
            labels = self._per_clip("labels", "label", clip_ids)
            attributes = self._per_clip("attributes", "attribute", clip_ids)
        results = []
        for i, (cid, score, sal, row, qscore, fbscore, rel) in enumerate(ranked):
            results.append(SearchResult(
                rank=i + 1 if ranks is None else ranks[i], score=score, clip_id=cid, video_id=row.video_id, path=paths.get(row.video_id),
                start_s=row.start_s, end_s=row.end_s, moment_s=row.start_s,     # set_moments sets the moment
                moment_start_s=row.start_s, moment_end_s=row.end_s,
                saliency=[float(x) for x in sal], frame_times=[float(x) for x in row.frame_times],
                labels=[ClipLabel(a, s) for a, s in labels.get(cid, ())],
                attributes=[AttributeScore(a, s) for a, s in attributes.get(cid, ())],
                index_score=found.get(cid), query_score=qscore, feedback_score=fbscore,
                relevance=[] if rel is None else [float(x) for x in rel]))
        set_moments(results)
        return results

    def _per_clip(self, table: str, column: str, clip_ids) -> "dict[str, list]":
        if not clip_ids:
            return {}
        rows = self.con.execute(
            f"SELECT clip_id, {column}, score FROM {self.meta[table]} WHERE model_id = $m AND clip_id IN "
            f"(SELECT unnest($c)) "
            f"ORDER BY clip_id, rank", {"m": self.model_id, "c": list(clip_ids)}).fetchall()
        out: dict[str, list] = {}
        for cid, name, score in rows:
            out.setdefault(cid, []).append((name, float(score)))
        return out


def search(store: "Store | str", query: "str | None" = None, k: int = 10, **kwargs) -> SearchResults:
    """One-off search (loads the model each call; keep a :class:`Searcher` for many queries)."""
    opts = {key: kwargs.pop(key) for key in ("model_id", "model", "weights", "device", "gpu") if key in kwargs}
    return Searcher(store, **opts).search(query, k=k, **kwargs)
