"""FAISS for large stores (index/search/vecstream.py, index/search/vectors.py): bounded-memory reading, the training sample,
newest-row-wins without loading everything, memory-mapped search, and what `bike index` says it built."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from index.search import vecstream
from index.search import vectors as V
from index.store import Store
from index.search.vectors import _newest_only, open_index, read_vectors, update_index
from jobs.cli import main as bike
from searchstore import add_video, random_clips


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


@pytest.fixture(scope="module")
def store12(tmp_path_factory, tiny_model, labels):
    """12 videos × 3 clips, one of them tagged twice (a replacement whose clean-up never ran)."""
    store = Store(tmp_path_factory.mktemp("large") / "s", create=True)
    rng = np.random.default_rng(0)
    for v in range(12):
        mid = add_video(store, tiny_model, labels, f"v{v:02d}", random_clips(rng, 3, 8, tiny_model.embed_dim))
    add_video(store, tiny_model, labels, "v03", random_clips(rng, 3, 8, tiny_model.embed_dim))  # newer rows
    return store, mid


def test_chunks_are_bounded_and_hold_exactly_the_newest_rows(store12, monkeypatch):
    store, mid = store12
    monkeypatch.setattr(vecstream, "READ_ROWS", 4)
    scan = vecstream.scan_ids(store, mid)
    want_ids, want = _newest_only(*read_vectors(store, mid))
    assert scan.count == len(want_ids) == 36 and len(scan.ids) == 39 and scan.dim == want.shape[1]
    got_ids, got = [], []
    for ids, vecs in vecstream.chunks(scan, mid, 5):
        assert len(ids) == len(vecs) <= 5
        got_ids.extend(ids)
        got.append(vecs)
    assert got_ids == want_ids
    np.testing.assert_array_equal(np.concatenate(got), want)
    # already indexed clips are skipped
    skip = set(want_ids[:10])
    assert vecstream.scan_ids(store, mid, skip=skip).count == 26


def test_the_training_sample_is_made_of_real_rows(store12):
    store, mid = store12
    scan = vecstream.scan_ids(store, mid)
    ids, vecs = _newest_only(*read_vectors(store, mid))
    s = vecstream.sample(scan, mid, 10, seed=3)
    assert s.shape == (10, vecs.shape[1])
    rows = [int(np.flatnonzero((vecs == r).all(axis=1))[0]) for r in s]        # each one is a kept row
    assert len(set(rows)) == 10
    assert vecstream.sample(scan, mid, 10, seed=4).tolist() != s.tolist()       # random, seeded
    np.testing.assert_array_equal(np.sort(vecstream.sample(scan, mid, 1000), axis=0), np.sort(vecs, axis=0))


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_built_in_small_chunks_the_index_equals_one_built_at_once(store12, tiny_model, monkeypatch, kind):
    store, mid = store12
    queries = np.random.default_rng(1).standard_normal((4, tiny_model.embed_dim)).astype(np.float32)
    whole = update_index(store, mid, kind=kind)
    ref = open_index(store, mid, mmap=False).search(queries, 5)
    monkeypatch.setattr(V, "ADD_CHUNK", 4)
    monkeypatch.setattr(vecstream, "READ_ROWS", 3)
    chunked = update_index(Store(store.root), mid, kind="flat" if kind != "flat" else "hnsw")   # force a rebuild
    chunked = update_index(Store(store.root), mid, kind=kind)
    assert chunked.rebuilt and chunked.total == whole.total == 36
    got = open_index(store, mid).search(queries, 5)                 # memory-mapped
    assert got[1] == ref[1]
    np.testing.assert_allclose(np.array(got[0]), np.array(ref[0]), rtol=1e-5)
    assert "search needs ~" in chunked.line() and "on disk" in chunked.line()


def test_search_memory_maps_the_index_file(store12, tmp_path):
    store, mid = store12
    for kind in ("flat", "ivf", "hnsw"):
        update_index(store, mid, kind=kind)
        path = str(V.index_dir(store, mid) / V.read_manifest(store, mid)["index_file"])

        def mapped() -> bool:
            return path in open("/proc/self/maps").read()

        idx = open_index(store, mid)
        assert mapped(), kind                   # the OS pages it in on demand: not read into the heap
        mapped_result = idx.search(np.ones((1, idx.dim), np.float32), 5)
        del idx
        plain = open_index(store, mid, mmap=False)
        assert plain.search(np.ones((1, plain.dim), np.float32), 5)[1] == mapped_result[1]


def test_search_bytes_estimates():
    assert V.search_bytes("flat", 1000, 512, {}) == 1000 * 512 * 4
    p = V.default_params("ivfpq", 10_000_000, 512)
    pq = V.search_bytes("ivfpq", 10_000_000, 512, p)
    ivf = V.search_bytes("ivf", 10_000_000, 512, V.default_params("ivf", 10_000_000, 512))
    assert 10_000_000 * 64 < pq < ivf / 10                        # 64-byte codes vs 2 KiB vectors


def test_bike_index_says_what_it_built_and_the_memory_search_needs(store12, capsys):
    store, mid = store12
    assert bike(["index", "--store", str(store.root), "--kind", "ivf"]) == 0
    out = capsys.readouterr().out
    assert "index ivf (IVF-Flat, " in out and "lists trained on" in out and "probed per query" in out
    assert "search needs ~" in out and "memory-mapped" in out
