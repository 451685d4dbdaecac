"""``bike serve`` and ``bike search --where`` over a store on object storage (moto's S3 server,
tests/s3server.py): every route of the server answers on a real uvicorn server, from its request threads.
On object storage the store's views read registered Arrow datasets, which DuckDB keeps per connection: every
thread's cursor must see them too (index.store.core.cursor)."""
from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout

import httpx
import pytest

import engine
from index.search.search import Searcher
from jobs.serve.app import create_app
from jobs.serve.service import Service
from liveserver import serving
from s3server import moto_s3
from servestore import make_store

BUCKET = "bike-serve"


@pytest.fixture(scope="module")
def s3():
    with moto_s3(BUCKET) as srv:
        yield srv


@pytest.fixture(scope="module")
def corpus(s3, tmp_path_factory, tiny_model):
    url = f"s3://{BUCKET}/serve-{time.time_ns() % 10**9}/"
    return make_store(tmp_path_factory.mktemp("serve-s3"), tiny_model, engine.load_labels("ucf101"), store=url)


@pytest.fixture(scope="module")
def base(corpus, tiny_model):
    store, mid, _ = corpus
    assert store.remote
    with serving(create_app(Service(store, searcher=Searcher(store, mid, model=tiny_model)))) as url:
        yield url


def test_every_route_answers_on_an_s3_store(base, corpus):
    _, _, paths = corpus
    vid, path = next(iter(paths.items()))
    with httpx.Client(base_url=base, timeout=60) as c:
        def ok(url, **kw):
            r = c.get(url, **kw)
            assert r.status_code in (200, 206), (url, r.status_code, r.text[:300])
            return r
        assert ok("/api/health").json()["ok"] is True
        stats = ok("/api/stats").json()
        assert (stats["videos"], stats["clips"], stats["errors"]) == (3, 5, 0) and stats["labels"]
        res = ok("/api/search", params={"q": "a person walking", "k": 3}).json()["results"]
        assert len(res) == 3
        label = res[0]["labels"][0]["label"]
        only = ok("/api/search", params={"q": "x", "k": 5, "label": label}).json()["results"]
        assert only and all(label in [x["label"] for x in r["labels"]] for r in only)
        where = ok("/api/search", params={"q": "x", "k": 5, "where": "clip_index = 1"}).json()["results"]
        assert where and all(r["clip_id"].endswith("/1") for r in where)
        assert ok("/api/search", params={"clip": f"{vid}/1", "k": 2}).json()["results"][0]["clip_id"] == f"{vid}/1"
        up = c.post("/api/search", params={"k": 2, "where": "clip_index = 0"}, content=path.read_bytes(),
                    headers={"X-Bike": "1"})
        assert up.status_code == 200 and all(r["clip_id"].endswith("/0") for r in up.json()["results"]), up.text
        video = ok(f"/api/videos/{vid}").json()
        assert [x["clip_index"] for x in video["clips"]] == [0, 1] and all(x["labels"] for x in video["clips"])
        clip = ok(f"/api/clips/{vid}/1").json()
        assert clip["start_s"] == 10.0 and clip["path"] == str(path) and clip["labels"]
        thumb = ok(f"/api/clips/{vid}/1/thumb.jpg", params={"t": 12.5})
        assert thumb.content[:2] == b"\xff\xd8"
        part = ok(f"/api/videos/{vid}/media", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == path.read_bytes()[:100]
        sql = ok("/api/sql", params={"q": "SELECT count(*) FROM clips"}).json()
        assert sql["rows"] == [[5]]
        assert "search-form" in ok("/").text


def test_bike_search_where_on_an_s3_store(corpus, capsys):
    store, _, _ = corpus
    from jobs.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["search", "--store", str(store.root), "x", "-k", "5", "--where", "clip_index = 1",
                     "--format", "json"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    hits = json.loads(out.getvalue())["results"]
    assert hits and all(h["clip_id"].endswith("/1") for h in hits)
