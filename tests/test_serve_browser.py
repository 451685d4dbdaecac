"""The page in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright's Python API)
against a real uvicorn server on a free loopback port. Skipped, with the reason, where no browser is installed
(`.ci/run` installs it with apt)."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

import engine
from index.search.search import Searcher
from jobs.serve.app import create_app
from jobs.serve.service import Service
from servestore import make_store

CHROMIUM = os.environ.get("BIKE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _skip_reason() -> "str | None":
    if not CHROMIUM or not os.path.exists(CHROMIUM):
        return f"no chromium binary ({CHROMIUM or 'none on PATH'}) (Debian: apt-get install -y chromium; .ci/run does this)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python API) is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(autouse=True, scope="module")
def _needs_chromium():
    """Skipped, with the reason printed, where no browser can be had; in CI (``CI=true``, where .ci/run installs
    Debian's chromium as root) a missing browser is a failure, never a silent skip."""
    reason = _skip_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    import uvicorn
    store, mid, paths = make_store(tmp_path_factory.mktemp("browser"), tiny_model, engine.load_labels("ucf101"))
    service = Service(store, searcher=Searcher(store, mid, model=tiny_model))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", paths
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        yield b
        b.close()


def wait_for_moment(page, moment: float, timeout_ms: int = 15000) -> dict:
    page.wait_for_function(
        """m => { const v = document.getElementById('player');
                  return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - m) < 0.05; }""",
        arg=moment, timeout=timeout_ms)
    return page.evaluate("""() => { const v = document.getElementById('player');
        return {t: v.currentTime, duration: v.duration, ready: v.readyState, error: v.error && v.error.code,
                src: v.currentSrc}; }""")


def test_search_click_plays_at_the_moment(server, browser, tmp_path):
    base, paths = server
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: console.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(base + "/")
    page.wait_for_function("() => document.getElementById('store-info').textContent.includes('clips')")
    assert "RANDOM WEIGHTS" in page.inner_text("#banner")                 # the CLI's warning, on the page
    page.click("h1")                                                      # focus away from the (autofocused) box
    page.keyboard.press("/")                                              # keyboard: / focuses the search box
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a person walking a dog")
    page.keyboard.press("Enter")
    page.wait_for_selector(".card")
    want = httpx.get(base + "/api/search", params={"q": "a person walking a dog", "k": 30,
                                                   "group": "video"}).json()["results"]    # one card per video
    cards = page.query_selector_all(".card")
    assert [c.get_attribute("data-clip") for c in cards] == [r["clip_id"] for r in want]
    first = want[0]
    assert f"{first['score']:.3f}" in cards[0].inner_text()
    assert first["labels"][0]["label"] in cards[0].inner_text()
    page.wait_for_function("() => { const i = document.querySelector('.card img'); return i.complete && i.naturalWidth > 0; }")

    cards[0].click()                                                      # the mouse
    state = wait_for_moment(page, first["moment_s"])
    assert state["error"] is None and state["ready"] >= 1
    assert abs(state["duration"] - 20.0 if "walk" in str(paths[first["video_id"]]) or "cars" in str(paths[first["video_id"]]) else state["duration"] - 10.0) < 0.5
    assert state["src"].endswith(f"/api/videos/{first['video_id']}/media")
    assert page.inner_text("#p-labels").startswith(first["labels"][0]["label"])

    box = page.query_selector("#curve").bounding_box()                   # click the curve: seek there
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    quarter = first["start_s"] + 0.25 * (first["end_s"] - first["start_s"])
    page.wait_for_function("q => Math.abs(document.getElementById('player').currentTime - q) < 0.2", arg=quarter)

    second = want[1]                                                      # the keyboard: Tab to a card, Enter
    page.focus(f'.card[data-clip="{second["clip_id"]}"]')
    page.keyboard.press("Enter")
    wait_for_moment(page, second["moment_s"])
    page.screenshot(path=str(tmp_path / "serve.png"))
    if os.environ.get("BIKE_SERVE_SCREENSHOT"):
        page.screenshot(path=os.environ["BIKE_SERVE_SCREENSHOT"])

    page.click("#p-like")                                                 # more like this: the clip comes first
    page.wait_for_function("c => document.querySelector('.card') && document.querySelector('.card').dataset.clip === c",
                           arg=second["clip_id"])
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    assert not console, console


def test_the_moment_span_on_the_curve_and_scrubber_and_played(server, browser):
    """The result's moment span is drawn on the saliency curve and on the scrubber under the player, and
    "Play the moment" plays from its start and pauses at its end."""
    base, _ = server
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    page.goto(base + "/")
    page.wait_for_function("() => document.getElementById('store-info').textContent.includes('clips')")
    page.fill("#q", "a person walking a dog")
    page.keyboard.press("Enter")
    page.wait_for_selector(".card")
    first = httpx.get(base + "/api/search", params={"q": "a person walking a dog", "k": 20}).json()["results"][0]
    lo, hi = (first["joined"]["start_s"], first["joined"]["end_s"]) if first["joined"] else (
        first["moment_start_s"], first["moment_end_s"])
    page.query_selector_all(".card")[0].click()
    wait_for_moment(page, first["moment_s"])
    span = page.evaluate("() => { const r = document.querySelector('#curve rect.span'); "
                         "return [+r.getAttribute('x'), +r.getAttribute('width')]; }")
    clip = first["end_s"] - first["start_s"]
    assert span[0] == pytest.approx(max(0.0, 1000 * (lo - first["start_s"]) / clip), abs=0.5)
    assert span[0] + span[1] == pytest.approx(min(1000.0, 1000 * (hi - first["start_s"]) / clip), abs=2.5)
    page.wait_for_selector("#scrub rect.span", state="attached")
    assert f"{int(lo // 60)}:" in page.inner_text("#c-moment") and "–" in page.inner_text("#c-moment")
    page.click("#p-play")
    page.wait_for_function("([a, b]) => { const v = document.getElementById('player'); "
                           "return v.paused && v.currentTime >= b - 0.3 && v.currentTime <= b + 0.5 && b > a; }",
                           arg=[lo, hi], timeout=30000)


def test_errors_inline_and_the_tags_page(server, browser, tmp_path):
    base, paths = server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base + "/")
    example = next(p for p in paths.values() if p.name == "dance.mp4")
    page.set_input_files("#upload", str(example))                       # "Video…": search by example
    page.wait_for_function("() => document.getElementById('status').textContent.includes('like dance.mp4') && "
                           "document.querySelectorAll('.card').length > 0")
    page.click(".card")
    page.wait_for_selector("#player-panel:not([hidden])")
    page.keyboard.press("Escape")                                         # Esc closes the player
    page.wait_for_selector("#player-panel", state="hidden")
    page.click("#filters summary")
    page.fill("#f-where", "no_such_column > 1")
    page.fill("#q", "anything")
    page.keyboard.press("Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "no column named 'no_such_column'" in page.inner_text("#error")       # plain words, not DuckDB's
    page.fill("#f-where", "")

    page.click("#tab-tags")
    page.wait_for_selector("#histogram .bar")
    bars = page.query_selector_all("#histogram .bar")
    counts = httpx.get(base + "/api/stats").json()["labels"]
    assert len(bars) == len(counts)
    assert page.inner_text("#errors").startswith("No video failed")
    page.fill("#sql", "SELECT clip_id, start_s FROM clips ORDER BY clip_id")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#sql-out table")
    assert len(page.query_selector_all("#sql-out tbody tr")) == 5
    page.fill("#sql", "SELECT * FROM read_text('/etc/passwd')")
    page.click("#sql-form button")
    page.wait_for_selector("#sql-error:not([hidden])")
    assert "Permission" in page.inner_text("#sql-error") and "root:" not in page.content()
    page.screenshot(path=str(tmp_path / "tags.png"))
    if os.environ.get("BIKE_SERVE_SCREENSHOT"):
        page.screenshot(path=str(Path(os.environ["BIKE_SERVE_SCREENSHOT"]).with_name("serve-tags.png")))
    bars = page.query_selector_all("#histogram .bar")
    bars[0].click()                                                       # a bar lists the clips it counts
    page.wait_for_selector("#view-search:not([hidden]) .card")
    assert page.input_value("#f-where") == f"top_label = '{counts[0]['label']}'"
    page.wait_for_function("n => document.querySelectorAll('.card').length === n", arg=counts[0]["clips"])


def test_another_sites_page_cannot_drive_the_api(server, browser):
    """A page on another origin (http://localhost:PORT2, the attacker) makes Chromium send requests to the
    server: what Chromium really sends (Origin, Sec-Fetch-Site) gets them refused, 403."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from liveserver import serving
    base, _ = server
    script = f"""<!doctype html><script>
      fetch("{base}/api/sql?q=SELECT%201", {{mode: "no-cors"}});
      fetch("{base}/api/search?k=1", {{method: "POST", mode: "no-cors", body: "x",
                                       headers: {{"Content-Type": "text/plain"}}}});
    </script>"""
    attacker = Starlette(routes=[Route("/", lambda request: HTMLResponse(script))])
    with serving(attacker) as evil:
        seen = {}
        page = browser.new_page()
        page.on("response", lambda r: seen.__setitem__(r.url.split("?")[0], r.status) if r.url.startswith(base) else None)
        page.goto(evil.replace("127.0.0.1", "localhost") + "/")
        deadline = time.time() + 15
        while len(seen) < 2 and time.time() < deadline:
            page.wait_for_timeout(100)
        page.close()
    assert seen == {f"{base}/api/sql": 403, f"{base}/api/search": 403}, seen


def test_a_store_with_nothing_searchable_shows_why(tmp_path, browser, tiny_model):
    """Every file failed: the page says nothing is searchable yet, a search says so in place, and the Tags page
    lists the failures."""
    from liveserver import serving
    from test_serve_web import _failed_store
    store, _ = _failed_store(tmp_path / "store", tiny_model, engine.load_labels("ucf101"))
    with serving(create_app(Service(store))) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/")
        page.wait_for_selector("#banner:not([hidden])")
        assert "nothing searchable yet" in page.inner_text("#banner")
        page.wait_for_selector("#view-tags:not([hidden])")                # it opens on the errors
        page.click("#tab-search")
        page.fill("#q", "a dog")
        page.keyboard.press("Enter")
        page.wait_for_selector("#error:not([hidden])")
        assert "nothing searchable yet" in page.inner_text("#error")
        page.click("#tab-tags")
        page.wait_for_selector("#errors table")
        assert "/archive/broken0.mp4" in page.inner_text("#errors") and "not a video" in page.inner_text("#errors")
        page.close()


def test_thumbs_rerank_at_once_and_save_as_tag(server, browser):
    base, _ = server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.goto(base + "/")
    page.click("#filters summary")
    page.uncheck("#f-group")                                              # one card per clip
    page.fill("#q", "a person dancing")
    page.keyboard.press("Enter")
    page.wait_for_selector(".card")
    order = [c.get_attribute("data-clip") for c in page.query_selector_all(".card")]
    up, down = order[-1], order[0]
    with page.expect_response(lambda r: "positive=" in r.url and r.url.count("/api/search")) as got:
        page.click(f'.card-wrap:has(.card[data-clip="{up}"]) .fb-btn[data-fb="up"]')
    assert got.value.status == 200
    page.wait_for_function("c => document.querySelector('.card').dataset.clip === c", arg=up)   # re-ranked at once
    with page.expect_response(lambda r: "negative=" in r.url):
        page.click(f'.card-wrap:has(.card[data-clip="{down}"]) .fb-btn[data-fb="down"]')
    want = httpx.get(base + "/api/search", params={"q": "a person dancing", "k": 30, "positive": up,
                                                   "negative": down}).json()["results"]
    page.wait_for_function("w => [...document.querySelectorAll('.card')].map(c => c.dataset.clip).join() === w",
                           arg=",".join(r["clip_id"] for r in want))
    assert want[0]["clip_id"] == up and want[0]["feedback_score"] > max(r["feedback_score"] for r in want[1:])
    assert page.get_attribute(f'.card-wrap:has(.card[data-clip="{up}"]) .fb-btn[data-fb="up"]', "aria-pressed") == "true"
    assert "👍 1 · 👎 1" in page.inner_text("#feedback-bar")
    page.once("dialog", lambda d: d.accept("dance tag"))
    page.click("#fb-save")
    page.wait_for_function("() => document.getElementById('fb-status').textContent.startsWith('saved')")
    rows = httpx.get(base + "/api/sql", params={"q": "SELECT clip_id, example FROM user_labels WHERE label = "
                                                     "'dance tag' ORDER BY rank"}).json()["rows"]
    assert rows[0] == [up, "positive"] and [down, "negative"] in rows
    assert not console, console
