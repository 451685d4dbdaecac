"""The stage contract of ``bike tag`` (jobs/tag/stages.py, jobs/tag/runner.py, jobs/tag/rayrunner.py; issue 19).

A stage declares its resources and those reach Ray's options (checked on a real local Ray: what the decode task
held); the local runner and the Ray runner, over the same stage objects, give the same results on the same
videos; the score stage's model loads where the stage runs (the actor), not in the driver.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.model.labels import load_labels
from jobs.tag.raycluster import Resources
from jobs.tag.stages import (DECODE_MEMORY_MB, DecodeStage, NvdecDecodeStage, ScoreStage, StageResources,
                             WriteStage)
from jobs.tag.tasks import Chunk, DecodeSpec, DecodeTask, End, Head
from tests.media import make_video

MODEL = {"name": "bike-tiny", "random_init": True, "lexicon": "hmdb51"}
SPEC = DecodeSpec(frames=4, window_s=1.0, size=32, resize=36, chunk_clips=2, timeout_s=60.0, threads=1,
                  decoder="pyav")


def test_declared_resources_make_the_ray_options():
    assert StageResources(cpus=0.5).ray_options() == {"num_cpus": 0.5}
    assert StageResources(cpus=1, gpus=1).ray_options() == {"num_cpus": 1, "num_gpus": 1}
    assert NvdecDecodeStage(SPEC).resources.ray_options() == {
        "num_cpus": 0.25, "resources": {"NVDEC": 1}, "memory": DECODE_MEMORY_MB * 2**20}
    cpu = DecodeStage(SPEC, cpus=0.5)                      # the cluster's share per decode replaces the CPUs only
    assert cpu.resources == StageResources(cpus=0.5, memory_mb=DECODE_MEMORY_MB)
    assert ScoreStage(MODEL, "dog,cat", cpus=0.5, gpus=1).resources.ray_options() == {"num_cpus": 0.5, "num_gpus": 1}
    assert WriteStage(None, "m").resources.cpus == 0                # on the driver


def test_a_decode_stage_yields_typed_messages(tmp_path):
    video = make_video(tmp_path / "a.mp4", seconds=2.0)
    stage = DecodeStage(SPEC)
    stage.setup()
    msgs = list(stage.process(DecodeTask("v", str(video))))
    assert isinstance(msgs[0], Head) and msgs[0].info is not None
    assert isinstance(msgs[1], Chunk) and len(msgs[1].spans) == 2
    assert isinstance(msgs[2], np.ndarray) and msgs[2].shape == (2, 4, 32, 32, 3)
    assert isinstance(msgs[-1], End) and msgs[-1].error is None and msgs[-1].clips == 2 and msgs[-1].held == ()
    assert not any(isinstance(m, dict) for m in msgs)
    bad = list(stage.process(DecodeTask("x", str(tmp_path / "missing.mp4"))))
    assert isinstance(bad[-1], End) and bad[-1].error


def test_the_decode_task_holds_what_its_stage_declares(ray_cluster, tmp_path):
    from jobs.tag.rayrunner import RayRunner
    video = make_video(tmp_path / "a.mp4", seconds=1.0)
    stage = DecodeStage(SPEC, cpus=0.5)
    end = [m for m in ray_cluster.get(list(RayRunner._submit(stage, DecodeTask("v", str(video)))))
           if isinstance(m, End)][-1]
    held = dict(end.held)
    assert end.error is None and held["CPU"] == 0.5
    assert held["memory"] == DECODE_MEMORY_MB * 2**20


def _videos(tmp_path):
    make_video(tmp_path / "a.mp4", seconds=2, fps=10, size=(64, 48), pattern="testsrc")
    make_video(tmp_path / "b.mp4", seconds=3, fps=10, size=(64, 48))
    (tmp_path / "c.mp4").write_bytes(b"not a video")
    return [(name, str(tmp_path / f"{name}.mp4"), None) for name in "abc"] + [("d", "d.mp4", "cannot read")]


def _outcome(results) -> dict:
    return {r.video_id: (r.status, r.error is None, [c.span.index for c in r.clips],
                         [[lab.label for lab in c.labels] for c in r.clips],
                         [c.embedding for c in r.clips])
            for r in results}


def test_local_and_ray_runners_give_the_same_results(ray_cluster, tmp_path):
    from jobs.tag.rayrunner import RayRunner
    from jobs.tag.runner import LocalRunner
    labels = load_labels("dog,cat,surfing")
    items = _videos(tmp_path)
    spec = DecodeSpec(window_s=1.0, decoder="pyav")
    local = LocalRunner(ScoreStage(MODEL, labels), spec, model_batch=4)
    local_facts = local.start()
    res = Resources(cpus=2, gpus=0, actors=1, actor_cpus=0.5, actor_gpus=0, model_threads=1, decoders=2,
                    decode_cpus=0.5)
    score = ScoreStage(MODEL, labels, cpus=0.5)
    on_ray = RayRunner(score, spec, res, model_batch=4)
    try:
        facts = on_ray.start()
        assert score.scorer is None                         # the model loaded in the actor, not here
        assert facts.fingerprint == local_facts.fingerprint
        ray_results = list(on_ray.run(iter(items)))
    finally:
        on_ray.stop()
    local_results = list(local.run(iter(items)))
    a, b = _outcome(local_results), _outcome(ray_results)
    assert set(a) == set("abcd") and a["a"][0] == "ok" and a["c"][0] == "error" and a["d"][0] == "error"
    assert len(a["a"][2]) == 2 and len(a["b"][2]) == 3
    for vid in a:
        assert a[vid][:4] == b[vid][:4], vid
        for x, y in zip(a[vid][4], b[vid][4]):
            np.testing.assert_allclose(x, y, atol=1e-4)
    assert local.decodes == {("cpu", "pyav"): 3}
    assert sum(on_ray.decodes.values()) == 3 and set(on_ray.decodes) == {("cpu", "pyav")}


@pytest.mark.parametrize("module", ["jobs.tag.rayrunner", "jobs.tag.stages", "jobs.tag.runner", "jobs.tag.tag"])
def test_the_driver_modules_import_no_torch(module):
    """The Ray driver loads no model (the actors do): its modules import no torch."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_decode_options_are_resolved_once_on_the_driver(monkeypatch):
    """The decode spec carries every decoding option as a typed field, read once where the job starts (a worker
    of a joined cluster sees neither this process's environment nor its options)."""
    from jobs.tag.tag import TagOptions, decode_spec
    monkeypatch.setenv("BIKE_DECODE_NICE", "3")
    spec = decode_spec(TagOptions(sources=[], store="s", window_s=2.0, decoder="pyav", sampling="keyframes",
                                  model_batch=4, timeout_s=9.0))
    assert spec == DecodeSpec(window_s=2.0, chunk_clips=4, timeout_s=9.0, decoder="pyav", sampling="keyframes",
                              nice=3)
