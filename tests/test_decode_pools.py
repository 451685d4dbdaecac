"""The decode pools follow from the decode stages' declarations (jobs/tag/stages.py ``register_decode_stage``).

A decoder on made-up hardware is defined here, in this file only: ``FakeDecodeStage`` declares one unit of the
custom Ray resource ``FAKEDEC``, and its slots run ``pyav:N`` (a CPU backend standing in for the hardware).
Registered, it gets one slot per ``FAKEDEC`` unit of the cluster, without a line of jobs/tag/slots.py,
raycluster.py or rayrunner.py naming it. The pipeline test runs ``bike tag`` on a real local Ray that declares
``{"FAKEDEC": 2}`` (in a subprocess: the session's shared Ray has no custom resource) and checks that the
decodes ran in that pool, holding the resource, and gave the CPU pool's rows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jobs.cli

from index.store import Store
from jobs.errors import UsageError
from jobs.tag.raycluster import plan_resources
from jobs.tag.slots import DecodeSlots, held_pool, pool_order, pool_sizes, slot_decoder
from jobs.tag.stages import (DECODE_MEMORY_MB, DECODE_STAGES, DecodeStage, StageResources, decode_stages,
                             register_decode_stage)
from jobs.tag.tasks import DecodeSpec
from media import make_video

ROOT = Path(__file__).resolve().parents[1]


class FakeDecodeStage(DecodeStage):
    """A decoder on other hardware: its pool, its resource, its preference, the backend a slot runs."""
    pool = backend = "fakedec"
    preference = 20                                   # before NVDEC and the CPUs under --decoder auto
    resources = StageResources(cpus=0.25, custom=(("FAKEDEC", 1),), memory_mb=DECODE_MEMORY_MB)

    @classmethod
    def slot_decoder(cls, slot: int, decoder: "str | None") -> str:
        return f"pyav:{slot}"


@pytest.fixture
def fake_registered(monkeypatch):
    """FakeDecodeStage registered for one test (and removed after it)."""
    monkeypatch.setitem(DECODE_STAGES, FakeDecodeStage.pool, FakeDecodeStage)
    # register_decode_stage itself: the same entry (monkeypatch restores the registry afterwards)
    assert register_decode_stage(FakeDecodeStage) is FakeDecodeStage
    return FakeDecodeStage


def test_a_registered_stage_declares_its_pool(fake_registered):
    assert pool_order() == ("fakedec", "nvdec", "cpu")
    # the cluster's slots read by the resource name it declares, its CPU share at most what it declares
    r = plan_resources(2, 0, units={"CPU": 2.0, "FAKEDEC": 2.0, "memory": 1e9})
    assert r.slots() == {"cpu": r.decoders, "fakedec": 2}
    assert 0 < r.pool_task_cpus["fakedec"] <= 0.25
    assert r.actors * r.actor_cpus + r.decoders * r.decode_cpus + 2 * r.pool_task_cpus["fakedec"] <= 2 + 1e-9
    # auto: every pool; a CPU backend: the CPU slots; its own backend: its slots only (or a usage error)
    assert pool_sizes("auto", r.slots()) == {"fakedec": 2, "nvdec": 0, "cpu": r.decoders}
    assert pool_sizes("pyav", r.slots()) == {"fakedec": 0, "nvdec": 0, "cpu": r.decoders}
    assert pool_sizes("fakedec", r.slots()) == {"fakedec": 2, "nvdec": 0, "cpu": 0}
    with pytest.raises(UsageError, match="--decoder fakedec: the Ray cluster has no FAKEDEC resource"):
        pool_sizes("fakedec", {"cpu": 2})
    assert slot_decoder("fakedec", 1, None) == "pyav:1"
    assert slot_decoder("cpu", 0, "fakedec") == slot_decoder("cpu", 0, None)      # not a CPU backend
    # its slots are taken first; a task that held FAKEDEC is counted in its pool
    s = DecodeSlots(pool_sizes("auto", {"cpu": 1, "fakedec": 2}))
    assert [s.take() for _ in range(4)] == [("fakedec", 0), ("fakedec", 1), ("cpu", 0), None]
    assert held_pool((("CPU", 0.25), ("FAKEDEC", 1.0))) == "fakedec" and held_pool((("CPU", 0.5),)) == "cpu"
    # its stage, with the cluster's CPU share, asks Ray for one FAKEDEC unit
    stage = decode_stages(DecodeSpec(), r.pool_cpus())["fakedec"]
    assert type(stage) is FakeDecodeStage
    assert stage.resources.ray_options()["resources"] == {"FAKEDEC": 1}


def test_unregistered_it_is_no_pool():
    assert "fakedec" not in pool_order()
    assert plan_resources(2, 0, units={"FAKEDEC": 2}).slots() == {"cpu": 2}


# ---- the pipeline on a real Ray with FAKEDEC units -------------------------------------------------------
DRIVER = r"""
import contextlib, io, json, sys
import ray
from jobs.tag.stages import register_decode_stage
from test_decode_pools import FakeDecodeStage
register_decode_stage(FakeDecodeStage)                # the one line a new kind of decode slot takes
spec = json.loads(sys.argv[1])
ray.init(address="local", num_cpus=2, resources={"FAKEDEC": 2}, include_dashboard=False, log_to_driver=False,
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
LABELS = "dog,cat,surfing,cooking,playing guitar"


def _tag(videos, store, *extra) -> list:
    return ["tag", *map(str, videos), "--store", str(store), "--labels", LABELS, "--model", "bike-tiny",
            "--random-init", "--lexicon", "hmdb51", "--no-index", "--no-progress", "--format", "json",
            "--runner", "ray", *extra]


def _rows(store):
    con = Store(store).connect()
    try:
        labels = con.execute("SELECT v.path, l.rank, l.label, l.score FROM labels l JOIN clips c USING (clip_id) "
                             "JOIN videos v ON c.video_id = v.video_id ORDER BY 1, c.start_s, 2").fetchall()
        videos = con.execute("SELECT path, status, num_clips FROM videos ORDER BY 1").fetchall()
    finally:
        con.close()
    return labels, videos


def test_a_registered_stage_gets_its_pool_on_ray_and_decodes_there(tmp_path, capsys):
    videos = [make_video(tmp_path / f"v{i}.mp4", seconds=2 + i, fps=10, size=(96, 64), pattern="testsrc")
              for i in range(3)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HF_HUB_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    for k in ("RAY_ADDRESS", "BIKE_DECODER", "BIKE_SAMPLING"):
        env.pop(k, None)
    res = subprocess.run([sys.executable, "-c", DRIVER, json.dumps({"runs": [_tag(videos, tmp_path / "fake")]})],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    fake, = json.loads(res.stdout.strip().splitlines()[-1])
    assert fake["rc"] == 0, fake["stderr"][-2000:]

    # 2 FAKEDEC units: 2 slots beside the 2 CPU slots, taken first; each decode says the resource it held
    assert "decoders: 2 cpu (pyav) + 2 fakedec" in fake["stderr"], fake["stderr"]
    per_pool = dict(p.split(" on ")[::-1] for p in json.loads(fake["stdout"])["decodes"].split(", "))
    assert int(per_pool["fakedec slots (pyav)"]) >= 2 and sum(map(int, per_pool.values())) == 3, per_pool

    # the same rows as a CPU decode's (the local runner's CPU DecodeStage, in this process: the Ray CPU pool
    # gives the local runner's rows, tests/test_stages.py)
    argv = _tag(videos, tmp_path / "cpu", "--decoder", "pyav")
    assert jobs.cli.main(argv[:argv.index("--runner")] + ["--runner", "local", "--decoder", "pyav"]) == 0
    capsys.readouterr()
    (la, va), (lb, vb) = _rows(tmp_path / "fake"), _rows(tmp_path / "cpu")
    assert va == vb and len(va) == 3 and all(r[1] == "ok" for r in va)
    assert [r[:3] for r in la] == [r[:3] for r in lb] and la
    np.testing.assert_allclose([r[3] for r in la], [r[3] for r in lb], atol=1e-4)
