"""Text channels: subtitles (embedded streams, sidecar files), the transcripts table, the BM25 text index and
the fused search (index/search/textsearch.py, index/search/fusion.py). Real ffmpeg-muxed streams, real files, a real store."""
from __future__ import annotations

import json

import numpy as np
import pytest

import engine
from engine.transcripts import TextError, clean_text
from engine.transcripts import subtitles as subs
from index.search.fusion import parse_weights, rrf
from index.search.search import Searcher
from index.store import Store
from index.search.textindex import open_text_index, update_text_index
from index.search.textsearch import fused_search
from jobs.cli import main as bike
from jobs.tag.textstage import TextOptions, channel_id, run_text_stage
from media import make_video, run_ffmpeg
from searchstore import add_video, random_clips

SRT = ("1\n00:00:01,000 --> 00:00:02,500\nHello <b>world</b>\n\n"
       "2\n00:00:03,200 --> 00:00:04,000\nQuarterly budget\nsecond line\n\n")


def test_srt_exact_times_markup_and_malformed_blocks():
    text = SRT + "garbage block without a time\n\n3\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n" \
        "4\n01:02:03.5 --> 01:02:04,250\n<script>x</script>\x1b[31mred\u202e\n"
    cues, bad = subs.parse_cues(text)
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [
        (1.0, 2.5, "Hello world"), (3.2, 4.0, "Quarterly budget second line"), (3723.5, 3724.25, "x [31mred")]
    assert bad == 2                                          # the garbage block and the backwards one
    with pytest.raises(TextError, match="no subtitle cues"):
        subs.parse_cues("this is\n\nnot subtitles\n")
    assert clean_text("a\x00b <i>c</i>\n d") == "a b c d" and len(clean_text("x" * 10_000)) == 2000


def test_sidecars_binary_junk_and_oversized_are_one_line_warnings(tmp_path):
    video = make_video(tmp_path / "talk.mp4", seconds=1)
    (tmp_path / "talk.en.srt").write_text(SRT)
    (tmp_path / "talk.vtt").write_bytes(b"\x00\x01\x02binary junk\xff" * 100)
    (tmp_path / "talk.de.srt").write_bytes(b"x" * (subs.MAX_SIDECAR_BYTES + 1))
    (tmp_path / "talk.notalang123.srt").write_text(SRT)       # not "<stem>.<lang>.srt": not a sidecar
    tracks, warnings = subs.read_subtitles(str(video))
    assert [t.backend for t in tracks] == ["sidecar talk.en.srt"]
    assert [c.start_s for c in tracks[0].cues] == [1.0, 3.2]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("talk.vtt: binary content" in w for w in warnings)
    assert any("talk.de.srt" in w and "larger than" in w for w in warnings)


@pytest.mark.parametrize("ext,codec", [("mp4", "mov_text"), ("mkv", "srt"), ("mkv", "ass")])
def test_embedded_subtitle_streams_exact_timing(tmp_path, ext, codec):
    src = tmp_path / "in.srt"
    src.write_text(SRT)
    video = make_video(tmp_path / "plain.mp4", seconds=5)
    out = tmp_path / f"muxed.{ext}"
    run_ffmpeg("-i", video, "-i", src, "-c:v", "copy", "-c:s", codec, out)
    tracks, warnings = subs.read_embedded(str(out))
    assert warnings == [] and len(tracks) == 1
    assert [(c.start_s, c.end_s, c.text) for c in tracks[0].cues] == [
        (1.0, 2.5, "Hello world"), (3.2, 4.0, "Quarterly budget second line")]


