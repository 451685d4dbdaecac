"""CPU decodes and NVDEC decodes side by side (jobs/tag/slots.py, jobs/tag/rayrunner.py; docs/decoding.md).

The slot accounting and the decoder names are plain functions. The pipeline is tested on a real local Ray
that declares 2 ``NVDEC`` units on this CPU host: legitimate for placement (Ray schedules on the resource, not
on the hardware), while the nvdec backend itself cannot run here, so those decodes fall back to the CPU
decoder (said once in the worker's log) and must give exactly what a CPU-only run gives. Each Ray runs in its
own subprocess (the session's shared Ray has no NVDEC resource).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.video import available, get_decoder
from engine.video.base import AUTO_CPU
from index.store import Store
from jobs.errors import UsageError
from jobs.tag.slots import DecodeSlots, pool_sizes, slot_decoder
from jobs.tag.stages import DecodeStage, NvdecDecodeStage
from media import make_video

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]
LABELS = "dog,cat,surfing,cooking,playing guitar"


# ---- slot accounting -------------------------------------------------------------------------------------
CPU, NVDEC = DecodeStage.pool, NvdecDecodeStage.pool


def test_pools_per_decoder_choice():
    both, no_nvdec = {CPU: 4, NVDEC: 7}, {CPU: 4}
    assert pool_sizes(None, both) == pool_sizes("auto", both) == {NVDEC: 7, CPU: 4}
    assert pool_sizes("auto", no_nvdec) == {NVDEC: 0, CPU: 4}
    assert pool_sizes("pyav", both) == pool_sizes("ffmpeg", both) == {NVDEC: 0, CPU: 4}
    assert pool_sizes("nvdec", both) == {NVDEC: 7, CPU: 0}
    with pytest.raises(UsageError, match="--decoder nvdec: the Ray cluster has no NVDEC resource"):
        pool_sizes("nvdec", no_nvdec)


def test_slot_decoders():
    assert slot_decoder(NVDEC, 3, None) == slot_decoder(NVDEC, 3, "nvdec") == "nvdec:3"
    assert slot_decoder(CPU, 0, None) == slot_decoder(CPU, 0, "auto") == AUTO_CPU
    assert slot_decoder(CPU, 1, "ffmpeg") == "ffmpeg" and slot_decoder(CPU, 1, "pyav") == "pyav"


def test_slots_fill_nvdec_first_and_come_back():
    s = DecodeSlots({CPU: 2, NVDEC: 3})
    assert s.total == 5
    taken = [s.take() for _ in range(5)]
    assert taken == [(NVDEC, 0), (NVDEC, 1), (NVDEC, 2), (CPU, 0), (CPU, 1)]
    assert s.take() is None and s.busy() == 5
    s.give(CPU, 0)
    assert s.take() == (CPU, 0)                       # only a CPU slot is free
    s.give(NVDEC, 1)
    s.give(CPU, 1)
    assert s.take() == (NVDEC, 1)                     # both free: NVDEC first
    assert s.busy(NVDEC) == 3 and s.busy(CPU) == 1
    with pytest.raises(ValueError):
        s.give(CPU, 1)                                # already free
    with pytest.raises(ValueError):
        s.give(NVDEC, 7)                              # no such slot


def test_decoder_names_of_the_slots():
    assert get_decoder(AUTO_CPU).device == "cpu"
    assert get_decoder("pyav:5").name == "pyav"
    with pytest.raises(ValueError):
        get_decoder("nvdec:x")
    if available()["nvdec"] is None:
        dec = get_decoder("nvdec:9")
        assert dec.name == "nvdec" and dec.gpu is not None
    else:                                             # no nvdec here: the CPU backend instead
        assert get_decoder("nvdec:1").device == "cpu"


# ---- the pipeline on a real Ray with NVDEC units -----------------------------------------------------------
DRIVER = r"""
import contextlib, io, json, sys
import ray
spec = json.loads(sys.argv[1])
ray.init(address="local", num_cpus=2, resources=spec["resources"], include_dashboard=False, log_to_driver=False,
         runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
import jobs.cli
out = []
for argv in spec["runs"]:
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        rc = jobs.cli.main(argv)
    out.append({"rc": rc, "stdout": o.getvalue(), "stderr": e.getvalue()})
print(json.dumps(out))
"""


def _ray_runs(resources: dict, runs: list) -> list:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HF_HUB_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    for k in ("RAY_ADDRESS", "BIKE_DECODER", "BIKE_SAMPLING"):
        env.pop(k, None)
    res = subprocess.run([sys.executable, "-c", DRIVER, json.dumps({"resources": resources, "runs": runs})],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _tag(videos, store, *extra) -> list:
    return ["tag", *map(str, videos), "--store", str(store), "--labels", LABELS, *TINY, "--no-index",
            "--no-progress", "--format", "json", "--runner", "ray", *extra]     # the Ray slots are the subject


def _rows(store):
    con = Store(store).connect()
    try:
        labels = con.execute("SELECT v.path, l.rank, l.label, l.score, l.video_score FROM labels l JOIN clips c "
                             "USING (clip_id) JOIN videos v ON c.video_id = v.video_id ORDER BY 1, c.start_s, 2"
                             ).fetchall()
        videos = con.execute("SELECT path, status, num_clips FROM videos ORDER BY 1").fetchall()
    finally:
        con.close()
    return labels, videos


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("slots")
    videos = []
    for i in range(6):
        p = root / f"v{i}.mp4"
        make_video(p, seconds=3 + i, fps=10, size=(96, 64), pattern="testsrc")
        videos.append(p)
    return root, videos


def test_cpu_and_nvdec_slots_side_by_side_give_the_cpu_only_results(corpus):
    root, videos = corpus
    with_nvdec, cpu_only = root / "with_nvdec", root / "cpu_only"
    a = _ray_runs({"NVDEC": 2}, [_tag(videos, with_nvdec), _tag(videos[:2], root / "pyav_only", "--decoder", "pyav")])
    b = _ray_runs({}, [_tag(videos, cpu_only), _tag(videos[:1], root / "none", "--decoder", "nvdec")])
    for run in a + b[:1]:
        assert run["rc"] == 0, run["stderr"][-2000:]

    # 2 CPUs: 2 CPU slots beside the 2 NVDEC slots; the first four videos fill all four at once
    assert "decoders: 2 cpu (pyav) + 2 nvdec" in a[0]["stderr"]
    summary = json.loads(a[0]["stdout"])
    assert summary["ok"] == 6
    # each task says which resource it held; with no NVDEC hardware the nvdec backend fell back to pyav
    per_pool = dict(part.split(" on ") [::-1] for part in summary["decodes"].split(", "))
    assert set(per_pool) == {"cpu slots (pyav)", "nvdec slots (pyav)"}, summary["decodes"]
    assert int(per_pool["nvdec slots (pyav)"]) >= 2 and int(per_pool["cpu slots (pyav)"]) >= 2
    assert sum(map(int, per_pool.values())) == 6

    # --decoder pyav: CPU slots only, even where NVDEC units exist
    assert "decoders: 2 cpu (pyav)\n" in a[1]["stderr"]
    assert json.loads(a[1]["stdout"])["decodes"] == "2 on cpu slots (pyav)"

    # no NVDEC resource: the CPU slots as before, and --decoder nvdec is a usage error
    assert "+ 2 nvdec" not in b[0]["stderr"] and "decoders: 2 cpu (pyav)" in b[0]["stderr"]
    assert json.loads(b[0]["stdout"])["decodes"] == "6 on cpu slots (pyav)"
    assert b[1]["rc"] == 2 and "--decoder nvdec: the Ray cluster has no NVDEC resource" in b[1]["stderr"]

    # the same rows as the CPU-only run (same frames; scores up to batch-composition rounding)
    (la, va), (lb, vb) = _rows(with_nvdec), _rows(cpu_only)
    assert va == vb and len(va) == 6 and all(r[1] == "ok" for r in va)
    assert [r[:3] for r in la] == [r[:3] for r in lb] and la
    np.testing.assert_allclose([r[3:] for r in la], [r[3:] for r in lb], atol=1e-4)
