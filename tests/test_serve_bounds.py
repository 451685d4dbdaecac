"""``bike serve`` under load and abuse: FFmpeg's log state, the bounded decode pool (cold thumbnails from many
clients, 503 + Retry-After), SIGTERM, the thumbnail cache bound, half-sent requests (slowloris), and media
served only from the file whose bytes were tagged (symlink swaps, forged rows). Real uvicorn servers on
loopback ports (the ``bike serve`` command), real ffmpeg-made videos with damaged packets."""
from __future__ import annotations

import concurrent.futures as cf
import os
import random
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import engine
from index.store.ids import video_id as content_id
from index.search.search import Searcher
from index.store import Store
from jobs.serve import media
from liveserver import start_bike_serve
from jobs.serve.app import create_app
from jobs.serve.limits import Limits
from jobs.serve.service import Service
from media import make_video
from searchstore import add_video
from servestore import make_store

ROOT = Path(__file__).resolve().parents[1]
BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


def damage(path: Path, flips: int = 300, seed: int = 1) -> Path:
    """Flip bytes inside the media data (not the header or the moov box at the end): the decoder then logs
    errors from its threads ("error while decoding MB"), which is what deadlocked the server."""
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for _ in range(flips):
        i = rng.randrange(len(data) // 10, len(data) * 7 // 10)
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def damaged_store(root: Path, model, labels):
    """Three 20-s videos with damaged packets, tagged under the content ids of their damaged bytes."""
    (root / "videos").mkdir(parents=True)
    store = Store(root / "store", create=True)
    rng = np.random.default_rng(0)
    paths = {}
    for name, size in (("a.mp4", (160, 96)), ("b.mp4", (176, 96)), ("c.mp4", (192, 112))):
        path = damage(make_video(root / "videos" / name, seconds=20, fps=10, size=size, pattern="testsrc"))
        vid = content_id(str(path))
        clips = [np.asarray(rng.standard_normal((8, model.embed_dim)), np.float32) for _ in range(2)]
        add_video(store, model, labels, vid, clips, path=str(path), duration_s=20.0, size=path.stat().st_size)
        paths[vid] = path
    return store, paths


def start_server(store_root: Path, cache: Path, *extra) -> "tuple[subprocess.Popen, str]":
    """``bike serve`` (tests/liveserver.py) with its thumbnails in ``cache``."""
    return start_bike_serve(store_root, *extra, env={"BIKE_CACHE_DIR": str(cache)})


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class HealthWatch:
    """Asks /api/health every 0.2 s from its own thread; ``worst`` is the slowest answer (inf: none came)."""

    def __init__(self, base: str):
        self.base, self.worst, self.count = base, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(base_url=self.base, timeout=10) as c:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    ok = c.get("/api/health").status_code == 200
                except httpx.TransportError:
                    ok = False
                self.worst = max(self.worst, time.monotonic() - t if ok else float("inf"))
                self.count += 1
                self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)


# ---- FFmpeg's process-wide log state -------------------------------------------------------------------
def test_decoding_never_installs_pyav_python_log_callback(tmp_path):
    """PyAV's Python log callback (set by ``av.logging.set_level``) makes FFmpeg's frame threads take the GIL;
    per-call toggling of it deadlocked ``bike serve``. Decoding damaged frames and failing to open a file
    must leave it uninstalled (PyAV counts errors only through that callback), and the open error must
    still say why."""
    import av.logging

    from engine.video import VideoError, read_frame_at, read_frames
    video = damage(make_video(tmp_path / "d.mp4", seconds=4, fps=10, size=(160, 96), pattern="testsrc"), 80)
    whole = make_video(tmp_path / "w.mp4", seconds=2, fps=10, size=(64, 48))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])          # no moov box
    before = av.logging.get_last_error()[0]
    with pytest.raises(VideoError) as err:
        read_frames(cut, [0], 32, 32)
    assert "moov atom not found" in err.value.reason
    read_frames(video, list(range(0, 40, 3)), 64, 64, threads=4)
    read_frame_at(video, 2.5, 64)
    assert av.logging.get_level() is None
    assert av.logging.get_last_error()[0] == before


# ---- the decode pool ---------------------------------------------------------------------------------------
def test_decode_pool_bounds_coalesces_and_times_out():
    from jobs.serve.decoding import Busy, DecodePool
    pool = DecodePool(workers=1, queue_size=1)
    gate, calls = threading.Event(), []
    blocker = pool.submit(gate.wait, 30)
    shared = [pool.submit(lambda: calls.append(1) or "jpeg", key="thumb-1") for _ in range(5)]
    assert len({id(f) for f in shared}) == 1                        # one job for five requests
    with pytest.raises(Busy) as full:                               # 1 running + 1 waiting: full
        pool.submit(lambda: None)
    assert full.value.retry_after_s >= 1
    t = time.monotonic()
    with pytest.raises(Busy):                                       # waits at most its timeout
        pool.call(lambda: None, timeout_s=0.3, key="thumb-1")
    assert time.monotonic() - t < 2
    gate.set()
    assert blocker.result(5) is True and shared[0].result(5) == "jpeg" and calls == [1]
    pool.close()