def test_huge_subtitle_stream_is_cut_not_fatal(tmp_path, monkeypatch):
    """A stream with more text than MAX_STREAM_TEXT_BYTES: what fits is kept, one warning (the limit is lowered
    here so that the test stays small; bench/text.py reads a real 100 MB stream)."""
    lines = "".join(f"{i + 1}\n00:00:{i // 100:02d},{(i % 100) * 10:03d} --> 00:00:{i // 100:02d},"
                    f"{(i % 100) * 10 + 5:03d}\n{'word ' * 40}{i}\n\n" for i in range(3000))
    src = tmp_path / "big.srt"
    src.write_text(lines)
    video = make_video(tmp_path / "plain.mp4", seconds=2)
    out = tmp_path / "big.mkv"
    run_ffmpeg("-i", video, "-i", src, "-c:v", "copy", "-c:s", "srt", out)
    monkeypatch.setattr(subs, "MAX_STREAM_TEXT_BYTES", 50_000)
    tracks, warnings = subs.read_embedded(str(out))
    assert 200 < len(tracks[0].cues) < 300 and len(warnings) == 1 and "cut after" in warnings[0]


def test_rrf_rule():
    fused = rrf({"visual": ["a", "b", "c"], "subtitle": ["c", "d"]})
    keys = [k for k, *_ in fused]
    assert keys == ["c", "a", "b", "d"]                      # c found by both channels rises to the top
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61) and fused[0][2] == {"visual": 3, "subtitle": 1}
    w = parse_weights("visual=0,text=2")
    assert w == {"visual": 0.0, "subtitle": 2.0, "ocr": 2.0, "speech": 2.0}
    assert [k for k, *_ in rrf({"visual": ["a"], "ocr": ["b"]}, w)] == ["b", "a"]
    for bad in ("pixels=1", "visual=-1", "visual=x", "visual=nan"):
        with pytest.raises(ValueError):
            parse_weights(bad)


@pytest.fixture(scope="module")
def text_store(tmp_path_factory, tiny_model):
    """Three 'tagged' videos (real files, clips written with the real model), subtitles on two: one as a
    mov_text stream, one as a sidecar .srt; the subtitle channel run over them; the text index built."""
    d = tmp_path_factory.mktemp("textstore")
    labels = engine.load_labels("ucf101")
    store = Store(d / "store", create=True)
    rng = np.random.default_rng(0)
    (d / "s.srt").write_text("1\n00:00:12,000 --> 00:00:13,000\nthe harbour lighthouse at dusk\n\n"
                             "2\n00:00:31,500 --> 00:00:33,000\nquarterly budget review\n\n")
    plain = make_video(d / "plain.mp4", seconds=1)
    run_ffmpeg("-i", plain, "-i", d / "s.srt", "-c:v", "copy", "-c:s", "mov_text", d / "streamed.mp4")
    make_video(d / "side.mp4", seconds=1)
    (d / "side.srt").write_text("1\n00:00:21,250 --> 00:00:22,000\nan <i>elephant</i> crosses the river\n\n")
    make_video(d / "none.mp4", seconds=1)
    videos = []
    for name in ("streamed", "side", "none"):
        path = str(d / f"{name}.mp4")
        mid = add_video(store, tiny_model, labels, f"vid_{name}", random_clips(rng, 4, 8, tiny_model.embed_dim),
                        path=path)
        videos.append((path, f"vid_{name}"))
    first = run_text_stage(store, videos, TextOptions())
    again = run_text_stage(store, videos, TextOptions())
    update_text_index(store)
    return store, mid, first, again


def test_transcripts_exactly_once_and_sql(text_store):
    store, _, first, again = text_store
    assert (first[0].done, first[0].spans, first[0].skipped) == (3, 3, 0)
    assert (again[0].done, again[0].skipped) == (0, 3)         # a rerun reads nothing again
    assert store.done_videos(channel_id("subtitles")) == {"vid_streamed": "ok", "vid_side": "ok", "vid_none": "ok"}
    rows = store.connect().execute("SELECT video_id, start_s, end_s, text, source FROM transcripts "
                                   "WHERE text ILIKE '%budget%'").fetchall()
    assert rows == [("vid_streamed", 31.5, 33.0, "quarterly budget review", "subtitle")]


