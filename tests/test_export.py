"""``bike export``: a stored clip cut out of its real video (stream copy from a keyframe, or frame-exact
re-encode), a query's results as files, contact sheets; checked by decoding what was written.

The videos are "numbered" (each frame's colour encodes its number, tests/media.py), so which frames a file
holds is read back from the pixels, independently of the timestamps the exporter reports."""
from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
from PIL import Image

import engine
import jobs.cli
from engine.video import VideoError
from engine.video.export import export_span
from index.store.ids import video_id as content_id
from index.store.schema import clip_id
from index.store import Store
from jobs.serve.export import ExportError, contact_sheet, export_clip, export_results, result_name
from media import frame_number, make_video
from searchstore import add_video

FPS = 10


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model, labels):
    """A store with one 20-s numbered video with audio (keyframes every 3 s), tagged as two 10-s clips."""
    root = tmp_path_factory.mktemp("export")
    path = make_video(root / "numbered.mp4", seconds=20, fps=FPS, size=(64, 48), audio=True,
                      extra=("-g", "30", "-keyint_min", "30", "-sc_threshold", "0"))
    store = Store(root / "store", create=True)
    vid = content_id(str(path))
    rng = np.random.default_rng(0)
    clips = [np.asarray(rng.standard_normal((8, tiny_model.embed_dim)), np.float32) for _ in range(2)]
    mid = add_video(store, tiny_model, labels, vid, clips, path=str(path), duration_s=20.0,
                    size=os.path.getsize(path))
    return store, mid, vid, path


def decoded(path) -> "tuple[list[int], list[float], list[str]]":
    """(frame numbers read from the pixels, frame times, stream types) of an exported file."""
    with av.open(str(path)) as c:
        kinds = [s.type for s in c.streams]
        numbers, times = [], []
        for f in c.decode(video=0):
            numbers.append(frame_number(f.to_ndarray(format="rgb24")))
            times.append(float(f.pts * f.time_base))
    return numbers, times, kinds


def test_fast_export_copies_from_the_keyframe_before_the_clip(corpus, tmp_path):
    store, mid, vid, _ = corpus
    out = tmp_path / "clip.mp4"
    rep = export_clip(store, clip_id(vid, 1), out)              # clip 1: 10–20 s; keyframes at 0, 3, 6, 9, ...
    numbers, _, kinds = decoded(out)
    assert rep.exact is False and rep.start_s == pytest.approx(9.0) and rep.early_s == pytest.approx(1.0)
    assert numbers[0] == 90 and numbers == list(range(90, 90 + len(numbers)))   # whole GOPs, in order
    assert numbers[-1] >= 199                                     # to the end of the clip (end of the video)
    assert kinds == ["video", "audio"] and rep.audio


def test_exact_export_is_frame_exact_with_padding(corpus, tmp_path):
    store, mid, vid, _ = corpus
    out = tmp_path / "exact.mp4"
    rep = export_clip(store, clip_id(vid, 0), out, pad_s=0.5, exact=True)   # 0–10 s ± 0.5 → 0–10.5 s
    numbers, times, kinds = decoded(out)
    assert numbers == list(range(0, 105))                         # frames 0..104: t in [0, 10.5)
    assert times[0] == pytest.approx(0.0) and rep.early_s == 0 and rep.video_frames == 105
    assert kinds == ["video", "audio"]
    rep = export_span(str(corpus[3]), 4.25, 6.0, tmp_path / "mid.mp4", exact=True)
    numbers, times, _ = decoded(tmp_path / "mid.mp4")
    assert numbers == list(range(43, 60)) and times[0] == pytest.approx(0.0)   # 4.3 s is the first frame ≥ 4.25


