"""``bike serve`` with text channels: ``/api/search?q=...&channels=...&weights=...`` on a real uvicorn server (the
``bike serve`` command on a loopback port) answers ``matched`` and ``text``; the page shows the matched words as
text (escaped), also when a store someone else wrote holds markup in its transcripts."""
from __future__ import annotations

import httpx
import pytest

import engine
from index.search.textindex import update_text_index
from jobs.tag.textstage import TextOptions, _rows, channel_id, run_text_stage
from servestore import make_store
from test_serve_bounds import start_server, stop
from test_serve_browser import _skip_reason, CHROMIUM

#: What a foreign writer put in the transcripts table: markup that must reach the page as text.
HOSTILE = 'hostile caption <b>x</b> <img src=x onerror="window.pwned=1">'


@pytest.fixture(scope="module")
def text_server(tmp_path_factory, tiny_model):
    """The serve store (walk 20 s, cars 20 s, dance 10 s; 10-s clips), a sidecar .srt beside cars.mp4 read by
    the subtitle channel, and a transcripts batch with markup for walk.mp4 written directly (as another
    program could); the text index built; ``bike serve`` on it."""
    root = tmp_path_factory.mktemp("servetext")
    store, mid, paths = make_store(root, tiny_model, engine.load_labels("ucf101"))
    by_name = {p.name: vid for vid, p in paths.items()}
    (root / "videos" / "cars.srt").write_text("1\n00:00:13,500 --> 00:00:15,000\nthe harbour <b>lighthouse</b> "
                                              "at dusk\n\n")
    with store.lock():
        (res,) = run_text_stage(store, [(str(p), vid) for vid, p in paths.items() if p.name != "walk.mp4"],
                                TextOptions())
        assert (res.done, res.spans) == (2, 1)
        walk = by_name["walk.mp4"]
        store.write_batch({"transcripts": _rows("subtitles", [(walk, str(paths[walk]),
                                                              [(12.0, 14.0, HOSTILE, None, "foreign", "1")])])},
                          channel_id("subtitles"), {walk: "ok"})
        update_text_index(store)
    proc, base = start_server(store.root, root / "cache")
    try:
        yield base, by_name
    finally:
        stop(proc)


def search(base: str, **params) -> dict:
    r = httpx.get(base + "/api/search", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_api_search_channels_and_weights(text_server):
    base, vids = text_server
    cars = vids["cars.mp4"]
    (hit,) = search(base, q="lighthouse", channels="text", k=5)["results"]      # text only: the subtitle span
    assert hit["matched"] == ["subtitle"] and hit["text"] == "the harbour lighthouse at dusk"   # tags removed
    assert (hit["video_id"], hit["moment_s"], hit["clip_id"]) == (cars, 13.5, f"{cars}/1")
    assert hit["start_s"] <= 13.5 < hit["end_s"] and (hit["moment_start_s"], hit["moment_end_s"]) == (13.5, 15.0)

    visual = search(base, q="lighthouse", channels="visual", k=5)["results"]
    assert visual and all(r["matched"] == ["visual"] and r["text"] is None for r in visual)
    fused = search(base, q="lighthouse", k=5)["results"]                         # default: visual,text
    assert fused[0]["clip_id"] == f"{cars}/1" and set(fused[0]["matched"]) == {"visual", "subtitle"}
    assert fused[0]["text"] == "the harbour lighthouse at dusk" and fused[0]["moment_s"] == 13.5
    assert (fused[0]["moment_start_s"], fused[0]["moment_end_s"], fused[0]["joined"]) == (13.5, 15.0, None)
    # the subtitle channel weighed 0: the visual order again (its clip no longer rises)
    muted = search(base, q="lighthouse", k=5, channels="visual,subtitle", weights="subtitle=0")["results"]
    assert [r["clip_id"] for r in muted] == [r["clip_id"] for r in visual]
    speech_only = search(base, q="lighthouse", channels="speech", k=5)
    assert speech_only["results"] == []                                           # no speech in this store

    for params, word in (({"channels": "sound"}, "unknown channel"), ({"weights": "visual=-1"}, "weight"),
                         ({"weights": "pixels=1"}, "unknown channel"), ({"channels": "x" * 300}, "too long")):
        r = httpx.get(base + "/api/search", params={"q": "lighthouse", **params}, timeout=60)
        assert r.status_code == 400 and word in r.json()["error"] and "\n" not in r.text, (params, r.text)


def test_api_returns_stored_markup_as_data(text_server):
    """The API hands the stored text back unchanged (JSON): escaping is the page's job (next test)."""
    base, vids = text_server
    (hit,) = search(base, q="hostile caption", channels="subtitle", k=5)["results"]
    assert hit["text"] == HOSTILE and hit["video_id"] == vids["walk.mp4"] and hit["moment_s"] == 12.0


def test_the_card_shows_matched_text_escaped(text_server):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright
    base, vids = text_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(base + "/")
            page.wait_for_function("() => document.getElementById('store-info').textContent.includes('clips')")
            page.fill("#q", "hostile caption")
            page.keyboard.press("Enter")
            page.wait_for_selector(".card .said")
            card = page.query_selector(f'.card[data-clip="{vids["walk.mp4"]}/1"]')
            said = card.query_selector(".said")
            assert said.text_content().endswith(f"“{HOSTILE}”") and "subtitle" in said.text_content()
            assert "<b>x</b>" in said.inner_text()                 # rendered as the characters, not bold
            assert page.evaluate("() => document.querySelectorAll('.said *, #results b').length") == 0
            card.click()                                        # the player's line shows the words too
            page.wait_for_selector("#player-panel:not([hidden])")
            assert HOSTILE in page.text_content("#p-meta")
            assert page.evaluate("() => document.querySelectorAll('#p-meta *').length") == 0
            assert page.evaluate("() => window.pwned") is None and dialogs == []
        finally:
            browser.close()