def test_fused_search_finds_the_moment(text_store, tiny_model):
    store, mid, *_ = text_store
    s = Searcher(store, mid, model=tiny_model)
    for query, vid, t in (("quarterly budget", "vid_streamed", 31.5), ("elephant river", "vid_side", 21.25),
                          ("lighthouse", "vid_streamed", 12.0)):
        res = fused_search(s, query, k=5)
        top = res[0]
        assert (top.video_id, top.text is not None) == (vid, True) and "subtitle" in top.matched
        assert abs(top.moment_s - t) <= 1.0 and top.start_s <= t < top.end_s     # the clip holding the words
        assert top.clip_id == f"{vid}/{int(t // 10)}"
    only_text = fused_search(s, "elephant", k=5, channels="text")
    assert [r.matched for r in only_text] == [["subtitle"]] and only_text[0].text == "an elephant crosses the river"
    visual = fused_search(s, "elephant", k=5, channels="visual")
    assert all(r.matched == ["visual"] and r.text is None for r in visual)
    where = "subtitles ILIKE '%lighthouse%'"
    assert {r.video_id for r in fused_search(s, "elephant", k=5, where=where)} == {"vid_streamed"}


def test_text_index_is_stored_and_refreshed(text_store, tiny_model, tmp_path):
    store, mid, *_ = text_store
    idx, notes = open_text_index(Store(store.root))
    assert notes == [] and len(idx) == 3                       # the stored one, current
    assert (store.root / "_index" / "_text" / "manifest.json").exists()
    assert update_text_index(store).line().startswith("text index up to date")


def test_cli_search_text_channel_json(text_store, capsys):
    store, *_ = text_store
    assert bike(["search", "--store", str(store.root), "budget", "--channels", "text", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (r,) = out["results"]
    assert r["matched"] == ["subtitle"] and r["moment_s"] == 31.5 and r["text"] == "quarterly budget review"
    assert bike(["search", "--store", str(store.root), "budget", "--channels", "sound"]) == 2
    assert "unknown channel" in capsys.readouterr().err


def burned_caption(path, text: str, start: float, end: float, seconds: float = 4.0, size: str = "480x270"):
    """A video with ``text`` burned in (ffmpeg drawtext, matplotlib's DejaVu Sans) from ``start`` to ``end``."""
    import os

    import matplotlib
    font = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    run_ffmpeg("-f", "lavfi", "-i", f"color=c=0x203060:size={size}:rate=10:duration={seconds}", "-vf",
               f"drawtext=fontfile={font}:text='{text}':fontsize=30:fontcolor=white:x=40:y=110:"
               f"enable='between(t,{start},{end})'", "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
    return path


def test_ocr_channel_reads_a_burned_caption_and_runs_alone(tmp_path):
    """Real rapidocr on a real burned-in caption; the OCR channel added to a store whose subtitles are done
    runs only OCR (the subtitle channel skips the video), exactly once."""
    pytest.importorskip("rapidocr")
    video = str(burned_caption(tmp_path / "report.mp4", "QUARTERLY REPORT 2026", 1, 3))
    store = Store(tmp_path / "store", create=True)
    run_text_stage(store, [(video, "vid_report")], TextOptions())                     # subtitles: none here
    subs_done, ocr = run_text_stage(store, [(video, "vid_report")], TextOptions(channels=("subtitles", "ocr")))
    assert (subs_done.skipped, subs_done.done) == (1, 0) and (ocr.done, ocr.error) == (1, 0)
    rows = store.read("transcripts").to_pylist()
    assert [(r["text"], r["source"], r["backend"]) for r in rows] == [("QUARTERLY REPORT 2026", "ocr", "rapidocr")]
    assert abs(rows[0]["start_s"] - 1.0) <= 0.5 and abs(rows[0]["end_s"] - 3.0) <= 1.0 and rows[0]["confidence"] > 0.9
    (again,) = run_text_stage(store, [(video, "vid_report")], TextOptions(channels=("ocr",)))
    assert (again.done, again.skipped) == (0, 1)


def test_asr_pocketsphinx_channel_on_espeak_speech(tmp_path):
    """Real espeak-ng speech through the real pocketsphinx backend: a speech span with a time inside the audio
    (its words are not asserted: pocketsphinx on synthetic speech is weak; bench/text.py measures the recall);
    whisper without faster-whisper is a one-line error saying how to get it."""
    import os
    import shutil
    if not shutil.which("espeak-ng"):            # in CI (.ci/run installs it as root) a failure, never a skip
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("espeak-ng is not installed: .ci/run installs it with apt as root")
        pytest.skip("espeak-ng not installed (.ci/run installs it with apt)")
    pytest.importorskip("pocketsphinx")
    import subprocess
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), "the budget meeting starts at noon"], check=True)
    video = tmp_path / "talk.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "color=c=black:size=64x48:rate=10:duration=4", "-i", wav, "-c:v", "libx264",
               "-c:a", "aac", "-shortest", video)
    store = Store(tmp_path / "store", create=True)
    (res,) = run_text_stage(store, [(str(video), "vid_talk")], TextOptions(channels=("asr",)))
    rows = store.read("transcripts").to_pylist()
    assert (res.done, res.error) == (1, 0) and rows and all(r["source"] == "speech" for r in rows)
    assert all(0 <= r["start_s"] < r["end_s"] <= 4.5 and r["backend"] == "pocketsphinx" for r in rows)
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        from engine.transcripts.asr import load_backend
        with pytest.raises(TextError, match="pip install faster-whisper"):
            load_backend("whisper")


