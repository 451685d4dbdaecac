"""``bike serve`` against the browser's threats: requests another site's page makes the browser send
(Origin / Sec-Fetch-Site / the X-Bike header, on a real uvicorn server), tokens too short to hold, and
guessing the token through the login form (throttled per client)."""
from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

import engine
from index.search.search import Searcher
from jobs.serve.app import create_app
from jobs.serve.security import MIN_TOKEN_CHARS, LoginThrottle
from jobs.serve.service import Service
from liveserver import serving
from servestore import make_store

TOKEN = "a-token-long-enough-42"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model):
    return make_store(tmp_path_factory.mktemp("web"), tiny_model, engine.load_labels("ucf101"))


@pytest.fixture(scope="module")
def service(corpus, tiny_model):
    store, mid, _ = corpus
    return Service(store, searcher=Searcher(store, mid, model=tiny_model))


@pytest.fixture(scope="module")
def base(service):
    with serving(create_app(service)) as url:
        yield url


# ---- cross-site requests ----------------------------------------------------------------------------------
def test_cross_site_requests_are_refused(base, corpus):
    _, _, paths = corpus
    vid, path = next(iter(paths.items()))
    video = path.read_bytes()
    evil = {"Origin": "http://evil.example"}
    with httpx.Client(base_url=base, timeout=60) as c:
        for headers in (evil, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": base.replace("127.0.0.1", "localhost")},           # another origin, same machine
                        {"Origin": base.rsplit(":", 1)[0] + ":1"},                    # another port
                        {"Origin": base, "Sec-Fetch-Site": "cross-site"}):
            for method, url, body in (("GET", "/api/sql?q=SELECT+1", None), ("GET", "/api/stats", None),
                                      ("GET", f"/api/clips/{vid}/0/thumb.jpg", None),
                                      ("GET", f"/api/videos/{vid}/media", None),
                                      ("POST", "/api/search?k=2", video)):
                r = c.request(method, url, content=body, headers={**headers, "Content-Type": "text/plain"})
                assert r.status_code == 403, (headers, url, r.status_code)
                assert set(r.json()) == {"error", "status"} and "cross-site" in r.json()["error"], r.text
        # a "simple" cross-origin POST from a page whose browser sends no Origin (old browsers, some
        # redirects): no X-Bike header, refused too
        r = c.post("/api/search?k=2", content=video, headers={"Content-Type": "text/plain"})
        assert r.status_code == 403 and "X-Bike: 1" in r.json()["error"]


