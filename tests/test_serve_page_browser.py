"""The page of ``bike serve`` as a new user meets it, in headless Chromium (Playwright, as in
tests/test_serve_browser.py), at 1280 px and at a 390-px phone width, on a store with more clips than a page
of results and camera-style names that differ only at their end (tests/pagestore.py): the URL keeps the state,
one card per video, the player in view on a phone and closed on a new search, the curve's scale, plain words,
label bars, the SQL box, infinite scroll, and the tags view first for a store with nothing to search."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

import engine
from index.search.search import Searcher
from index.store import Store
from jobs.serve.app import create_app
from jobs.serve.service import Service
from liveserver import serving
from pagestore import make_page_store
from test_serve_browser import _needs_chromium, browser, wait_for_moment  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    store, mid, paths = make_page_store(tmp_path_factory.mktemp("pagebrowser"), tiny_model, engine.load_labels("ucf101"))
    with serving(create_app(Service(store, searcher=Searcher(store, mid, model=tiny_model)))) as base:
        yield base, paths


def new_page(browser, viewport=DESKTOP):  # noqa: F811
    page = browser.new_page(viewport=viewport)
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    return page


def url_params(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def search(page, words):
    page.fill("#q", words)
    page.keyboard.press("Enter")
    page.wait_for_function("w => document.getElementById('status').textContent.includes(w) && "
                           "!document.getElementById('status').textContent.startsWith('searching')", arg=words)


def test_one_card_per_video_with_its_best_moment_names_and_badges(server, browser):  # noqa: F811
    base, paths = server
    page = new_page(browser)
    page.goto(base + "/")
    search(page, "a dog")
    want = httpx.get(base + "/api/search", params={"q": "a dog", "k": 30, "group": "video"}).json()["results"]
    cards = page.query_selector_all(".card")
    assert [c.get_attribute("data-clip") for c in cards] == [r["clip_id"] for r in want] and len(cards) == 6
    for card, r in zip(cards, want):
        name = card.query_selector(".name")
        assert name.get_attribute("title") == r["path"]                          # the full name on hover
        tail = name.query_selector(".tail").inner_text()
        assert re.fullmatch(r"part-0\d\.mp4", tail) and r["path"].endswith(tail)  # the distinguishing end shows
        head = name.query_selector(".head")
        assert head.evaluate("e => e.scrollWidth > e.clientWidth")               # the start is what is cut
        m = r["moment_s"]
        assert card.query_selector(".badge").inner_text().startswith(f"{int(m // 60)}:{int(m % 60):02d} · ")
    toggle = page.query_selector(".card-wrap .more-toggle")
    assert toggle.inner_text() == f"+ {want[0]['more_count']} more moments in this video"
    toggle.click()
    moments = page.query_selector_all(".card-wrap:first-child .moment-btn")
    assert [b.get_attribute("data-clip") for b in moments] == [m["clip_id"] for m in want[0]["more"]]
    moments[2].click()                                                            # another moment of that video
    wait_for_moment(page, want[0]["more"][2]["moment_s"])
    assert url_params(page)["clip"] == want[0]["more"][2]["clip_id"]
    page.click("#filters summary")
    page.uncheck("#f-group")                                                      # one card per clip again
    page.wait_for_function("() => document.querySelectorAll('.card').length === 30")
    assert url_params(page)["group"] == "0"
    assert not page.errors, page.errors


def test_a_new_search_closes_the_player_and_the_curve_has_a_scale(server, browser):  # noqa: F811
    base, _ = server
    page = new_page(browser)
    page.goto(base + "/?q=a+person+cycling")
    page.wait_for_selector(".card")
    first = httpx.get(base + "/api/search", params={"q": "a person cycling", "k": 30, "group": "video"}).json()["results"][0]
    page.click(".card")
    wait_for_moment(page, first["moment_s"])
    assert page.inner_text("#c-title") == "How well each moment matches your words"
    assert page.inner_text("#c-ymax").endswith("%") and page.inner_text("#c-ymid").endswith("%")
    points = page.get_attribute("#curve polygon.area", "points").split()
    assert points[0] == "0,120" and points[-1] == "1000,120"                      # the clip's whole span: no gap
    assert float(points[1].split(",")[0]) == 0 and float(points[-2].split(",")[0]) == 1000
    line = page.query_selector("#curve line.moment").bounding_box()              # the label under the moment line
    label = page.query_selector("#c-moment").bounding_box()
    assert abs((label["x"] + label["width"] / 2) - line["x"]) < 3 and label["y"] > line["y"] + line["height"] - 1
    assert "moment" in page.inner_text("#c-moment")
    flat = page.evaluate("""r => { drawCurve({...r, saliency: Array(r.saliency.length).fill(1 / r.saliency.length)});
        return document.querySelector('#curve polygon.area').getAttribute('points'); }""", first)
    ys = {p.split(",")[1] for p in flat.split()[1:-1]}
    assert len(ys) == 1 and 55 < float(ys.pop()) < 65                            # flat, halfway up
    page.wait_for_selector("#scrub rect.clip", state="attached")
    assert page.query_selector("#scrub rect.span")

    search(page, "a car on a road")                                                # a new search: no old clip
    assert page.is_hidden("#player-panel") and page.evaluate("document.getElementById('curve').children.length") == 0
    assert page.evaluate("document.getElementById('player').paused") and "clip" not in url_params(page)
    assert not page.errors, page.errors


def test_the_url_keeps_query_filters_clip_and_time(server, browser):  # noqa: F811
    base, _ = server
    page = new_page(browser)
    page.goto(base + "/")
    page.click("#filters summary")
    page.fill("#f-where", "clip_index < 10")
    search(page, "someone juggling")
    assert url_params(page) == {"q": "someone juggling", "where": "clip_index < 10"}
    want = httpx.get(base + "/api/search", params={"q": "someone juggling", "where": "clip_index < 10", "k": 30,
                                                   "group": "video"}).json()["results"]
    page.query_selector_all(".card")[1].click()
    wait_for_moment(page, want[1]["moment_s"])
    p = url_params(page)
    assert p["clip"] == want[1]["clip_id"] and float(p["t"]) == pytest.approx(want[1]["moment_s"], abs=0.1)
    t = want[1]["start_s"] + 2.0
    page.evaluate("t => { document.getElementById('player').currentTime = t; }", t)
    page.wait_for_function("t => new URLSearchParams(location.search).get('t') === t.toFixed(1)", arg=t)
    shared = page.url

    page.reload()                                                                 # reload: all of it back
    wait_for_moment(page, round(t, 1))
    assert page.input_value("#q") == "someone juggling" and page.input_value("#f-where") == "clip_index < 10"
    assert page.query_selector(".card[aria-current=true]").get_attribute("data-clip") == want[1]["clip_id"]
    page.go_back()                                                                # Back: the results, no player
    page.wait_for_selector("#player-panel", state="hidden")
    assert page.query_selector_all(".card") and "clip" not in url_params(page)
    page.go_forward()                                                             # Forward: the clip again
    page.wait_for_selector("#player-panel:not([hidden])")
    search(page, "a horse")
    page.go_back()                                                                # Back to the earlier query
    page.wait_for_function("() => document.getElementById('q').value === 'someone juggling'")
    page.wait_for_selector("#player-panel:not([hidden])")

    other = new_page(browser)                                                     # a shared link, a new tab
    other.goto(shared)
    wait_for_moment(other, round(t, 1))
    assert other.input_value("#q") == "someone juggling"
    assert not page.errors and not other.errors, page.errors + other.errors


def test_phone_tapping_a_result_opens_the_player_in_view(server, browser):  # noqa: F811
    base, _ = server
    page = new_page(browser, PHONE)
    page.goto(base + "/?q=a+person+running&group=0")
    page.wait_for_selector(".card")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]      # nothing wider than the phone
    card = page.query_selector_all(".card")[12]
    card.scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 3000                                       # far down the results
    card.click()
    page.wait_for_selector("#player-panel:not([hidden])")
    panel = page.query_selector("#player-panel").bounding_box()
    video = page.query_selector("#player").bounding_box()
    assert panel["y"] >= 0 and video["y"] >= 0 and video["y"] + video["height"] <= PHONE["height"]
    assert page.query_selector("#p-close").is_visible() and page.query_selector("#curve").is_visible()
    page.go_back()                                                                      # Back closes it
    page.wait_for_selector("#player-panel", state="hidden")
    assert page.evaluate("window.scrollY") > 3000                                       # where the user was
    assert not page.errors, page.errors


def test_a_bad_filter_is_said_plainly_and_clears_the_results(server, browser):  # noqa: F811
    base, _ = server
    page = new_page(browser)
    page.goto(base + "/")
    assert not page.query_selector("#k")                                                # no "k"
    search(page, "a dog")
    page.click(".card")
    page.wait_for_selector("#player-panel:not([hidden])")
    page.click("#filters summary")
    page.fill("#f-where", "foo > 1")
    page.fill("#q", "a cat")
    page.keyboard.press("Enter")
    page.wait_for_selector("#error:not([hidden])")
    msg = page.inner_text("#error")
    assert "no column named 'foo'; columns are clip_id, video_id" in msg
    assert "Binder" not in msg and "--where" not in msg and "DuckDB" not in msg
    assert not page.query_selector_all(".card") and page.inner_text("#status") == ""  # no stale results
    assert page.is_hidden("#player-panel")
    page.fill("#f-where", "clip_index < 2")
    search(page, "a cat")
    status = page.inner_text("#status")
    assert "the filters match 12 clips" in status and "--" not in status and "candidates" not in status
    assert not re.search(r"\bk\b", page.inner_text("#view-search"))
    page.errors.clear()


def test_label_bars_sql_box_and_infinite_scroll(server, browser, tmp_path):  # noqa: F811
    base, _ = server
    page = new_page(browser)
    page.goto(base + "/?view=tags")
    page.wait_for_selector("#histogram .bar")
    bars = httpx.get(base + "/api/stats").json()["labels"]
    top = bars[0]
    page.click(f'#histogram .bar[data-label="{top["label"]}"]')                    # exactly the clips it counts
    page.wait_for_selector("#view-search:not([hidden]) .card")
    scroll_to_end(page, top["clips"])
    shown = {c.get_attribute("data-clip") for c in page.query_selector_all(".card")}
    want = httpx.get(base + "/api/sql", params={"q": "SELECT clip_id FROM labels WHERE rank = 0 AND label = '"
                                                     + top["label"].replace("'", "''") + "'"}).json()["rows"]
    assert shown == {r[0] for r in want} and len(shown) == top["clips"]

    page.goto(base + "/?q=anything&group=0")                                      # past 100 on scroll
    page.wait_for_selector(".card")
    scroll_to_end(page, 120)
    assert "all 120 results shown" in page.inner_text("#more-status")

    page.goto(base + "/?view=tags")
    page.wait_for_selector("#histogram .bar")
    page.select_option("#sql-examples", index=1)                                   # the README's examples
    assert page.input_value("#sql").startswith("SELECT label, count(*) AS clips")
    page.click("#sql-tables summary")
    assert "clips: clip_id, video_id, model_id" in page.inner_text("#sql-columns")
    page.fill("#sql", "SELECT clip_id, start_s FROM clips ORDER BY clip_id LIMIT 3")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#sql-out table")
    with page.expect_download() as dl:
        page.click("#sql-csv")
    csv = (tmp_path / "out.csv")
    dl.value.save_as(csv)
    rows = csv.read_text().splitlines()
    first = page.query_selector("#sql-out .clip-link").inner_text()
    assert rows[0] == "clip_id,start_s" and len(rows) == 4 and rows[1].startswith(first + ",")
    page.click("#sql-out .clip-link")                                              # a clip id opens the player
    page.wait_for_selector("#view-search:not([hidden]) #player-panel:not([hidden])")
    assert url_params(page)["clip"] == first
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    assert not page.errors, page.errors


def scroll_to_end(page, n: int) -> None:
    """Scroll down until ``n`` cards are shown and no more load (the infinite scroll)."""
    for _ in range(40):
        page.mouse.wheel(0, 20000)
        page.wait_for_timeout(200)
        if len(page.query_selector_all(".card")) >= n and page.is_hidden("#more-btn"):
            break
    assert len(page.query_selector_all(".card")) == n


@pytest.mark.parametrize("kind", ["empty", "only errors"])
def test_a_store_with_nothing_to_search_opens_on_the_tags_view(tmp_path, browser, tiny_model, kind):  # noqa: F811
    from test_serve_web import _failed_store
    if kind == "empty":
        store = Store(tmp_path / "store", create=True)
    else:
        store, _ = _failed_store(tmp_path / "store", tiny_model, engine.load_labels("ucf101"))
    with serving(create_app(Service(store))) as base:
        page = new_page(browser)
        page.goto(base + "/")
        page.wait_for_selector("#view-tags:not([hidden])")
        assert page.is_hidden("#view-search") and page.get_attribute("#tab-tags", "aria-pressed") == "true"
        banner = page.inner_text("#banner")
        assert "nothing searchable yet" in banner and "bike " not in banner and "--" not in banner
        if kind == "only errors":
            page.wait_for_selector("#errors table")
        page.close()