def test_bike_tag_text_counts_rerun_and_compaction(ray_cluster, tmp_path, capsys):
    """`bike tag` with the default subtitle channel: its summary line counts every listed video once (read +
    error + skipped = listed), a rerun with nothing new reads nothing, and a run that only adds text batches
    still compacts a store past --compact-at (text batches count: they used to be written after the check)."""
    src = tmp_path / "videos"
    src.mkdir()
    make_video(src / "a.mp4", seconds=2, fps=10, size=(64, 48), pattern="testsrc")
    base = (src / "a.mp4").read_bytes()
    for i in range(2):                                            # distinct content ids
        (src / f"b{i}.mp4").write_bytes(base + b"\0" * (i + 1))
    (src / "b0.srt").write_text(SRT)
    store = tmp_path / "s"
    tag = ["tag", str(src), "--store", str(store), "--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51",
           "--labels", "dog,cat", "--no-progress", "--batch", "1"]
    assert bike([*tag, "--text", "none", "--compact-at", "0"]) == 0
    assert "bike tag: text" not in capsys.readouterr().out
    assert len(Store(store).commits()) == 3                       # one BIKE batch per video

    assert bike([*tag, "--compact-at", "3"]) == 0                 # BIKE: nothing new; subtitles: 3 videos
    captured = capsys.readouterr()
    out = captured.out
    assert "bike tag: 0 ok, 0 error, 3 skipped" in out and "of 3 listed" in out
    assert "bike tag: text subtitles: 3 videos read, 2 spans, 0 error, 0 skipped" in out
    assert "bike tag: compact: merged 3 batches into 1" in out   # 3 BIKE + 1 subtitle batch > 3
    s = Store(store)
    assert sorted(c["model_id"].startswith("text:") for c in s.commits()) == [False, True]
    assert "text index" in out

    assert bike([*tag, "--compact-at", "3"]) == 0                 # nothing new anywhere: no work, no write
    captured = capsys.readouterr()
    assert "bike tag: text subtitles: 0 videos read, 0 spans, 0 error, 3 skipped" in captured.out
    assert "reading" not in captured.err and "compact" not in captured.out
    assert len(Store(store).commits()) == 2