def test_cli_export_clip_json_and_errors(corpus, tmp_path, capsys):
    store, mid, vid, _ = corpus
    out = tmp_path / "c.mp4"
    assert jobs.cli.main(["export", "--store", str(store.root), clip_id(vid, 1), "--out", str(out),
                          "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = doc[0] if isinstance(doc, list) else doc
    assert row["start_s"] == pytest.approx(9.0) and row["early_s"] == pytest.approx(1.0) and out.stat().st_size > 0
    # an existing file is kept unless --force
    assert jobs.cli.main(["export", "--store", str(store.root), clip_id(vid, 1), "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    # an unknown clip, a wrong suffix: one line each, exit 2, nothing written
    assert jobs.cli.main(["export", "--store", str(store.root), "nope/3", "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bike: error:") and "no such clip" in err and err.count("\n") == 1
    assert jobs.cli.main(["export", "--store", str(store.root), clip_id(vid, 0), "--out", str(tmp_path / "x.avi")]) == 2
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.avi").exists()


def test_changed_source_file_is_refused(corpus, tmp_path, tiny_model, labels):
    store, mid, vid, path = corpus
    other = make_video(tmp_path / "v.mp4", seconds=4, fps=FPS)
    root = tmp_path / "s2"
    s2 = Store(root, create=True)
    rng = np.random.default_rng(1)
    add_video(s2, tiny_model, labels, "vid000000001", [rng.standard_normal((8, tiny_model.embed_dim)).astype(np.float32)],
              path=str(other), duration_s=4.0, size=os.path.getsize(other) + 1)      # recorded size differs
    with pytest.raises(ExportError, match="changed since it was tagged"):
        export_clip(s2, clip_id("vid000000001", 0), tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_span_errors_name_the_file(corpus, tmp_path):
    path = str(corpus[3])
    with pytest.raises(VideoError, match="empty"):
        export_span(path, 5.0, 5.0, tmp_path / "e.mp4")
    with pytest.raises(VideoError, match="no video frame"):
        export_span(path, 30.0, 40.0, tmp_path / "e.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(VideoError) as e:
        export_span(str(junk), 0, 1, tmp_path / "e.mp4")
    assert e.value.path == str(junk)
    assert not (tmp_path / "e.mp4").exists() and not list(tmp_path.glob(".e.mp4*"))   # no half file left


def test_query_results_one_file_each(corpus, tmp_path, tiny_model):
    from index.search.search import Searcher
    store, mid, vid, _ = corpus
    res = Searcher(store, mid, model=tiny_model).search("a dog", k=2)
    done = export_results(res, tmp_path / "found", store=store)
    assert len(done) == 2 and all(err is None for _, _, err in done)
    names = sorted(p.name for p in (tmp_path / "found").iterdir())
    assert names == sorted(result_name(r.path, r.start_s, r.end_s, r.rank) for r in res)
    assert all(n.endswith(".mp4") and "numbered" in n for n in names)


def test_result_names_are_safe():
    assert result_name("/x/a b;rm -rf.mp4", 1.5, 3.0, 2) == "02_a_b_rm_-rf_0001.50-0003.00.mp4"
    assert result_name("s3://bucket/../..", 0, 1, 1).startswith("01_video_")


def test_contact_sheet(corpus, tmp_path):
    store, mid, vid, _ = corpus
    out, n = contact_sheet(store, vid, tmp_path / "sheet.png", width=64, columns=5)
    assert n == 2
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[1] == 2 * 68 + 4                                # two tiles side by side
    tile0, tile1 = img[4:4 + 48, 4:4 + 64], img[4:4 + 48, 72:72 + 64]
    assert frame_number(tile0[8:40, 8:56]) == 0 and frame_number(tile1[8:40, 8:56]) == 100


def test_contact_sheet_one_per_shot_when_shots_are_stored(tmp_path, tiny_model, labels):
    """With a shots table (bike tag --windows shots) the sheet shows each shot's first frame, not each clip's."""
    import pyarrow as pa
    from index.store.schema import TABLES
    path = make_video(tmp_path / "numbered.mp4", seconds=20, fps=FPS, size=(64, 48))
    store = Store(tmp_path / "store", create=True)
    vid = content_id(str(path))
    rng = np.random.default_rng(0)
    mid = add_video(store, tiny_model, labels, vid, [rng.standard_normal((8, tiny_model.embed_dim)).astype(np.float32)
                                                     for _ in range(2)], path=str(path), duration_s=20.0,
                    size=os.path.getsize(path))
    shots = pa.Table.from_pylist([{"video_id": vid, "shot": i, "start_s": s, "end_s": e, "detector": "test",
                                   "version": "1", "model_id": mid}
                                  for i, (s, e) in enumerate([(0.0, 7.3), (7.3, 14.0), (14.0, 20.0)])],
                                 schema=TABLES["shots"])
    with store.lock():
        store.write_batch({"shots": shots}, mid, {})
    out, n = contact_sheet(Store(store.root), vid, tmp_path / "sheet.png", width=64, columns=5)
    img = np.asarray(Image.open(out).convert("RGB"))
    tiles = [img[4:4 + 48, 4 + i * 68: 4 + i * 68 + 64][8:40, 8:56] for i in range(3)]
    assert n == 3 and [frame_number(t) for t in tiles] == [0, 73, 140]


def test_serve_save_clip(corpus, tiny_model, tmp_path):
    """GET /api/clips/{id}/export.mp4: the clip as a download (stream copy), cached, bounded, 404 for no clip."""
    from fastapi.testclient import TestClient

    from index.search.search import Searcher
    from jobs.serve.app import create_app
    from jobs.serve.limits import Limits
    from jobs.serve.service import Service
    store, mid, vid, _ = corpus
    svc = Service(store, searcher=Searcher(store, mid, model=tiny_model), limits=Limits(export_max_pad_s=5))
    c = TestClient(create_app(svc), base_url="http://127.0.0.1:8765")
    r = c.get(f"/api/clips/{vid}/1/export.mp4", params={"pad": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert "attachment" in r.headers["content-disposition"] and "numbered" in r.headers["content-disposition"]
    got = tmp_path / "saved.mp4"
    got.write_bytes(r.content)
    numbers, _, kinds = decoded(got)
    assert numbers[0] == 90 and numbers[-1] >= 199 and kinds == ["video", "audio"]   # 9–20 s: keyframe at 9
    assert len(list(svc.export_cache.folder.glob("*.mp4"))) == 1
    assert c.get(f"/api/clips/{vid}/1/export.mp4", params={"pad": 1}).content == r.content      # from the cache
    assert c.get(f"/api/clips/{vid}/1/export.mp4", params={"pad": 6}).status_code == 400         # over the bound
    assert c.get(f"/api/clips/{vid}/7/export.mp4").status_code == 404
    assert c.get("/api/clips/..%2F..%2Fetc/1/export.mp4").status_code == 404
