"""Search (index/search/search.py): moments, re-rank against its definition, --where, query by example, stale index,
loading the store's model, and the `bike search` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import engine
from engine.model.spotting import concept_spotting
from index.search import search as search_mod
from index.search.rerank import rerank_example, rerank_text
from index.search.search import Query, Searcher, SearchError
from index.store import Store
from index.store.storemodel import ModelMismatch, load_store_model
from index.search.vectors import update_index
from index.store.where import WhereError
from jobs.cli import main as bike
from searchstore import WINDOW_S, add_video, random_clips

T = 8


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


def unit_frames(rng, n_clips: int, d: int) -> "list[np.ndarray]":
    """Clips whose T frames point in different (near-orthogonal) directions."""
    return [np.asarray(rng.standard_normal((T, d)), np.float32) for _ in range(n_clips)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model, labels):
    """12 videos × 2 clips with distinct frames, indexed; durations 5..60 s."""
    store = Store(tmp_path_factory.mktemp("search") / "store", create=True)
    rng = np.random.default_rng(0)
    frames = {}
    for v in range(12):
        clips = unit_frames(rng, 2, tiny_model.embed_dim)
        mid = add_video(store, tiny_model, labels, f"v{v:02d}", clips, duration_s=5.0 * (v + 1))
        for i, c in enumerate(clips):
            frames[f"v{v:02d}/{i}"] = c
    update_index(store, mid)
    return store, mid, frames


@pytest.fixture()
def searcher(corpus, tiny_model):
    store, mid, _ = corpus
    return Searcher(store, mid, model=tiny_model)


def test_rerank_text_is_concept_spotting():
    rng = np.random.default_rng(1)
    frames = torch.tensor(rng.standard_normal((5, T, 16)), dtype=torch.float32)
    tokens = torch.tensor(rng.standard_normal((77, 16)), dtype=torch.float32)
    cls = torch.tensor(rng.standard_normal(16), dtype=torch.float32)
    got = rerank_text(frames, tokens, cls)
    want = concept_spotting(frames, tokens[None], cls[None])
    np.testing.assert_allclose(got.scores, want.logits[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.saliency, want.saliency[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.saliency.sum(1), 1.0, rtol=1e-5)


def test_rerank_example_maxsim_and_self_is_maximal():
    rng = np.random.default_rng(2)
    frames = rng.standard_normal((6, T, 16)).astype(np.float32)
    got = rerank_example(frames, frames[3])
    assert got.scores.argmax() == 3 and got.scores[3] == pytest.approx(1.0, abs=1e-6)
    n = frames / np.linalg.norm(frames, axis=-1, keepdims=True)
    e = n[3]
    want = np.einsum("wd,ntd->nwt", e, n).max(2).mean(1)
    np.testing.assert_allclose(got.scores, want, rtol=1e-5)
    # an example made of one frame of clip 1 peaks on that frame
    assert rerank_example(frames[1:2], frames[1, 6:7]).peaks()[0] == 6


def test_moment_lands_on_the_frame_the_query_matches(corpus, searcher):
    """A hand-made text feature equal to frame 5 of clip v07/1: that clip comes first, its moment is the
    time of frame 5, every result's relevance is the cosine of its frames with the query, and its moment is
    the frame most similar to the query inside its span (index/search/moments.py)."""
    store, mid, frames = corpus
    rng = np.random.default_rng(3)
    target = frames["v07/1"][5]
    tokens = torch.tensor(target + 0.05 * rng.standard_normal((77, target.shape[0])), dtype=torch.float32)
    q = Query.from_text_features("hand-made", torch.tensor(target), tokens)
    res = searcher.search(q, k=5)
    top = res[0]
    assert top.clip_id == "v07/1"
    assert top.moment_s == pytest.approx(WINDOW_S + WINDOW_S * 5 / T)      # clip 1 starts at 10 s
    assert top.frame_times[int(np.argmax(top.saliency))] == top.moment_s
    assert (top.start_s, top.end_s) == (WINDOW_S, 2 * WINDOW_S) and top.path == "/videos/v07.mp4"
    assert top.labels and top.attributes and top.labels[0][0]
    for r in res:
        f = frames[r.clip_id] / np.linalg.norm(frames[r.clip_id], axis=1, keepdims=True)
        cos = f @ (target / np.linalg.norm(target))
        np.testing.assert_allclose(r.relevance, cos, atol=1e-3)                 # frames stored in half precision
        inside = [i for i, t in enumerate(r.frame_times) if r.moment_start_s <= t <= r.moment_end_s]
        assert r.frame_times[max(inside, key=lambda i: cos[i])] == r.moment_s
    assert [r.rank for r in res] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(res, res[1:]))


def test_results_equal_an_exhaustive_scan(corpus, searcher, tiny_model):
    """With every clip among the candidates, the order is exactly concept spotting over all clips."""
    store, mid, frames = corpus
    res = searcher.search("a person riding a bike", k=10)
    cls, tokens = tiny_model.encode_text(["a person riding a bike"])          # no template
    ids = sorted(frames)
    stored = torch.tensor(np.stack([frames[i] for i in ids]).astype(np.float16).astype(np.float32))
    want = rerank_text(stored, tokens[0], cls[0])
    order = [ids[i] for i in np.argsort(-want.scores)[:10]]
    assert [r.clip_id for r in res] == order
    np.testing.assert_allclose([r.score for r in res], np.sort(want.scores)[::-1][:10], rtol=1e-4)
    assert res.kind == "text" and res.random_init and res.candidates == 24


def test_where_filters_before_ranking(corpus, searcher):
    store, mid, frames = corpus
    top_labels = dict(store.connect().execute(
        "SELECT clip_id, label FROM labels WHERE rank = 0").fetchall())
    label = sorted(top_labels.values())[0]
    want = {c for c, lab in top_labels.items() if lab == label}
    res = searcher.search("anything", k=50, where=f"rank = 0 AND label = '{label.replace(chr(39), chr(39) * 2)}'")
    assert {r.clip_id for r in res} == want
    assert all(r.labels[0][0] == label for r in res)
    res = searcher.search("anything", k=50, where="duration_s > 40 AND clip_index = 1")
    assert {r.clip_id for r in res} == {f"v{v:02d}/1" for v in range(8, 12)}       # durations 45..60 s
    assert searcher.search("anything", where="path LIKE '%nothing%'") == []
    res = searcher.search("anything", k=50, where="list_contains(labels, top_label) AND clip_s = 10")
    assert len(res) == 24


def test_small_stores_rerank_every_clip(searcher):
    res = searcher.search("a dog", k=3, candidates=5)
    assert res.candidates == 24 and any("all 24 clips re-ranked" in n for n in res.notes)


def test_the_index_proposes_candidates_on_larger_stores(corpus, searcher, monkeypatch):
    monkeypatch.setattr(search_mod, "RERANK_ALL_MAX", 0)
    res = searcher.search("a dog", k=1, candidates=5)
    assert res.candidates == 10 and len(res) == 1 and res.notes == []


def test_where_on_a_large_filtered_set_uses_the_index(corpus, searcher, monkeypatch):
    monkeypatch.setattr(search_mod, "EXACT_FILTER_MAX", 0)
    res = searcher.search("anything", k=1, where="clip_index = 0", candidates=5)   # 10 candidates < 12 kept
    assert res.candidates == 10 and res[0].clip_id.endswith("/0")
    assert not any("re-ranked (exact)" in n for n in res.notes)


def test_invalid_where_is_a_clear_error(searcher):
    with pytest.raises(WhereError, match="(?s)nosuch.*columns: clip_id"):
        searcher.search("x", where="nosuch = 1")
    with pytest.raises(WhereError, match="one condition only"):
        searcher.search("x", where="1 = 1); DROP VIEW clips; SELECT (1")


def test_query_by_clip_returns_the_clip_first(searcher):
    res = searcher.search(clip="v04/1", k=5)
    assert res[0].clip_id == "v04/1" and res[0].score == pytest.approx(1.0, abs=1e-3)
    assert res.kind == "clip" and len(res) == 5
    with pytest.raises(SearchError, match="no such clip"):
        searcher.search(clip="nope/0")


def test_query_by_example_video(tmp_path, tiny_model, labels):
    """--like: the video is decoded and embedded with the model; the store's clip of that video comes first."""
    from engine.video import read_video
    from media import make_video
    path = make_video(tmp_path / "ex.mp4", seconds=2, size=(96, 64), pattern="testsrc")
    m = tiny_model
    clip = read_video(path, frames=m.frames, size=m.crop, resize=m.resize)
    feats = m.temporal(m.encode_frames(m.preprocess(clip.frames[:1])))[0].numpy()
    store = Store(tmp_path / "s", create=True)
    rng = np.random.default_rng(4)
    for v in range(5):
        mid = add_video(store, m, labels, f"r{v}", unit_frames(rng, 2, m.embed_dim))
    add_video(store, m, labels, "example", [feats], path=str(path))
    update_index(store, mid)
    res = Searcher(store, model=m).search(like=str(path), k=3)
    assert res[0].clip_id == "example/0" and res[0].score == pytest.approx(1.0, abs=1e-3)
    assert res.kind == "video"