def test_bike_index_rebuilds_the_text_index(tmp_path, tiny_model, capsys):
    """`bike index` brings the BM25 text index up to date (the searcher's note says to run it when the index is
    missing or stale), next to the FAISS one; a second run has nothing to do."""
    store = Store(tmp_path / "store", create=True)
    rng = np.random.default_rng(1)
    labels = engine.load_labels("ucf101")
    videos = []
    for name in ("alpha", "bravo"):
        path = make_video(tmp_path / f"{name}.mp4", seconds=1, size=(64 + 16 * (name == "bravo"), 48))
        (tmp_path / f"{name}.srt").write_text(f"1\n00:00:02,000 --> 00:00:03,000\nthe {name} word here\n\n")
        add_video(store, tiny_model, labels, f"vid_{name}", random_clips(rng, 2, 8, tiny_model.embed_dim),
                  path=str(path))
        videos.append((str(path), f"vid_{name}"))
    run_text_stage(store, videos[:1], TextOptions())
    idx, notes = open_text_index(Store(store.root))
    assert len(idx) == 1 and "missing" in notes[0] and "bike index" in notes[0]
    assert bike(["index", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "bike: text index rebuilt over 1 spans of 1 batches" in out and "clips" in out
    assert open_text_index(Store(store.root))[1] == []

    run_text_stage(store, videos[1:], TextOptions())                 # a new transcripts batch: stale
    assert "stale" in open_text_index(Store(store.root))[1][0]
    assert bike(["index", "--store", str(store.root), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "text index rebuilt over 2 spans" in captured.err and json.loads(captured.out)
    idx, notes = open_text_index(Store(store.root))
    assert notes == [] and [h.video_id for h in idx.search("bravo", k=1)] == ["vid_bravo"]
    assert bike(["index", "--store", str(store.root)]) == 0
    assert "bike: text index up to date" in capsys.readouterr().out


def test_text_channels_read_objects_with_ranged_gets(tmp_path):
    """An s3:// video (real moto S3 server): its embedded subtitles and its audio are read through
    engine.sources.ranged.RemoteSource, once BIKE knows its content id (remembered by ETag, as a decode task would); an
    object with no known id is left out, a vanished one is an error of that video only."""
    from index.store.ids import video_id
    from engine.sources import remote
    from index.store.remoteids import RemoteIds
    from jobs.tag.textstage import local_videos
    from s3server import moto_s3
    src = tmp_path / "in.srt"
    src.write_text(SRT)
    local = tmp_path / "talk.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "color=c=black:size=64x48:rate=10:duration=5", "-f", "lavfi", "-i",
               "anullsrc=r=16000:cl=mono", "-i", src, "-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:v", "libx264",
               "-c:a", "aac", "-c:s", "mov_text", "-t", "5", local)
    with moto_s3("textbucket") as s3:
        s3["client"].upload_file(str(local), "textbucket", "v/talk.mp4")
        s3["client"].upload_file(str(local), "textbucket", "v/gone.mp4")
        s3["client"].put_object(Bucket="textbucket", Key="v/talk.srt", Body=b"1\n00:00:00,000 --> 00:00:01,000\nx\n")
        url, gone = "s3://textbucket/v/talk.mp4", "s3://textbucket/v/gone.mp4"
        store = Store(tmp_path / "store", create=True)
        assert local_videos(store, [url]) == []                       # not read by BIKE yet: no content id
        ids = RemoteIds(store)
        for u in (url, gone):
            info = remote._info(u)
            ids.remember(u, info["size"], remote._identity(info), video_id(str(local)) + u[-8:-4])
        ids.save()
        videos = local_videos(store, [url, gone])
        assert [p for p, _ in videos] == [url, gone]
        s3["client"].delete_object(Bucket="textbucket", Key="v/gone.mp4")
        subs_, speech = run_text_stage(store, videos, TextOptions(channels=("subtitles", "asr")))
    assert (subs_.done, subs_.error, speech.done, speech.error) == (1, 1, 1, 1)
    assert "gone.mp4" in subs_.errors[0][0] and "\n" not in subs_.errors[0][1]
    rows = store.connect().execute("SELECT start_s, end_s, text, path FROM transcripts ORDER BY start_s").fetchall()
    assert rows == [(1.0, 2.5, "Hello world", url), (3.2, 4.0, "Quarterly budget second line", url)]  # no sidecar
    assert store.done_videos(channel_id("asr"))[videos[0][1]] == "ok"
