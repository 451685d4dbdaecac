"""What the page of ``bike serve`` needs from the API: paging (``offset``, ``has_more``), one result per video
(``group=video`` with ``more``), a bad filter said in plain words, notes without CLI options. The page itself,
in Chromium: tests/test_serve_browser.py and tests/test_serve_page_browser.py."""
from __future__ import annotations

import pytest

import engine
from index.search.search import Searcher
from jobs.serve.app import create_app
from jobs.serve.service import Service, group_by_video
from jobs.serve.wording import filter_error, page_notes
from pagestore import make_page_store

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model):
    return make_page_store(tmp_path_factory.mktemp("page"), tiny_model, engine.load_labels("ucf101"))


@pytest.fixture(scope="module")
def client(corpus, tiny_model):
    from fastapi.testclient import TestClient
    store, mid, _ = corpus
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model))
    return TestClient(create_app(service), base_url=BASE, headers={"X-Bike": "1"})


def ids(answer):
    return [r["clip_id"] for r in answer["results"]]


def test_offset_pages_continue_the_same_ranking_past_100(client):
    whole = client.get("/api/search", params={"q": "a car", "k": 100, "offset": 20}).json()
    first = client.get("/api/search", params={"q": "a car", "k": 20}).json()
    assert first["has_more"] and first["offset"] == 0
    pages, offset = [], 0
    while True:                                       # the page's infinite scroll, 40 at a time
        got = client.get("/api/search", params={"q": "a car", "k": 40, "offset": offset}).json()
        pages += ids(got)
        offset += 40
        if not got["has_more"]:
            break
    assert len(pages) == 120 == len(set(pages))       # every clip once, past 100
    assert pages[:20] == ids(first) and pages[20:120] == ids(whole)
    assert [r["rank"] for r in whole["results"]] == list(range(21, 121))


@pytest.mark.parametrize("params", [{"offset": -1}, {"offset": 1000}, {"offset": 950, "k": 60},
                                    {"group": "folder"}])
def test_paging_and_grouping_bounds_are_400(client, params):
    r = client.get("/api/search", params={"q": "x", **params})
    assert r.status_code == 400 and set(r.json()) == {"error", "status"}, r.text
    assert next(iter(params)) in r.json()["error"]


def test_group_by_video_gives_one_result_per_video_with_its_other_moments(client, corpus):
    flat = [r for offset in (0, 100) for r in client.get("/api/search", params={
        "q": "a dog", "k": 100 - offset // 5 * 4, "group": "clip", "offset": offset}).json()["results"]]
    assert len(flat) == 120
    got = client.get("/api/search", params={"q": "a dog", "k": 4, "group": "video"}).json()
    rest = client.get("/api/search", params={"q": "a dog", "k": 4, "group": "video", "offset": 4}).json()
    videos = [r["video_id"] for r in got["results"] + rest["results"]]
    assert len(videos) == len(set(videos)) == len(corpus[2]) == 6      # every video once, across pages
    assert got["has_more"] and not rest["has_more"]
    best = {}
    for r in flat:                                    # each video's best clip, in the order of the flat ranking
        best.setdefault(r["video_id"], r)
    assert [r["clip_id"] for r in got["results"] + rest["results"]] == [r["clip_id"] for r in best.values()]
    top = got["results"][0]
    others = [r["clip_id"] for r in flat if r["video_id"] == top["video_id"] and r["clip_id"] != top["clip_id"]]
    assert [m["clip_id"] for m in top["more"]] == others and top["more_count"] == len(others) == 19
    assert all({"moment_start_s", "moment_end_s", "saliency"} <= set(m) for m in top["more"])


@pytest.mark.parametrize("params", [{"k": 2}, {"k": 2, "offset": 3}, {"k": 3, "min_score": -1e9},
                                    {"k": 2, "offset": 2, "min_score": 0.05}, {"k": 4, "positive": 1}])
def test_a_page_of_videos_is_what_grouping_every_result_gives(corpus, tiny_model, params, monkeypatch):
    """group=video builds results only for the clips of the page's videos (VideoPage): the answer is the one
    that grouping every ranked clip gives (ranks, moments, more, more_count, has_more, notes)."""
    from jobs.serve import service as S
    store, mid, _ = corpus
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model))
    q = {"q": "a dog", "group": "video", **params}
    if "positive" in q:                            # relevance feedback: the first clip of a plain search
        q["positive"] = service.search(q="a dog", k=1)["results"][0]["clip_id"]
    paged = service.search(**q)

    class Everything(S.VideoPage):                 # every clip made into a result, grouped after (as before)
        def __call__(self, top):
            super().__call__(top)
            self.used = False
            return list(range(len(top)))
    monkeypatch.setattr(S, "VideoPage", Everything)
    whole = service.search(**q)
    for a in (paged, whole):
        a.pop("seconds")
    assert paged["results"] and paged == whole


def test_group_by_video_caps_the_listed_moments():
    rows = [{"video_id": "v", "clip_id": f"v/{i}"} for i in range(10)] + [{"video_id": "w", "clip_id": "w/0"}]
    groups = group_by_video(rows, 3)
    assert [g["clip_id"] for g in groups] == ["v/0", "w/0"]
    assert [m["clip_id"] for m in groups[0]["more"]] == ["v/1", "v/2", "v/3"] and groups[0]["more_count"] == 9


def test_a_bad_filter_is_said_in_plain_words(client):
    r = client.get("/api/search", params={"q": "x", "where": "foo > 1"})
    msg = r.json()["error"]
    assert r.status_code == 400 and msg.startswith("the filter names a column that does not exist: "
                                                   "no column named 'foo'; columns are clip_id, video_id")
    assert "Binder" not in msg and "--where" not in msg and "DuckDB" not in msg and "\n" not in msg
    r = client.get("/api/search", params={"q": "x", "where": "duration_s >"})
    msg = r.json()["error"]
    assert r.status_code == 400 and msg.startswith("the filter cannot be used: ") and "columns are" in msg
    assert "Parser Error" not in msg and "--where" not in msg and "\n" not in msg


def test_page_notes_carry_no_cli_words(client):
    got = client.get("/api/search", params={"q": "x", "where": "clip_index < 3", "min_score": -1e9}).json()
    assert any(n.startswith("--where kept") for n in got["notes"])          # the CLI's notes stay in the API
    assert "the filters match 18 clips" in got["page_notes"]
    assert not any("--" in n or "`" in n or "bike " in n for n in got["page_notes"]), got["page_notes"]
    assert page_notes(["no FAISS index for model m: exact scan over 5 clips (build one with `bike index --store s`)",
                       "index is stale: 1 newer batch(es) with 7 clips are not in it and were scanned exactly "
                       "(update it with `bike index --store s`)", "all 5 clips re-ranked (exact; the index is "
                       "used above 2000 clips)", "min_score 0.5 removed 1 result(s)", "something new (see "
                       "`bike doctor`)"]) == [
        "every clip was compared (no search index built yet)",
        "7 newly tagged clips compared one by one (the search index does not cover them yet)",
        "the minimum score 0.5 removed 1 result", "something new"]
    assert filter_error("--where: empty condition") == "the filter is empty"
