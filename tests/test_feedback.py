"""Relevance feedback (index/search/feedback.py: positive=/negative= clips in search, CLI and API) and tags from examples
(index/search/usertags.py, `bike label`), on a store of hand-made frame features in four visual "kinds" (clusters)."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

import engine
from index.search import search as search_mod
from index.search.search import Searcher, SearchError
from index.store import Store
from index.search.vectors import update_index
from jobs.cli import main as bike
from searchstore import add_video

T = 8
KINDS = 4
VIDEOS_PER_KIND = 5          # 2 clips each: 10 clips per kind, 40 in all


def kind_of(clip_id: str) -> int:
    return int(clip_id[1])                   # video ids are k<kind><n>


def kind_clips(rng, centre: np.ndarray, n: int) -> "list[np.ndarray]":
    d = centre.shape[0]
    return [np.asarray(centre + 0.8 * rng.standard_normal((T, d)) / np.sqrt(d) * 3, np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


@pytest.fixture(scope="module")
def centres(tiny_model):
    rng = np.random.default_rng(7)
    c = rng.standard_normal((KINDS, tiny_model.embed_dim))
    return c / np.linalg.norm(c, axis=1, keepdims=True) * 3


def build(root, tiny_model, labels, centres, seed=0):
    store = Store(root, create=True)
    rng = np.random.default_rng(seed)
    mid = None
    for k in range(KINDS):
        for v in range(VIDEOS_PER_KIND):
            mid = add_video(store, tiny_model, labels, f"k{k}{v}", kind_clips(rng, centres[k], 2))
    update_index(store, mid)
    return store, mid


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model, labels, centres):
    return build(tmp_path_factory.mktemp("feedback") / "store", tiny_model, labels, centres)


@pytest.fixture()
def searcher(corpus, tiny_model):
    store, mid = corpus
    return Searcher(store, mid, model=tiny_model)


def kinds(results) -> "list[int]":
    return [kind_of(r.clip_id) for r in results]


def test_positives_pull_their_kind_up_and_negatives_push_theirs_down(searcher):
    plain = searcher.search("a person riding a horse", k=10)
    fb = searcher.search("a person riding a horse", k=10, positive="k20/0,k21/1", negative="k10/0")
    assert kinds(fb).count(2) == 10, kinds(fb)                   # all ten clips of kind 2, the examples included
    assert kinds(plain).count(2) < 10
    assert all(r.feedback_score is not None and r.query_score is not None for r in fb)
    assert plain[0].feedback_score is None
    everything = searcher.search("a person riding a horse", k=40, negative="k10/0,k11/1")
    assert set(kinds(everything[-10:])) == {1}, kinds(everything)    # the negatives' kind sinks to the bottom
    assert fb.to_dict()["positives"] == ["k20/0", "k21/1"] and fb.to_dict()["negatives"] == ["k10/0"]


def test_examples_alone_and_the_rocchio_candidates(searcher, monkeypatch):
    res = searcher.search(positive=["k30/0", "k31/0"], k=5)
    assert res.kind == "examples" and set(kinds(res)) == {3}
    # above RERANK_ALL_MAX the index gives candidates: the examples' own neighbours must be among them even
    # when the query's candidates hold none of their kind
    monkeypatch.setattr(search_mod, "RERANK_ALL_MAX", 0)
    q = searcher.clip_query("k00/0")
    res = searcher.search(q, k=1, candidates=1, positive="k30/0,k31/1")   # 10 candidates per search
    assert set(kinds(searcher.search(q, k=10, candidates=1))) == {0}
    assert kind_of(res[0].clip_id) == 0 or kind_of(res[0].clip_id) == 3
    res = searcher.search(q, k=10, candidates=1, positive="k30/0,k31/1,k32/0")
    assert kinds(res).count(3) >= 8, kinds(res)


def test_bad_feedback_ids_are_one_clear_error(searcher, corpus, capsys):
    with pytest.raises(SearchError, match="positive clip 'nope/0': no such clip"):
        searcher.search("x", positive="nope/0")
    with pytest.raises(SearchError, match="both positive and negative"):
        searcher.search("x", positive="k00/0", negative="k00/0")
    store, _ = corpus
    assert bike(["search", "--store", str(store.root), "x", "--negative", "k00/9"]) == 2
    err = capsys.readouterr().err
    assert "bike: error:" in err and "negative clip 'k00/9'" in err and "Traceback" not in err


def test_cli_search_with_feedback(corpus, capsys):
    store, _ = corpus
    assert bike(["search", "--store", str(store.root), "--positive", "k10/0", "--positive", "k11/0,k12/1",
                 "-k", "5", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "examples" and {kind_of(r["clip_id"]) for r in out["results"]} == {1}


def sql_rows(store, query, capsys):
    capsys.readouterr()
    assert bike(["sql", "--store", str(store.root), query, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bike_label_rows_in_sql_with_lineage_and_refresh(tmp_path, tiny_model, labels, centres, capsys):
    store, mid = build(tmp_path / "store", tiny_model, labels, centres, seed=1)
    assert bike(["label", "kind two", "--store", str(store.root), "--positive", "k20/0,k21/1,k22/0",
                 "--negative", "k30/0", "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)[0]
    assert rep["clips"] == 40 and rep["model_id"] == mid
    rows = sql_rows(store, "SELECT clip_id, rank, tagged, example, positives, negatives, query, model_id, "
                           "created_at, scored_at, clips FROM user_labels WHERE label = 'kind two' ORDER BY rank",
                    capsys)
    assert len(rows) == 40
    top = [kind_of(r["clip_id"]) for r in rows[:10]]
    assert top == [2] * 10, top                                     # precision@10 = 1 on clean clusters
    tagged = {r["clip_id"] for r in rows if r["tagged"]}
    assert {kind_of(c) for c in tagged} == {2} and len(tagged) >= 8
    r0 = rows[0]
    assert r0["positives"] == ["k20/0", "k21/1", "k22/0"] and r0["negatives"] == ["k30/0"]
    assert r0["query"] is None and r0["model_id"] == mid and r0["clips"] == 40 and r0["created_at"]
    assert {r["clip_id"]: r["example"] for r in rows if r["example"]} == {
        "k20/0": "positive", "k21/1": "positive", "k22/0": "positive", "k30/0": "negative"}
    # a new batch: --refresh scores its clips with the stored definition, created_at kept
    add_video(store, tiny_model, labels, "k29", kind_clips(np.random.default_rng(5), centres[2], 2))
    add_video(store, tiny_model, labels, "k09", kind_clips(np.random.default_rng(6), centres[0], 2))
    assert bike(["label", "--refresh", "--store", str(store.root)]) == 0
    again = sql_rows(store, "SELECT clip_id, tagged, created_at, scored_at, clips FROM user_labels "
                            "WHERE label = 'kind two'", capsys)
    by = {r["clip_id"]: r for r in again}
    assert len(again) == 44 and by["k29/0"]["tagged"] and by["k29/1"]["tagged"] and not by["k09/0"]["tagged"]
    assert again[0]["created_at"] == r0["created_at"] and again[0]["scored_at"] > r0["scored_at"]
    assert {r["clips"] for r in again} == {44}


def test_bike_label_with_a_query_and_errors(corpus, capsys):
    store, _ = corpus
    assert bike(["label", "kind one", "--store", str(store.root), "--positive", "k10/0,k11/0",
                 "--query", "a dog", "--format", "json"]) == 0
    rows = sql_rows(store, "SELECT clip_id, query, query_score FROM user_labels WHERE label = 'kind one' "
                           "ORDER BY rank LIMIT 10", capsys)
    assert rows[0]["query"] == "a dog" and all(r["query_score"] is not None for r in rows)
    assert sum(kind_of(r["clip_id"]) == 1 for r in rows) >= 8
    capsys.readouterr()
    assert bike(["label", "x", "--store", str(store.root), "--positive", "zz/1"]) == 2
    err = capsys.readouterr().err
    assert "bike: error:" in err and "positive clip 'zz/1'" in err and "Traceback" not in err
    assert bike(["label", "x", "--store", str(store.root)]) == 2
    assert "at least one --positive" in capsys.readouterr().err


def test_api_feedback_on_a_real_server(corpus, searcher):
    from jobs.serve.app import create_app
    from jobs.serve.service import Service
    from liveserver import serving
    with serving(create_app(Service(corpus[0], searcher=searcher))) as base:
        r = httpx.get(base + "/api/search", params={"q": "a cat", "k": 5, "positive": "k20/0,k21/0",
                                                     "negative": "k10/1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert {kind_of(x["clip_id"]) for x in body["results"]} == {2}
        assert body["positives"] == ["k20/0", "k21/0"] and body["results"][0]["feedback_score"] is not None
        r = httpx.get(base + "/api/search", params={"positive": "k30/0", "k": 3})
        assert r.status_code == 200 and {kind_of(x["clip_id"]) for x in r.json()["results"]} == {3}
        for params, text in (({"q": "a", "positive": "k99/0"}, "positive clip 'k99/0': no such clip"),
                             ({"q": "a", "negative": "../etc"}, "not a clip id"),
                             ({"negative": "k00/0"}, "give exactly one of")):
            r = httpx.get(base + "/api/search", params=params)
            assert r.status_code == 400 and text in r.json()["error"], r.text
