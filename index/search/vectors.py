"""FAISS over the store's clip embeddings: build, extend, persist, reopen and search.

One index per model_id, kept inside the store::

    STORE/_index/<model_id>/manifest.json        what the index covers; replaced atomically, LAST
    STORE/_index/<model_id>/index-<gen>.faiss    the FAISS index (CPU form, also when built on a GPU)
    STORE/_index/<model_id>/ids-<gen>.npy        clip_id of every FAISS position (FAISS label = position)

The manifest is the commit point, like the store's commit records: a new generation's index and id files
are written under temporary names and renamed into place, then the manifest naming them replaces the old
one. A reader that opens the manifest always finds a complete pair of files; a crash leaves at most
orphan files, which the next :func:`update_index` removes.

Vectors are the ``embeddings`` table (saliency-weighted embedding V of each clip's top label, docs/model.md §4),
L2-normalised, compared by inner product (= cosine). Index kinds (``kind="auto"`` picks by size):

    flat    exact IndexFlatIP                                   auto below EXACT_MAX (100k) vectors
    ivf     IVF-Flat, nlist ≈ 4·√n, trained on a sample          auto from 100k to PQ_MIN (10M) vectors
    ivfpq   IVF-PQ (64-byte codes for 512-d), for 10M–1B vectors auto above PQ_MIN (memory: ~D/8 bytes each)
    hnsw    HNSW-Flat (M=32): no training, fast queries, slow to build on few cores (never chosen by auto)

The numbers behind the choice (1M clustered 512-d vectors, 2 cores) are in ``bench/results/search.json``.
Candidates are re-ranked by concept spotting afterwards (index/search/search.py), so an approximate index only has
to put the right clips among the top N, not in the right order.

Extending: :func:`update_index` adds only the rows of commit batches the manifest does not list. It
rebuilds from scratch instead when a newer batch replaced videos (``bike tag --force``: their old vectors
are in the index), when the kind should change (``auto`` crossed a size threshold, or another ``kind`` was
asked for), or when an IVF index has grown past 4× the size it was trained at (its lists are too coarse).

Compaction (index/store/compact.py) merges batches into a new one whose record lists, under ``covers``, the original
batches with embeddings it holds; the index covers it when it covered all of those (the manifest lists the
originals of compacted batches too), so compacting never makes an index stale.

Large stores: building never holds all vectors (index/search/vecstream.py): a first pass reads only clip ids, IVF is
trained on a uniform sample of ``train_size`` vectors, and vectors are added ADD_CHUNK at a time. Search opens
the index memory-mapped (:func:`open_index`), so an index larger than RAM still answers; ``bike index`` says
what it built and how much memory a search touches (:func:`search_bytes`).

Staleness: :meth:`VectorIndex.pending` lists committed batches the index does not cover; search (index/search/search.py)
then scans those batches' vectors exactly beside the index, and says so.
"""
from __future__ import annotations

import fcntl
import json
import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from index.search import vecstream
from index.store import Store, StoreError

INDEX_DIR = "_index"
MANIFEST = "manifest.json"
KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
#: Below this many vectors ``auto`` builds an exact index (a 100k×512 flat scan is ~5 ms per query here).
EXACT_MAX = 100_000
#: From this many vectors ``auto`` compresses with product quantisation (IVF-Flat at 10M×512 is 20 GB).
PQ_MIN = 10_000_000
#: An IVF index is retrained when the collection has grown past this factor of its training size.
RETRAIN_GROWTH = 4.0
#: Vectors added per FAISS ``add`` call (bounded memory for the temporary normalised copy).
ADD_CHUNK = 200_000


class VectorIndexError(StoreError):
    """An index that cannot be built or read; the message names the file, the reason and the fix."""


# ---------------------------------------------------------------------------------------------- faiss
def _faiss():
    import faiss
    # BLAS only pays off for large query batches; below that faiss' own kernels are ~10x faster here.
    faiss.cvar.distance_compute_blas_threshold = max(faiss.cvar.distance_compute_blas_threshold, 4096)
    return faiss