def test_thumbnails_and_uploads_share_the_pool_and_get_503_when_it_is_full(tmp_path, tiny_model, labels):
    store, mid, paths = make_store(tmp_path, tiny_model, labels)
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model),
                      limits=Limits(decode_workers=1, decode_queue=0))
    from fastapi.testclient import TestClient
    c = TestClient(create_app(service), base_url=BASE, headers={"X-Bike": "1"})     # a POST from our own page
    vid, path = next(iter(paths.items()))
    gate = threading.Event()
    service.decoding.submit(gate.wait, 30)                          # the one worker is busy
    try:
        r = c.get(f"/api/clips/{vid}/0/thumb.jpg", params={"t": 4.2})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
        r = c.post("/api/search", params={"k": 2}, content=path.read_bytes())
        assert r.status_code == 503 and r.headers["retry-after"]
        assert c.get("/api/health").status_code == 200
    finally:
        gate.set()
    time.sleep(0.2)
    assert c.get(f"/api/clips/{vid}/0/thumb.jpg", params={"t": 4.2}).status_code == 200


# ---- thumbnails: the cache bound -------------------------------------------------------------------------
def test_thumbnail_cache_evicts_least_recently_used(tmp_path):
    cache = media.ThumbCache(tmp_path / "thumbs", max_bytes=3000)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        cache.put(name, b"x" * 1000)
    assert cache.get("a.jpg") is not None                           # a is now the most recent
    cache.put("d.jpg", b"x" * 1000)
    assert sorted(p.name for p in (tmp_path / "thumbs").glob("*.jpg")) == ["a.jpg", "c.jpg", "d.jpg"]
    assert cache.get("b.jpg") is None and cache.total == 3000
    again = media.ThumbCache(tmp_path / "thumbs", max_bytes=1500)  # a restart with a smaller bound
    assert again.total <= 1500 and len(list((tmp_path / "thumbs").glob("*.jpg"))) == 1


def test_service_thumbnails_stay_within_the_cache_bound(tmp_path, tiny_model, labels):
    store, mid, paths = make_store(tmp_path, tiny_model, labels)
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model),
                      limits=Limits(thumb_cache_bytes=12_000, thumb_width=64))
    service.thumbs = service.thumb_cache.folder = tmp_path / "thumbs"
    vid = next(iter(paths))
    sizes = []
    for k in range(12):
        path = service.thumb(f"{vid}/0", 0.5 + 0.7 * k)
        assert path.read_bytes()[:2] == b"\xff\xd8"
        sizes.append(path.stat().st_size)
        on_disk = sum(p.stat().st_size for p in service.thumbs.glob("*.jpg"))
        assert on_disk <= 12_000
    assert sum(sizes) > 12_000                                      # the bound was reached and held


# ---- media: the file whose bytes were tagged, opened once ------------------------------------------------
def test_media_refuses_a_parent_folder_swapped_for_a_link_and_a_forged_row(tmp_path, tiny_model, labels):
    store, mid, paths = make_store(tmp_path, tiny_model, labels)
    from fastapi.testclient import TestClient
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model))
    c = TestClient(create_app(service), base_url=BASE)
    vid, path = next(iter(paths.items()))
    assert c.get(f"/api/videos/{vid}/media").content == path.read_bytes()
    folder = path.parent
    decoy = tmp_path / "decoy"                                      # the same names and sizes, other bytes
    decoy.mkdir()
    for p in paths.values():
        (decoy / p.name).write_bytes(b"SECRET" + b"s" * (p.stat().st_size - 6))
    folder.rename(tmp_path / "videos.real")
    os.symlink(decoy, folder)                                       # the parent folder is now a link
    r = c.get(f"/api/videos/{vid}/media")
    assert r.status_code == 403 and b"SECRET" not in r.content
    r = c.get(f"/api/videos/{vid}/media", headers={"Range": "bytes=0-99"})
    assert r.status_code == 403 and b"SECRET" not in r.content
    assert c.get(f"/api/clips/{vid}/0/thumb.jpg", params={"t": 3.3}).status_code == 403
    folder.unlink()
    (tmp_path / "videos.real").rename(folder)                      # back: served again
    assert c.get(f"/api/videos/{vid}/media", headers={"Range": "bytes=0-9"}).content == path.read_bytes()[:10]
    secret = tmp_path / "secret.bin"                                # a forged row: another file, its size
    secret.write_bytes(b"SECRET" * 1000)
    add_video(store, tiny_model, labels, "0" * 32, [np.zeros((8, tiny_model.embed_dim), np.float32)],
              path=str(secret), duration_s=10.0, size=secret.stat().st_size)
    service.maybe_refresh()
    time.sleep(0.6)
    service.maybe_refresh()
    r = c.get(f"/api/videos/{'0' * 32}/media")
    assert r.status_code == 403 and b"SECRET" not in r.content