def test_same_origin_and_non_browser_clients_are_served(base, corpus):
    _, _, paths = corpus
    vid, path = next(iter(paths.items()))
    video = path.read_bytes()
    with httpx.Client(base_url=base, timeout=60) as c:
        page = {"Origin": base, "Sec-Fetch-Site": "same-origin"}           # what the page's fetch() sends
        assert c.get("/api/stats", headers=page).status_code == 200
        assert c.post("/api/search?k=2", content=video, headers=page).status_code == 200     # Origin suffices
        assert c.post("/api/search?k=2", content=video, headers={"X-Bike": "1"}).status_code == 200   # curl + header
        assert c.get(f"/api/clips/{vid}/0/thumb.jpg", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert c.get("/api/stats", headers={"Sec-Fetch-Site": "none"}).status_code == 200     # typed into the bar
        assert c.get("/api/search", params={"q": "a dog", "k": 2}).status_code == 200         # curl-like GET
        assert c.get(f"/api/videos/{vid}/media", headers={"Range": "bytes=0-9"}).status_code == 206
        # a link from another site still opens the page (it shows nothing until its own same-origin calls)
        assert c.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


# ---- tokens and the login form ------------------------------------------------------------------------------
def test_short_tokens_are_refused_with_one_line(tmp_path, capsys):
    from jobs.cli import main
    assert main(["serve", "--store", str(tmp_path), "--token", "k7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bike: error: --token: the token is too short (2 characters; at "
                                               f"least {MIN_TOKEN_CHARS})"), err
    (tmp_path / "tok").write_text("x" * (MIN_TOKEN_CHARS - 1) + "\n")
    assert main(["serve", "--store", str(tmp_path), "--token-file", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bike: error: {tmp_path / 'tok'}: the token is too short"), err
    # long enough: the token passes, and the next problem is the (missing) store
    assert main(["serve", "--store", str(tmp_path / "nostore"), "--token", "x" * MIN_TOKEN_CHARS]) == 2
    assert "no such store" in capsys.readouterr().err


def test_failed_logins_are_throttled_per_client(service):
    now = [1000.0]
    throttle = LoginThrottle(tries=3, base_s=10.0, max_s=40.0, window_s=600.0, clock=lambda: now[0])
    app = create_app(service, token=TOKEN, throttle=throttle)
    c = TestClient(app, base_url="http://127.0.0.1", client=("192.0.2.1", 5000), follow_redirects=False)
    other = TestClient(app, base_url="http://127.0.0.1", client=("192.0.2.2", 5000), follow_redirects=False)

    def login(client, token):
        return client.post("/login", data={"token": token})
    assert [login(c, "wrong").status_code for _ in range(3)] == [401, 401, 401]   # the 3rd locks for 10 s
    locked = login(c, TOKEN)                                     # even the right token: no guess counts now
    assert locked.status_code == 429 and locked.headers["retry-after"] == "10" and "Too many" in locked.text
    assert login(other, TOKEN).status_code == 303                # another client is not affected
    now[0] += 10.5
    assert login(c, "wrong").status_code == 401                  # 4th failure: 20 s
    now[0] += 10
    assert login(c, TOKEN).status_code == 429
    now[0] += 10.5
    assert login(c, "wrong").status_code == 401                  # 5th failure: 40 s, the ceiling
    now[0] += 30
    assert login(c, "wrong").status_code == 429
    now[0] += 10.5
    ok = login(c, TOKEN)
    assert ok.status_code == 303 and "bike_session" in ok.headers["set-cookie"]
    assert login(c, "wrong").status_code == 401 and login(c, "wrong").status_code == 401   # a success cleared it
    now[0] += 601                                                 # and failures are forgotten after the window
    assert [login(c, "wrong").status_code for _ in range(3)] == [401, 401, 401]


def test_concurrent_guesses_cannot_outrun_the_throttle(service):
    """40 wrong logins at once from one client on a real server, their bodies sent slowly: only the first 5 are
    tried (a lock-out long enough that no waiting ends during the test, however slow the machine)."""
    import concurrent.futures as cf
    import time
    with serving(create_app(service, token=TOKEN, throttle=LoginThrottle(tries=5, base_s=600))) as base:
        def guess(i):
            def slow_body():                         # every guess is in flight before any body arrives
                time.sleep(1.0)
                yield f"token=guess-{i:04d}-padding".encode()
            with httpx.Client(base_url=base, timeout=60) as c:
                return c.post("/login", content=slow_body(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code
        with cf.ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(guess, range(40)))
        assert sorted(codes) == [401] * 5 + [429] * 35, codes


def test_login_throttle_remembers_a_bounded_number_of_clients():
    t = LoginThrottle(tries=1, max_clients=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t._clients) == 100 and t.wait_s("10.0.3.231") > 0 and t.wait_s("10.0.0.0") == 0


# ---- a store with nothing to search yet ---------------------------------------------------------------------
def _failed_store(root, model, labels):
    """A store as `bike tag` leaves it when every file failed: the models row, and error rows of videos."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from index.store.schema import TABLES
    from index.store import Store
    from searchstore import model_id_of, models_row
    store = Store(root, create=True)
    mid = model_id_of(model, labels)
    rows = [{"video_id": f"path:{i:04d}", "model_id": mid, "path": f"/archive/broken{i}.mp4", "size": 10,
             "status": "error", "error": "not a video (no decodable stream)", "num_clips": 0,
             "tagged_at": datetime.now(timezone.utc)} for i in range(2)]
    videos = pa.Table.from_pylist(rows, schema=TABLES["videos"])
    store.write_batch({"models": models_row(model, labels), "videos": videos}, mid,
                      {r["video_id"]: "error" for r in rows})
    return store, mid


def test_a_store_where_every_file_failed_is_served_with_its_error_report(tmp_path, tiny_model):
    labels = engine.load_labels("ucf101")
    store, mid = _failed_store(tmp_path / "store", tiny_model, labels)
    svc = Service(store, refresh_s=0.0)
    assert svc.searcher is None and svc.model_id == mid
    with serving(create_app(svc)) as base, httpx.Client(base_url=base, timeout=60) as c:
        stats = c.get("/api/stats").json()
        assert (stats["videos"], stats["clips"], stats["errors"], stats["searchable"]) == (2, 0, 2, False), stats
        assert [e["path"] for e in stats["error_report"]] == ["/archive/broken0.mp4", "/archive/broken1.mp4"]
        assert "nothing searchable yet" in stats["unsearchable"] and "2 video(s) failed" in stats["unsearchable"]
        assert stats["model"].startswith("bike-tiny") and stats["random_init"] is True
        for params in ({"q": "a dog"}, {"clip": "path:0000/0"}, {"q": "x", "where": "clip_index = 0"}):
            r = c.get("/api/search", params=params)
            assert r.status_code == 409 and "nothing searchable yet" in r.json()["error"], r.text
        r = c.post("/api/search", content=b"\0" * 100, headers={"X-Bike": "1"})
        assert r.status_code == 409 and "nothing searchable yet" in r.json()["error"]
        assert c.get("/api/videos/path:0000").json()["status"] == "error"
        assert c.get("/api/clips/path:0000/0").status_code == 404
        assert c.get("/api/sql", params={"q": "SELECT count(*) FROM videos WHERE status = 'error'"}).json()["rows"] == [[2]]
        assert c.get("/api/health").json()["ok"] is True and "search-form" in c.get("/").text
        # a batch with embeddings committed while serving: searchable without a restart
        import numpy as np

        from searchstore import add_video
        rng = np.random.default_rng(1)
        add_video(type(store)(store.root), tiny_model, labels, "goodvideo01",
                  [np.asarray(rng.standard_normal((8, tiny_model.embed_dim)), np.float32)])
        r = c.get("/api/search", params={"q": "a dog", "k": 3})
        assert r.status_code == 200 and [x["clip_id"] for x in r.json()["results"]] == ["goodvideo01/0"], r.text
        assert c.get("/api/stats").json()["searchable"] is True


def test_bike_serve_starts_on_an_empty_store(tmp_path):
    """The command itself (real uvicorn in a subprocess): a store with no batch at all starts and says why
    nothing can be searched, in its log and in the API."""
    from index.store import Store
    from liveserver import start_bike_serve, stop_bike_serve
    Store(tmp_path / "store", create=True)
    proc, base = start_bike_serve(tmp_path / "store", timeout_s=120)
    try:
        stats = httpx.get(base + "/api/stats", timeout=30).json()
        assert (stats["videos"], stats["clips"], stats["searchable"], stats["model_id"]) == (0, 0, False, None)
        r = httpx.get(base + "/api/search", params={"q": "a dog"}, timeout=30)
        assert r.status_code == 409 and "no tagged batch" in r.json()["error"]
    finally:
        stop_bike_serve(proc)
    err = proc.stderr.read()
    assert "nothing searchable yet" in err and "Traceback" not in err, err