def num_gpus() -> int:
    """GPUs the installed faiss can use (0 for faiss-cpu)."""
    faiss = _faiss()
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as float32 (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def choose_kind(n: int, kind: str = "auto") -> str:
    """The concrete index kind for ``n`` vectors (``auto``: by size, see the module docstring)."""
    if kind not in KINDS:
        raise VectorIndexError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if n < EXACT_MAX else "ivf" if n < PQ_MIN else "ivfpq"


def default_params(kind: str, n: int, dim: int) -> dict:
    """Build and search parameters of a kind for ``n`` vectors of width ``dim`` (tuned in bench/search.py).

    IVF: nlist ≈ 4·√n (a power of two, at most 65536 and n/39), trained on 40·nlist sampled vectors (FAISS' own minimum
    is 39 per list), nprobe = nlist/64 (at least 8) lists visited per query. IVF-PQ: dim/8 sub-quantisers of
    8 bits (fewer bits for tiny collections). HNSW: M = 32, efConstruction 80, efSearch 128.
    """
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"M": 32, "efConstruction": 80, "efSearch": 128}
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(max(n, 1)))))
    nlist = int(max(1, min(nlist, 65536, n // 39)))           # >= 39 training vectors per list
    params = {"nlist": nlist, "nprobe": int(max(8, nlist // 64)), "train_size": int(min(n, 40 * nlist))}
    if kind == "ivfpq":
        m = next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m >= 1 and dim % m == 0)
        # 8-bit codes need 256 centroids per sub-quantiser (≥ 39·256 training vectors); fewer bits below that.
        nbits = 8 if n >= 39 * 256 else max(1, min(8, int(math.log2(max(2, n // 39)))))
        params.update(m=int(m), nbits=int(nbits), train_size=int(min(n, max(40 * nlist, 40 * 256))))
    return params


def new_index(kind: str, dim: int, params: dict):
    """An empty FAISS index of ``kind`` (inner-product metric)."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["M"], ip)
        index.hnsw.efConstruction = params["efConstruction"]
        return index
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"], ip)
    elif kind == "ivfpq":
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], params["nbits"], ip)
    else:
        raise VectorIndexError(f"unknown index kind {kind!r}")
    index.own_fields = True
    quantizer.this.disown()
    return index


def set_search_params(index, kind: str, params: dict) -> None:
    """Apply the query-time knobs (nprobe / efSearch) stored in the manifest."""
    faiss = _faiss()
    if kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = int(params.get("nprobe", 8))
    elif kind == "hnsw":
        index.hnsw.efSearch = int(params.get("efSearch", 128))


def _to_gpu(index):
    faiss = _faiss()
    return faiss.index_cpu_to_all_gpus(index)


def _to_cpu(index):
    faiss = _faiss()
    return faiss.index_gpu_to_cpu(index) if hasattr(faiss, "index_gpu_to_cpu") else index


def train_index(index, kind: str, vectors: np.ndarray, params: dict, seed: int = 0) -> None:
    """Train IVF kinds on a random sample of ``params['train_size']`` (already normalised) vectors."""
    if kind not in ("ivf", "ivfpq") or index.is_trained:
        return
    n = len(vectors)
    size = min(n, int(params.get("train_size", n)))
    rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False)) if size < n else slice(None)
    index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))


# ------------------------------------------------------------------------------------- reading vectors
def is_covered(record: dict, covered: "set[str]") -> bool:
    """Whether the index covering the batches ``covered`` holds ``record``'s clips: it names the batch, or
    the batch is a compaction (index/store/compact.py) of batches it names."""
    return record["batch"] in covered or "covers" in record and set(record["covers"]) <= covered


def batch_names(records: "list[dict]") -> "list[str]":
    """What a manifest lists for these batches: their ids, and for compacted ones the originals they cover
    (so a later compaction of them still counts as covered)."""
    out: list[str] = []
    for c in records:
        out.append(c["batch"])
        out.extend(c.get("covers", ()))
    return out


def _batches_with(store: Store, model_id: str, table: str = "embeddings") -> "list[dict]":
    return [c for c in store.commits() if c["model_id"] == model_id and c["tables"].get(table)]


def read_vectors(store: Store, model_id: str, batches: "list[str] | None" = None
                 ) -> "tuple[list[str], np.ndarray]":
    """(clip_ids, vectors (n, D) float32, not normalised) of ``model_id`` in the given commit batches (all
    when None), read shard by shard straight from the Parquet files."""
    wanted = None if batches is None else set(batches)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for c in _batches_with(store, model_id):
        if wanted is not None and c["batch"] not in wanted:
            continue
        path = store.shard_path("embeddings", c)
        t = store.read_shard("embeddings", c, columns=["clip_id", "model_id", "embedding"])
        if t is None:                   # rewritten away by a replacement batch
            continue
        t = t.filter(pc.equal(t["model_id"], model_id))
        if not t.num_rows:
            continue
        emb = t["embedding"].combine_chunks()
        flat = np.asarray(emb.flatten(), dtype=np.float32)
        dim = len(flat) // t.num_rows if t.num_rows else 0
        lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
        if (lengths != dim).any():
            raise VectorIndexError(f"{path}: embeddings of different widths in one shard "
                              f"({sorted(set(lengths.tolist()))}); re-tag this model with `bike tag --force`")
        ids.extend(t["clip_id"].to_pylist())
        parts.append(flat.reshape(t.num_rows, dim))
    if not parts:
        return [], np.zeros((0, 0), np.float32)
    dims = {p.shape[1] for p in parts}
    if len(dims) > 1:
        raise VectorIndexError(f"{store.root}: model {model_id} has embeddings of widths {sorted(dims)}; "
                          "re-tag it with `bike tag --force`")
    return ids, np.concatenate(parts)


def _newest_only(ids: "list[str]", vectors: np.ndarray) -> "tuple[list[str], np.ndarray]":
    """Keep the last (newest batch's) row of each clip_id: a replacement batch whose clean-up has not run
    yet (a crash; ``Store.recover`` finishes it) must not put a clip in the index twice."""
    last = {c: i for i, c in enumerate(ids)}
    if len(last) == len(ids):
        return ids, vectors
    rows = sorted(last.values())
    return [ids[i] for i in rows], vectors[rows]


def resolve_model_id(store: Store, model_id: "str | None" = None) -> str:
    """The model_id to index/search: the given one (checked), else the only one with embeddings, else the one
    committed most recently."""
    with_vectors = [c["model_id"] for c in store.commits() if c["tables"].get("embeddings")]
    if model_id is not None:
        if model_id not in with_vectors:
            known = ", ".join(sorted(set(with_vectors))) or "none"
            raise VectorIndexError(f"{store.root}: no embeddings for model_id {model_id!r} (model ids with "
                              f"embeddings: {known}); see `bike sql --store {store.root} \"SELECT * FROM models\"`")
        return model_id
    if not with_vectors:
        raise VectorIndexError(f"{store.root}: the store holds no clip embeddings yet; "
                          f"run `bike tag VIDEOS --store {store.root}` first")
    return with_vectors[-1]


# ------------------------------------------------------------------------------------------ persistence
def encode_ids(ids: "list[str]") -> np.ndarray:
    """clip ids → a fixed-width bytes array (compact: ~35 bytes per clip, vs 4× that as numpy unicode)."""
    return np.array([c.encode() for c in ids], dtype="S") if ids else np.zeros(0, dtype="S1")


def decode_ids(ids: np.ndarray) -> "list[str]":
    return [c.decode() for c in ids.tolist()]


def _index_key(model_id: str) -> str:
    """The index folder's key in the store (index/store/storefs.py)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", model_id) or model_id in (".", ".."):
        raise VectorIndexError(f"model_id {model_id!r} is not a plain identifier")
    return f"{INDEX_DIR}/{model_id}"


def index_dir(store: Store, model_id: str) -> Path:
    """The index folder: a path, or a URL for a store on object storage."""
    return store.fs.path(_index_key(model_id))


@contextmanager
def index_lock(store: Store, directory: Path):
    """One writer per index directory at a time (a second `bike index` waits for the first): locally a lock
    file in the folder (``bike index`` may run while ``bike tag`` holds the store's writer lock); on object
    storage the store's writer lease (index/store/lease.py; re-entrant for the Store object that holds it, so
    ``bike tag`` updating its indexes goes on, while a `bike index` during a `bike tag` stops with its message).
    Used for the FAISS indexes and the text index (index/search/textindex.py)."""
    if store.remote:
        with store.lock():
            yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_manifest(store: Store, model_id: str) -> "tuple[dict, bytes] | None":
    key = f"{_index_key(model_id)}/{MANIFEST}"
    path = store.fs.path(key)
    try:
        got = store.fs.read_tagged(key)
        if got is None:
            return None
        manifest = json.loads(got[0])
        for k in ("index_file", "ids_file"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(manifest.get(k, ""))) or manifest[k].startswith("."):
                raise ValueError(f"{k} is not a plain file name")
        return manifest, got[0]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise VectorIndexError(f"{path}: unreadable index manifest ({e}); fix: rebuild it with "
                          f"`bike index --store {store.root} --model-id {model_id}`") from None


def read_manifest(store: Store, model_id: str) -> "dict | None":
    got = _read_manifest(store, model_id)
    return None if got is None else got[0]


def _local_copy(store: Store, model_id: str, manifest: dict, raw: bytes) -> Path:
    """A store on object storage: the index and id files of ``manifest``, downloaded once into a local cache
    folder keyed by the manifest's bytes (``$BIKE_CACHE_DIR/index/<sha256>``, default ``~/.cache/bike``), where
    they can be memory-mapped. A new manifest (a rebuilt or extended index) is a new folder; older folders of
    the same store and model are removed."""
    import hashlib
    import shutil
    import tempfile

    from engine.model.config import cache_root
    from engine.sources.remote import RemoteError
    base = cache_root() or Path(tempfile.gettempdir()) / "bike"   # caches off: an index still needs a local copy
    owner = hashlib.sha256(f"{store.root}\0{model_id}".encode()).hexdigest()[:16]
    folder = base / "index" / owner / hashlib.sha256(raw).hexdigest()[:24]
    key = _index_key(model_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in (manifest["index_file"], manifest["ids_file"]):
            want = (manifest.get("sizes") or {}).get(name)
            have = (folder / name).stat().st_size if (folder / name).exists() else None
            if have is not None and (want is None or have == want):
                continue
            store.fs.download(f"{key}/{name}", folder / name)
        for old in folder.parent.iterdir():
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    except RemoteError as e:
        raise VectorIndexError(f"{e.url}: {e.reason} (named by {store.fs.path(key)}/{MANIFEST}); fix: rebuild "
                               f"with `bike index --store {store.root} --model-id {model_id}`") from None
    except OSError as e:
        raise VectorIndexError(f"{folder}: cannot keep a local copy of the index of {store.root}: "
                               f"{e.strerror or e} (BIKE_CACHE_DIR)") from None
    return folder


@dataclass
class VectorIndex:
    """An opened index: the FAISS object, the clip_id of each position, and its manifest."""
    store: Store
    model_id: str
    manifest: dict
    index: object
    ids: np.ndarray                       # (n,) clip_id as ASCII bytes; FAISS label i ↔ ids[i]
    _order: "np.ndarray | None" = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def pending(self) -> "list[dict]":
        """Commit batches of this model that the index does not cover (newest last): the index is stale
        when this is non-empty."""
        covered = set(self.manifest["batches"])
        return [c for c in self.store.commits() if c["model_id"] == self.model_id
                and not is_covered(c, covered) and (c["tables"].get("embeddings") or c.get("replace"))]

    def positions(self, clip_ids) -> np.ndarray:
        """FAISS positions of clip ids that the index holds (others are skipped)."""
        if self._order is None:
            self._order = np.argsort(self.ids, kind="stable")
        if not len(self.ids):
            return np.zeros(0, np.int64)
        wanted = encode_ids(list(clip_ids))
        sorted_ids = self.ids[self._order]
        at = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        found = sorted_ids[at] == wanted
        return self._order[at[found]].astype(np.int64)

    def to_gpu(self) -> "VectorIndex":
        """Move the FAISS index to all GPUs (faiss-gpu builds only)."""
        if num_gpus() == 0:
            raise VectorIndexError("--gpu: the installed faiss has no GPU support or sees no GPU; fix: "
                              "`pip install faiss-gpu-cu12` on a CUDA 12 host, or drop --gpu")
        self.index = _to_gpu(self.index)
        return self

    def search(self, queries: np.ndarray, n: int, allowed: "np.ndarray | None" = None
               ) -> "tuple[list[np.ndarray], list[list[str]]]":
        """Top-``n`` clips per query (queries (q, D), normalised here). ``allowed``: FAISS positions to
        restrict to (an IDSelector), e.g. the clips a --where filter kept. → (per query: scores, clip_ids),
        best first; fewer than ``n`` when fewer clips qualify."""
        faiss = _faiss()
        q = normalize(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise VectorIndexError(f"query width {q.shape[1]} does not match the index width {self.dim}")
        n = max(1, min(int(n), len(self)))
        if len(self) == 0:
            return [np.zeros(0, np.float32) for _ in q], [[] for _ in q]
        params = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.kind in ("ivf", "ivfpq"):
                ivf = faiss.extract_index_ivf(self.index)
                params = faiss.SearchParametersIVF(sel=sel, nprobe=ivf.nprobe)
            elif self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.index.hnsw.efSearch, n))
            else:
                params = faiss.SearchParameters(sel=sel)
        elif self.kind == "hnsw" and self.index.hnsw.efSearch < n:
            params = faiss.SearchParametersHNSW(efSearch=n)
        scores, labels = self.index.search(q, n, params=params)
        out_ids = [[self.ids[j].decode() for j in row if j >= 0] for row in labels]
        return [s[: len(o)] for s, o in zip(scores, out_ids)], out_ids


def open_index(store: "Store | str", model_id: str, mmap: bool = True) -> "VectorIndex | None":
    """The persisted index of ``model_id``, or None when none was built. ``mmap``: memory-map the index and
    id files read-only (search: the OS pages in what queries touch and may drop it again, so an index larger
    than memory still answers); ``False`` reads them into memory (to extend the index)."""
    store = store if isinstance(store, Store) else Store(store)
    got = _read_manifest(store, model_id)
    if got is None:
        return None
    manifest = got[0]
    faiss = _faiss()
    d = _local_copy(store, model_id, *got) if store.remote else index_dir(store, model_id)
    index_path, ids_path = d / manifest["index_file"], d / manifest["ids_file"]
    for p in (index_path, ids_path):
        if not p.exists():
            raise VectorIndexError(f"{p}: missing (named by {d / MANIFEST}); fix: rebuild with "
                              f"`bike index --store {store.root} --model-id {model_id}`")
    try:
        if mmap:
            # IVF kinds: IO_FLAG_MMAP maps the inverted lists; flat and HNSW: IO_FLAG_MMAP_IFC maps the vector
            # storage (the two do not combine: measured with faiss 1.15)
            mapped = faiss.IO_FLAG_MMAP if manifest["kind"] in ("ivf", "ivfpq") else faiss.IO_FLAG_MMAP_IFC
            flags = mapped | faiss.IO_FLAG_READ_ONLY
            index = faiss.read_index(str(index_path), flags)
        else:
            index = faiss.read_index(str(index_path))
        ids = np.load(ids_path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as e:  # noqa: BLE001 - any decoding failure means a damaged file
        raise VectorIndexError(f"{index_path}: cannot read the index ({e}); fix: rebuild with "
                          f"`bike index --store {store.root} --model-id {model_id}`") from None
    if index.ntotal != len(ids):
        raise VectorIndexError(f"{index_path}: holds {index.ntotal} vectors but {ids_path.name} names {len(ids)}; "
                          f"fix: rebuild with `bike index --store {store.root} --model-id {model_id}`")
    set_search_params(index, manifest["kind"], manifest["params"])
    return VectorIndex(store, model_id, manifest, index, ids)


# ---------------------------------------------------------------------------------------- build / extend
@dataclass
class IndexReport:
    """What :func:`update_index` did."""
    model_id: str
    kind: str
    total: int               # vectors in the index now
    added: int               # vectors added by this call
    rebuilt: bool            # built from scratch (first build, replacement, new kind, retraining)
    reason: str              # why it was (re)built or extended, or "up to date"
    seconds: float
    path: Path
    bytes: int = 0
    gpu: bool = False
    search_bytes: int = 0    # memory a search touches (memory-mapped: paged in on demand), see search_bytes()
    detail: str = ""         # the kind's parameters, e.g. "IVF-Flat, 1024 lists, 16 probed per query"

    def line(self) -> str:
        size = f"{self.bytes / 2**20:.1f} MiB"
        detail = f" ({self.detail})" if self.detail else ""
        need = (f"; search needs ~{_mib(self.search_bytes)} of memory (memory-mapped: paged in as queries "
                "touch it)") if self.search_bytes else ""
        return (f"index {self.kind}{detail} of model {self.model_id}: {self.total} clips ({self.added} added; "
                f"{self.reason}) in {self.seconds:.1f}s, {size} on disk{', built on GPU' if self.gpu else ''}"
                f"{need} → {self.path}")


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _describe(kind: str, params: dict) -> str:
    if kind == "flat":
        return "exact inner product"
    if kind == "hnsw":
        return f"HNSW, M={params.get('M')}, efSearch {params.get('efSearch')}"
    what = "IVF-Flat" if kind == "ivf" else f"IVF-PQ {params.get('m')}×{params.get('nbits')}-bit codes"
    return (f"{what}, {params.get('nlist')} lists trained on {params.get('train_size')} sampled vectors, "
            f"{params.get('nprobe')} probed per query")


def search_bytes(kind: str, n: int, dim: int, params: dict, id_bytes: int = 0) -> int:
    """Memory a search over the index touches: vectors or codes, inverted-list ids, coarse centroids, graph
    links, plus the clip-id array (``id_bytes``). Memory-mapped, this is the working set the OS pages in (an
    IVF query only reads ``nprobe`` of the ``nlist`` lists), not memory the process must own."""
    if kind == "flat":
        body = n * dim * 4
    elif kind == "hnsw":
        body = n * (dim * 4 + 2 * int(params.get("M", 32)) * 4 * 1.1)
    elif kind in ("ivf", "ivfpq"):
        nlist = int(params.get("nlist", 1))
        code = dim * 4 if kind == "ivf" else math.ceil(int(params.get("m", 1)) * int(params.get("nbits", 8)) / 8)
        body = n * (code + 8) + nlist * dim * 4
        if kind == "ivfpq":
            body += 2 ** int(params.get("nbits", 8)) * dim * 4          # PQ centroids
    else:
        body = n * dim * 4
    return int(body + id_bytes)


def _plan(manifest: "dict | None", pending: "list[dict]", total: int, kind: str) -> "tuple[bool, str]":
    """(rebuild?, reason) for an index described by ``manifest`` with ``pending`` new batches."""
    if manifest is None:
        return True, "new index"
    if any(c.get("replace") for c in pending):
        return True, "rebuilt: videos were re-tagged (--force) since the last build"
    want = choose_kind(total, kind)
    if want != manifest["kind"]:
        return True, f"rebuilt as {want} (was {manifest['kind']}, now {total} clips)"
    trained_at = manifest.get("trained_on", 0)
    if manifest["kind"] in ("ivf", "ivfpq") and trained_at and total > RETRAIN_GROWTH * trained_at:
        return True, f"retrained: {total} clips, trained at {trained_at}"
    return False, "extended" if pending else "up to date"


def update_index(store: "Store | str", model_id: "str | None" = None, kind: "str | None" = None,
                 gpu: "bool | None" = False, log=None) -> IndexReport:
    """Build or extend the FAISS index of ``model_id``'s clip embeddings (see the module docstring).

    Called by ``bike index`` and at the end of ``bike tag``. ``kind``: None keeps the kind last asked for
    (an index built with ``kind="hnsw"`` stays HNSW when ``bike tag`` extends it), ``"auto"`` chooses by size
    again, another kind rebuilds as that kind. ``gpu``: True builds on the GPUs of a
    faiss-gpu install (an error without one), None uses them when present, False never. ``log`` is called
    with progress lines (default: silent).
    """
    t0 = time.perf_counter()
    store = store if isinstance(store, Store) else Store(store)
    store.commits(refresh=True)
    model_id = resolve_model_id(store, model_id)
    if kind is not None:
        choose_kind(0, kind)                               # validates the name
    use_gpu = bool(gpu) or (gpu is None and num_gpus() > 0)
    if use_gpu and num_gpus() == 0:
        raise VectorIndexError("--gpu: the installed faiss has no GPU support or sees no GPU; fix: "
                          "`pip install faiss-gpu-cu12` on a CUDA 12 host, or drop --gpu")
    say = log or (lambda msg: None)
    faiss = _faiss()
    d = index_dir(store, model_id)
    with index_lock(store, d):
        manifest = read_manifest(store, model_id)
        batches = _batches_with(store, model_id)
        total_rows = sum(c["tables"]["embeddings"] for c in batches)
        covered = set(manifest["batches"]) if manifest else set()
        pending = [c for c in store.commits() if c["model_id"] == model_id and not is_covered(c, covered)
                   and (c["tables"].get("embeddings") or c.get("replace"))]
        # An explicit kind sticks: a later update without one (e.g. at the end of `bike tag`) keeps it;
        # an explicit "auto" chooses by size again.
        requested = kind if kind is not None else (manifest or {}).get("requested_kind", "auto")
        rebuild, reason = _plan(manifest, pending, total_rows, requested)
        if not rebuild and not pending:
            return IndexReport(model_id, manifest["kind"], int(manifest["count"]), 0, False, "up to date",
                               time.perf_counter() - t0, d, _size(store, model_id, manifest), False,
                               int(manifest.get("search_bytes", 0)), _describe(manifest["kind"], manifest["params"]))

        if rebuild:
            say(f"reading the clip ids of model {model_id} ...")
            scan = vecstream.scan_ids(store, model_id)
            dim = scan.dim
            chosen = choose_kind(scan.count, requested)
            params = default_params(chosen, scan.count, dim)
            index = new_index(chosen, dim, params) if dim else None
            existing_ids: list[str] = []
            trained_on = 0
        else:
            opened = open_index(store, model_id, mmap=False)       # extended in memory, written anew
            index, chosen, params, dim = opened.index, opened.kind, dict(manifest["params"]), opened.dim
            existing_ids = decode_ids(opened.ids)
            trained_on = int(manifest.get("trained_on", 0))
            scan = vecstream.scan_ids(store, model_id, [c["batch"] for c in pending], skip=set(existing_ids))
            if scan.count and scan.dim != dim:
                raise VectorIndexError(f"{store.root}: new embeddings of model {model_id} are {scan.dim}-d, "
                                  f"the index is {dim}-d; fix: `bike index --store {store.root} --kind {chosen}` "
                                  "after deleting " + str(d))

        built_gpu = False
        new_ids: list[str] = []
        if index is not None and scan.count:
            if use_gpu and chosen != "hnsw":
                index, built_gpu = _to_gpu(index), True
            if not index.is_trained:
                size = min(scan.count, int(params.get("train_size", scan.count)))
                say(f"training {chosen} ({params.get('nlist')} lists) on {size} of {scan.count} vectors, "
                    "sampled uniformly ...")
                index.train(normalize(vecstream.sample(scan, model_id, size)))
                trained_on = scan.count
            for ids, vecs in vecstream.chunks(scan, model_id, ADD_CHUNK):   # bounded memory: one chunk
                index.add(normalize(vecs))
                new_ids.extend(ids)
                if scan.count > ADD_CHUNK:
                    say(f"added {len(new_ids)}/{scan.count} vectors")
            if built_gpu:
                index = _to_cpu(index)
        all_ids = encode_ids(existing_ids + list(new_ids))
        manifest_new = {
            "model_id": model_id, "kind": chosen, "requested_kind": requested, "dim": int(dim),
            "count": int(len(all_ids)), "params": params, "trained_on": int(trained_on),
            "batches": batch_names(batches) + batch_names([c for c in pending if not c["tables"].get("embeddings")]),
            "built_at": time.time(), "faiss_version": faiss.__version__, "metric": "inner_product",
            "normalized": True, "gpu_built": built_gpu,
            "search_bytes": search_bytes(chosen, len(all_ids), int(dim), params, int(all_ids.nbytes)),
            "previous": [manifest[k] for k in ("index_file", "ids_file")] if manifest else [],
        }
        _publish(store, model_id, manifest_new, index, all_ids)
        return IndexReport(model_id, chosen, len(all_ids), len(new_ids), rebuild, reason,
                           time.perf_counter() - t0, d, _size(store, model_id, manifest_new), built_gpu,
                           manifest_new["search_bytes"], _describe(chosen, params))


def _size(store: Store, model_id: str, manifest: dict) -> int:
    listed = store.fs.list(_index_key(model_id))
    return sum(listed.get(manifest[k], 0) for k in ("index_file", "ids_file"))


def _publish(store: Store, model_id: str, manifest: dict, index, ids: np.ndarray) -> None:
    """Write a new generation (index + ids) under new names, then the manifest naming it; then delete older
    generations. On object storage the files are written locally and uploaded whole (written once: a new
    generation never overwrites a file), and the manifest is written last, under the store's writer lease."""
    faiss = _faiss()
    fs, key = store.fs, _index_key(model_id)
    gen = f"{time.time_ns():020d}"
    manifest["index_file"], manifest["ids_file"] = f"index-{gen}.faiss", f"ids-{gen}.npy"
    if index is None:
        index = faiss.IndexFlatIP(max(1, manifest["dim"]))
    sizes: dict = {}

    def write_index(tmp: str) -> None:
        faiss.write_index(index, tmp)
        sizes[manifest["index_file"]] = Path(tmp).stat().st_size

    def write_ids(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, ids, allow_pickle=False)
        sizes[manifest["ids_file"]] = Path(tmp).stat().st_size
    fs.write_file(f"{key}/{manifest['index_file']}", write_index)
    fs.write_file(f"{key}/{manifest['ids_file']}", write_ids)
    manifest["sizes"] = sizes
    if store.remote:
        store._check_lease()
    fs.write(f"{key}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
    # The previous generation stays one round, for readers that opened the old manifest a moment ago.
    keep = {manifest["index_file"], manifest["ids_file"], MANIFEST, ".lock", *manifest.get("previous", [])}
    for name in fs.list(key):
        if name not in keep:
            fs.delete(f"{key}/{name}")


def exact_search(vectors: np.ndarray, ids: "list[str]", queries: np.ndarray, n: int
                 ) -> "tuple[list[np.ndarray], list[list[str]]]":
    """Brute-force cosine top-``n`` over (not yet normalised) ``vectors``: the fallback for clips that no
    index covers. → (per query: scores, clip_ids), best first."""
    if not len(ids):
        return [np.zeros(0, np.float32) for _ in np.atleast_2d(queries)], [[] for _ in np.atleast_2d(queries)]
    sims = normalize(np.atleast_2d(queries)) @ normalize(vectors).T          # (q, m)
    n = min(n, sims.shape[1])
    top = np.argpartition(-sims, n - 1, axis=1)[:, :n]
    order = np.take_along_axis(sims, top, 1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, 1)
    return list(np.take_along_axis(sims, top, 1)), [[ids[j] for j in row] for row in top]


__all__ = ["EXACT_MAX", "KINDS", "PQ_MIN", "VectorIndexError", "IndexReport", "VectorIndex", "choose_kind",
           "default_params", "exact_search", "index_dir", "normalize", "num_gpus", "open_index", "read_vectors",
           "resolve_model_id", "update_index"]