def test_media_is_read_from_the_descriptor_that_was_verified(tmp_path, tiny_model, labels):
    """The file is swapped after it was verified and opened, before its bytes are sent: the response still
    carries the tagged bytes (it reads the open descriptor, not the path)."""
    store, mid, paths = make_store(tmp_path, tiny_model, labels)
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model))
    vid, path = next(iter(paths.items()))
    tagged = path.read_bytes()
    from fastapi.testclient import TestClient
    from jobs.serve.app import OpenFileResponse
    opened = service.open_media(vid)
    other = tmp_path / "other.mp4"
    other.write_bytes(b"SECRET" * (len(tagged) // 6 + 1))
    os.replace(other, path)                                         # the path now names other bytes
    from fastapi import FastAPI
    app = FastAPI()
    app.get("/f")(lambda: OpenFileResponse(opened, media_type="video/mp4"))
    r = TestClient(app).get("/f")
    assert r.content == tagged and opened.fd == -1


# ---- a real server: half-sent requests, many cold thumbnails, SIGTERM ------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, labels):
    root = tmp_path_factory.mktemp("bounds")
    store, paths = damaged_store(root, tiny_model, labels)
    proc, base = start_server(store.root, root / "cache", "--header-timeout", "2", "--thumb-timeout", "8")
    yield proc, base, paths
    stop(proc)


def test_half_sent_requests_cannot_exhaust_the_server(server):
    proc, base, _ = server
    port = int(base.rsplit(":", 1)[1])
    socks = []
    try:
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:                                               # half a request head, never finished
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(s)                                         # (the others send nothing at all)
        t = time.monotonic()
        assert httpx.get(base + "/api/health", timeout=5).status_code == 200
        assert time.monotonic() - t < 1.0
        time.sleep(2.0)                                             # the 2-s head timeout
        open_ = set(socks)
        deadline = time.monotonic() + 5                             # a margin for a loaded machine
        while open_ and time.monotonic() < deadline:
            ready, _, _ = select.select(list(open_), [], [], 0.5)
            for s in ready:
                try:
                    if s.recv(100) == b"":                          # the server closed it
                        open_.discard(s)
                except ConnectionResetError:
                    open_.discard(s)
        closed = len(socks) - len(open_)
        assert closed == len(socks)
        t = time.monotonic()
        assert httpx.get(base + "/api/health", timeout=5).status_code == 200
        assert time.monotonic() - t < 1.0
    finally:
        for s in socks:
            s.close()


def thumb_urls(paths, count: int, offset: float = 0.0) -> "list[str]":
    """``count`` distinct thumbnails (clip, 0.1-s step) over the store's clips."""
    urls = []
    for k in range(count):
        vid = list(paths)[k % len(paths)]
        n = (k // len(paths)) % 2
        t = n * 10 + 0.3 + (k // (2 * len(paths))) * 0.9 + offset
        urls.append(f"/api/clips/{vid}/{n}/thumb.jpg?t={t:.1f}")
    assert len(set(urls)) == count
    return urls


def test_many_clients_cold_thumbnails_then_sigterm(server):
    """12 clients × 60 cold thumbnails of damaged videos: /api/health answers in < 1 s throughout, every
    thumbnail is a JPEG or a 503 with Retry-After (never a hang), and SIGTERM, sent while cold thumbnails
    are being decoded, ends the server within 2 s."""
    proc, base, paths = server
    urls = thumb_urls(paths, 60)

    def client(i):
        order = urls[:]
        random.Random(i).shuffle(order)
        got = []
        with httpx.Client(base_url=base, timeout=60) as c:
            for u in order:
                r = c.get(u)
                if r.status_code == 200:
                    assert r.content[:2] == b"\xff\xd8"
                else:
                    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
                got.append(r.status_code)
        return got
    with HealthWatch(base) as watch, cf.ThreadPoolExecutor(12) as pool:
        codes = [c for got in pool.map(client, range(12)) for c in got]
    assert len(codes) == 720 and codes.count(200) >= 60, {c: codes.count(c) for c in set(codes)}
    print(f"\n720 cold thumbnail requests: {codes.count(200)} x 200, {codes.count(503)} x 503; "
          f"/api/health worst {watch.worst:.3f} s over {watch.count} checks")
    assert watch.count >= 5 and watch.worst < 1.0, watch.worst

    # SIGTERM in the middle of more cold decodes
    more = thumb_urls(paths, 24, offset=0.5)
    busy = cf.ThreadPoolExecutor(6)

    def fetch(u):
        try:
            return httpx.get(base + u, timeout=10).status_code
        except httpx.TransportError:
            return "closed"
    futures = [busy.submit(fetch, u) for u in more]
    time.sleep(0.5)
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t
    busy.shutdown(wait=True)
    print(f"SIGTERM -> exit in {took:.2f} s")
    assert proc.poll() is not None and took < 2.0, f"SIGTERM took {took:.2f} s"
    assert "Traceback" not in proc.stderr.read()
    assert all(f.result() in (200, 503, "closed") for f in futures)