def test_stale_or_missing_index_still_answers_by_exact_scan(tmp_path, tiny_model, labels, monkeypatch):
    monkeypatch.setattr(search_mod, "RERANK_ALL_MAX", 0)        # use the index even on a tiny store
    store = Store(tmp_path / "s", create=True)
    rng = np.random.default_rng(5)
    for v in range(6):                                          # 18 clips > the 10 candidates asked for
        mid = add_video(store, tiny_model, labels, f"a{v}", random_clips(rng, 3, T, tiny_model.embed_dim))
    res = Searcher(store, model=tiny_model).search(clip="a2/1", k=1, candidates=2)
    assert res[0].clip_id == "a2/1" and any("no FAISS index" in n for n in res.notes)
    update_index(store, mid)
    add_video(store, tiny_model, labels, "late", random_clips(rng, 1, T, tiny_model.embed_dim))
    s = Searcher(store, model=tiny_model)
    res = s.search(clip="late/0", k=1, candidates=2)                 # only in the newer batch
    assert res[0].clip_id == "late/0"
    assert any("index is stale: 1 newer batch(es) with 1 clips" in n for n in res.notes)
    update_index(store, mid)
    s.refresh()
    assert s.search(clip="late/0", k=1, candidates=2).notes == []


def test_searcher_loads_the_model_that_tagged_the_store(corpus, tiny_model):
    store, mid, _ = corpus
    s = Searcher(store.root)                        # a path; the model comes from the models row
    assert s.model.meta["weights_sha"] == tiny_model.meta["weights_sha"] and s.model is not tiny_model
    a = s.search("a dog", k=5)
    b = Searcher(store, model=tiny_model).search("a dog", k=5)
    assert [r.clip_id for r in a] == [r.clip_id for r in b]


