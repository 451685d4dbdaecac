"""The synthetic action videos and the list-file / clip-loading layer used for training and evaluation."""
import numpy as np
import pytest

from engine.model.labels import load_labels
from engine.video import probe, read_video
from jobs.train import datasets as ds
from jobs.errors import UsageError
from bench.synthetic import (BLINK_CLASS, EMPTY_CLASS, VideoSpec, _scene, make_dataset, render, write_labels,
                            write_list)


def _centre_x(frame, seed):
    shape = np.abs(frame.astype(int) - _scene(64, np.random.default_rng(seed))).max(-1) > 30   # not the background
    return np.nonzero(shape)[1].mean()


def test_left_is_right_reversed_in_distribution_and_blink_is_confined():
    spec = VideoSpec(size=64, fps=8, seconds=2.0)
    left = render("moving left", spec, np.random.default_rng(0))
    right = render("moving right", spec, np.random.default_rng(0))
    assert left.shape == (16, 64, 64, 3)
    assert _centre_x(left[0], 0) > _centre_x(left[-1], 0) + 15          # moves left
    assert _centre_x(right[0], 0) < _centre_x(right[-1], 0) - 15        # moves right
    assert np.array_equal(left, right[::-1])                            # same frames, reversed order
    blink = render(BLINK_CLASS, spec, np.random.default_rng(1))
    empty = render(EMPTY_CLASS, spec, np.random.default_rng(1))
    visible = [bool((np.abs(f.astype(int) - e).max(-1) > 30).any()) for f, e in zip(blink, empty)]
    assert visible == [6 <= k < 10 for k in range(16)]                  # segments 3-4 of 8
    assert (empty == empty[0]).all()                                    # nothing happens


def test_written_videos_decode_and_lists_parse(tmp_path):
    names = ["moving up", "growing"]
    entries = make_dataset(str(tmp_path / "v"), names, per_class=2, seed=0, spec=VideoSpec(size=48, fps=8, seconds=1))
    info = probe(entries[0][0])
    assert (info.width, info.height, info.num_frames) == (48, 48, 8) and info.codec == "h264"
    labels = load_labels(write_labels(str(tmp_path / "labels.csv"), names))
    samples = ds.parse_list(write_list(str(tmp_path / "list.txt"), entries, names), labels)
    assert [s.label for s in samples] == [0, 0, 1, 1]
    reader = ds.FrameReader(resize=64)
    clip = ds.train_clip(reader, samples[0], 4, np.random.default_rng(0))
    assert clip.shape == (4, 224, 224, 3)
    views = ds.eval_views(reader, samples[0], 4, clips=2, crops=3)
    assert views.shape == (6, 4, 224, 224, 3)
    # the cached whole-video path and the select-filter path give the same frames
    direct = ds.FrameReader(resize=64, cache_bytes=0).frames(samples[1], [0, 3, 3, 7])
    assert np.array_equal(direct, reader.frames(samples[1], [0, 3, 3, 7]))
    assert np.array_equal(views, read_video(samples[0].path, frames=4, clips=2, crops=3).frames)


def test_list_errors_name_file_and_line(tmp_path):
    labels = load_labels("a,b")
    video = tmp_path / "x.mp4"
    video.write_bytes(b"0")
    (tmp_path / "frames").mkdir()
    cases = {
        f"{video} c\n": "unknown label 'c'",
        f"{video} 7\n": "label id 7 is out of range",
        f"{video}\n": "expected 'path label'",
        f"{tmp_path}/missing.mp4 a\n": "file not found",
        f"{tmp_path}/frames a\n": "expected 'dir num_frames label'",
    }
    for text, reason in cases.items():
        lst = tmp_path / "list.txt"
        lst.write_text("# comment\n\n" + text)
        with pytest.raises(UsageError, match=rf"list.txt:3: .*{reason}"):
            ds.parse_list(str(lst), labels)
    lst.write_text(f"{video} a,b\nx.mp4 1\n{tmp_path}/frames 12 b\n")
    s = ds.parse_list(str(lst), labels, multilabel=True)
    assert s[0].labels == (0, 1) and s[1].path == str(video) and s[2].num_frames == 12 and s[2].label == 1


def test_frame_folders(tmp_path):
    from PIL import Image
    folder = tmp_path / "clip"
    folder.mkdir()
    for k in range(10):
        Image.fromarray(np.full((40, 60, 3), 20 * k, np.uint8)).save(folder / f"img_{k + 1:05d}.jpg")
    labels = load_labels("a,b")
    lst = tmp_path / "list.txt"
    lst.write_text("clip 10 b\n")
    s = ds.parse_list(str(lst), labels)[0]
    reader = ds.FrameReader()
    frames = reader.frames(s, [0, 9])
    assert frames.shape == (2, 40, 60, 3) and abs(int(frames[1].mean()) - 180) <= 2
    assert ds.eval_views(reader, s, 5, clips=1, crops=3).shape == (3, 5, 224, 224, 3)


def test_holdout_and_few_shot_are_seeded_and_stratified():
    samples = [ds.Sample(f"v{i}", (i % 3,)) for i in range(30)]
    train, held = ds.split_holdout(samples, 0.2, seed=0)
    assert len(held) == 6 and sorted(s.label for s in held) == [0, 0, 1, 1, 2, 2]
    assert ds.split_holdout(samples, 0.2, seed=0) == (train, held)
    shots = ds.few_shot(samples, 2, seed=0)
    assert sorted(s.label for s in shots) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(UsageError, match="fewer than --shots 11"):
        ds.few_shot(samples, 11)
