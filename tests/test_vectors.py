"""The FAISS index (index/search/vectors.py): build, extend, reopen, rebuild rules, staleness, kinds, the command."""
from __future__ import annotations

import json

import numpy as np
import pytest

import engine
from index.store import Store
from index.search.vectors import (EXACT_MAX, PQ_MIN, VectorIndexError, choose_kind, default_params, exact_search,
                           index_dir, normalize, open_index, read_vectors, update_index)
from jobs.cli import main as bike
from searchstore import add_video, random_clips


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


def make_store(path, model, labels, videos: int, clips: int = 3, seed: int = 0, prefix: str = "v"):
    store = Store(path, create=True)
    rng = np.random.default_rng(seed)
    mid = None
    for v in range(videos):
        mid = add_video(store, model, labels, f"{prefix}{v:03d}", random_clips(rng, clips, 8, model.embed_dim))
    return store, mid


def test_build_reopen_and_search_matches_brute_force(tmp_path, tiny_model, labels):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=8)
    report = update_index(store, mid)
    assert (report.kind, report.total, report.added, report.rebuilt) == ("flat", 24, 24, True)
    d = index_dir(store, mid)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["count"] == 24 and manifest["kind"] == "flat"
    assert set(manifest["batches"]) == {c["batch"] for c in store.commits() if c["tables"].get("embeddings")}
    assert not list(d.glob("*.tmp")) and not list(d.glob(".*.tmp"))

    idx = open_index(Store(store.root), mid)               # reopened from disk by a fresh Store object
    assert len(idx) == 24 and idx.pending() == []
    ids, vecs = read_vectors(store, mid)
    q = np.random.default_rng(1).standard_normal((3, vecs.shape[1])).astype(np.float32)
    scores, got = idx.search(q, 5)
    sims = normalize(q) @ normalize(vecs).T
    for i in range(3):
        want = [ids[j] for j in np.argsort(-sims[i])[:5]]
        assert got[i] == want
        np.testing.assert_allclose(scores[i], np.sort(sims[i])[::-1][:5], rtol=1e-5, atol=1e-6)
    e_scores, e_got = exact_search(vecs, ids, q, 5)
    assert e_got == got


def test_extend_adds_only_new_clips(tmp_path, tiny_model, labels):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=4)
    update_index(store, mid)
    assert update_index(store, mid).reason == "up to date"
    rng = np.random.default_rng(5)
    add_video(store, tiny_model, labels, "new1", random_clips(rng, 2, 8, tiny_model.embed_dim))
    add_video(store, tiny_model, labels, "new2", random_clips(rng, 1, 8, tiny_model.embed_dim))
    stale = open_index(store, mid)
    assert len(stale.pending()) == 2 and len(stale) == 12
    report = update_index(store, mid)
    assert (report.added, report.total, report.rebuilt, report.reason) == (3, 15, False, "extended")
    extended = open_index(store, mid)
    assert extended.pending() == []
    assert sorted(extended.ids.astype(str).tolist()) == sorted(read_vectors(store, mid)[0])
    # The extended index answers exactly like one built from scratch.
    fresh_root = tmp_path / "copy"
    fresh_root.mkdir()
    q = np.random.default_rng(2).standard_normal((4, tiny_model.embed_dim)).astype(np.float32)
    ids, vecs = read_vectors(store, mid)
    assert extended.search(q, 6)[1] == exact_search(vecs, ids, q, 6)[1]
    # Only the current and the previous generation stay on disk.
    assert len(list(index_dir(store, mid).glob("index-*.faiss"))) <= 2