def test_moved_weights_file_is_a_clear_error(tmp_path, tiny_model, labels):
    store = Store(tmp_path / "s", create=True)
    m = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    m.meta.update(random_init=False, pretrained="/nowhere/weights.pt", weights_sha="abc")
    mid = add_video(store, m, labels, "x", random_clips(np.random.default_rng(0), 1, T, m.embed_dim))
    with pytest.raises(ModelMismatch, match="/nowhere/weights.pt.*--weights PATH"):
        load_store_model(store, mid)


def test_search_command(corpus, capsys):
    store, mid, _ = corpus
    assert bike(["search", "--store", str(store.root), "a dog", "-k", "3"]) == 0
    out = capsys.readouterr()
    assert "RANDOM WEIGHTS" in out.out and "moment" in out.out and "/videos/" in out.out
    assert bike(["search", "--store", str(store.root), "--clip", "v01/0", "-k", "2", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["results"][0]["clip_id"] == "v01/0" and doc["kind"] == "clip" and doc["random_init"] is True
    assert set(doc["results"][0]) >= {"rank", "score", "path", "start_s", "end_s", "moment_s", "labels",
                                      "attributes", "saliency"}
    assert bike(["search", "--store", str(store.root), "x", "--where", "bogus ="]) == 2
    assert "--where" in capsys.readouterr().err
    assert bike(["search", "--store", str(store.root)]) == 2
    assert "give a text QUERY" in capsys.readouterr().err


def test_result_labels_and_attributes_are_dataclasses(searcher):
    """Search results carry dataclasses (ClipLabel, AttributeScore) that still unpack as (name, score) pairs."""
    import bike
    hit = searcher.search("a red square", k=1)[0]
    assert hit.labels and all(isinstance(x, bike.ClipLabel) for x in hit.labels)
    assert hit.attributes and all(isinstance(x, bike.AttributeScore) for x in hit.attributes)
    label, score = hit.labels[0]
    assert (label, score) == (hit.labels[0].label, hit.labels[0].score)
    assert hit.to_dict()["labels"][0] == {"label": label, "score": score}