def test_replaced_videos_and_kind_changes_rebuild(tmp_path, tiny_model, labels):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=3)
    update_index(store, mid)
    rng = np.random.default_rng(9)
    add_video(store, tiny_model, labels, "v001", random_clips(rng, 2, 8, tiny_model.embed_dim), replace=True)
    report = update_index(store, mid)
    assert report.rebuilt and "re-tagged" in report.reason and report.total == 8     # v001: 3 clips → 2
    ids, vecs = read_vectors(store, mid)
    idx = open_index(store, mid)
    q = vecs[ids.index("v001/1")][None]
    assert idx.search(q, 1)[1][0] == ["v001/1"]                                      # the NEW vector

    report = update_index(store, mid, kind="hnsw")
    assert report.rebuilt and report.kind == "hnsw"
    add_video(store, tiny_model, labels, "v100", random_clips(rng, 1, 8, tiny_model.embed_dim))
    report = update_index(store, mid)               # plain update (as at the end of `bike tag`) keeps hnsw
    assert (report.kind, report.rebuilt, report.added) == ("hnsw", False, 1)


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "hnsw"])
def test_approximate_kinds_build_extend_and_find_exact_matches(tmp_path, tiny_model, labels, kind):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=60, clips=5)        # 300 clips
    report = update_index(store, mid, kind=kind)
    assert report.kind == kind and report.total == 300
    rng = np.random.default_rng(3)
    add_video(store, tiny_model, labels, "late", random_clips(rng, 4, 8, tiny_model.embed_dim))
    report = update_index(store, mid)
    assert (report.kind, report.added, report.rebuilt) == (kind, 4, False)
    idx = open_index(store, mid)
    ids, vecs = read_vectors(store, mid)
    # A stored vector finds itself (IVF-PQ codes of 300 vectors are crude: 2-bit codes, so look deeper).
    depth = 30 if kind == "ivfpq" else 5
    hits = [idx.search(vecs[i][None], depth)[1][0] for i in range(0, len(ids), 7)]
    found = np.mean([ids[i] in h for i, h in zip(range(0, len(ids), 7), hits)])
    assert found >= (0.85 if kind == "ivfpq" else 0.97)
    # An ID selector restricts the search to allowed positions.
    allowed = idx.positions(ids[:20])
    _, got = idx.search(vecs[:3], 10, allowed)
    assert all(set(g) <= set(ids[:20]) for g in got)


def test_choose_kind_and_params():
    assert choose_kind(10) == "flat" and choose_kind(EXACT_MAX - 1) == "flat"
    assert choose_kind(EXACT_MAX) == "ivf" and choose_kind(PQ_MIN) == "ivfpq"
    assert choose_kind(5, "hnsw") == "hnsw"
    with pytest.raises(VectorIndexError, match="unknown index kind"):
        choose_kind(5, "lsh")
    p = default_params("ivf", 1_000_000, 512)
    assert p["nlist"] == 4096 and p["train_size"] == 40 * 4096 and p["nprobe"] >= 8
    p = default_params("ivfpq", 100_000_000, 512)
    assert p["nlist"] == 32768 and p["m"] == 64 and p["nbits"] == 8
    assert default_params("ivf", 100, 64)["nlist"] == 2


def test_gpu_request_without_gpus_is_a_clear_error(tmp_path, tiny_model, labels):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=1)
    import faiss
    if faiss.get_num_gpus() > 0:
        pytest.skip("this faiss has GPUs")
    with pytest.raises(VectorIndexError, match="faiss-gpu"):
        update_index(store, mid, gpu=True)


def test_model_id_resolution(tmp_path, tiny_model, labels):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=1)
    with pytest.raises(VectorIndexError, match="no embeddings for model_id"):
        update_index(store, "0123456789abcdef")
    empty = Store(tmp_path / "empty", create=True)
    with pytest.raises(VectorIndexError, match="no clip embeddings yet"):
        update_index(empty)
    assert update_index(store).model_id == mid


def test_index_command(tmp_path, tiny_model, labels, capsys):
    store, mid = make_store(tmp_path / "s", tiny_model, labels, videos=2)
    assert bike(["index", "--store", str(store.root)]) == 0
    assert "6 clips (6 added; new index)" in capsys.readouterr().out
    assert bike(["index", "--store", str(store.root), "--kind", "ivf"]) == 0
    assert "index ivf" in capsys.readouterr().out
    assert bike(["index", "--store", str(tmp_path / "missing")]) == 2
    assert "no such store" in capsys.readouterr().err
    assert bike(["index", "--store", str(store.root), "--model-id", "nope"]) == 2
    assert "no embeddings for model_id" in capsys.readouterr().err
