"""Sizing the tagging job to a cluster: never more CPU asked than there is (Ray on 2 cores deadlocks)."""
from __future__ import annotations

import pytest

from engine.video import nvdec_engines
from jobs.tag.raycluster import plan_resources
from jobs.tag.stages import NvdecDecodeStage, local_nvdec_engines

NVDEC_TASK_CPUS = NvdecDecodeStage.resources.cpus      # what an NVDEC decode declares


@pytest.mark.parametrize("cpus, gpus", [(1, 0), (2, 0), (4, 0), (16, 0), (2, 1), (16, 1), (64, 8)])
def test_actors_and_decodes_fit_together(cpus, gpus):
    r = plan_resources(cpus, gpus)
    assert r.actors == (int(gpus) if gpus else 1)
    assert r.actor_gpus == (1.0 if gpus else 0.0)
    assert r.decoders >= 1
    assert r.actors * r.actor_cpus + r.decoders * r.decode_cpus <= cpus + 1e-9
    assert 0 < r.decode_cpus <= 1 and 0 < r.actor_cpus <= 1


def test_decoders_can_be_set():
    r = plan_resources(2, 0, decoders=5)
    assert r.decoders == 5 and r.actor_cpus + 5 * r.decode_cpus <= 2 + 1e-9


@pytest.mark.parametrize("cpus, gpus, nvdec", [(2, 0, 2), (2, 1, 7), (16, 1, 7), (64, 8, 56), (1, 0, 3)])
def test_nvdec_decodes_fit_beside_the_cpu_decodes_and_actors(cpus, gpus, nvdec):
    r = plan_resources(cpus, gpus, units={"NVDEC": nvdec})             # read by the name the stage declares
    assert r.pools == {"nvdec": nvdec} and 0 < r.pool_task_cpus["nvdec"] <= NVDEC_TASK_CPUS
    assert r.slots() == {"cpu": r.decoders, "nvdec": nvdec}
    assert r.actors * r.actor_cpus + r.decoders * r.decode_cpus + nvdec * r.pool_task_cpus["nvdec"] <= cpus + 1e-9
    assert r.decoders == plan_resources(cpus, gpus).decoders       # CPU decodes as many as without NVDEC


def test_nvdec_decodes_take_their_cpu_from_the_cpu_decodes_share():
    for cpus, gpus in [(2, 0), (16, 1)]:
        r = plan_resources(cpus, gpus)
        assert r.pools == {} and r.pool_task_cpus == {}
        assert plan_resources(cpus, gpus, units={"NVDEC": 4}).decode_cpus <= r.decode_cpus


@pytest.mark.parametrize("name, engines", [("NVIDIA H200", 7), ("NVIDIA H100 80GB HBM3", 7), ("NVIDIA H100 PCIe", 7),
                                           ("NVIDIA A100-SXM4-80GB", 5), ("NVIDIA L4", 4), ("NVIDIA L40S", 3),
                                           ("NVIDIA A10G", 2), ("Tesla T4", 2), ("Tesla V100-SXM2-16GB", 1),
                                           ("NVIDIA GeForce RTX 4090", 1), ("NVIDIA A1000", 1)])
def test_engine_table(name, engines):
    assert nvdec_engines.engines_per_gpu(name) == engines


def test_engine_count_and_its_override():
    gpus = ["NVIDIA H200", "NVIDIA H200", "Tesla T4"]
    assert nvdec_engines.count(gpus, env={}) == 16
    assert nvdec_engines.count(gpus, env={nvdec_engines.ENV: "3"}) == 9       # per GPU
    assert nvdec_engines.count(gpus, env={nvdec_engines.ENV: "0"}) == 0
    assert nvdec_engines.count([], env={}) == 0
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ValueError, match=nvdec_engines.ENV):
            nvdec_engines.count(gpus, env={nvdec_engines.ENV: bad})


def test_local_ray_declares_no_nvdec_where_the_backend_cannot_run(monkeypatch):
    from engine.video import available
    why = available()["nvdec"]
    if why is None:
        pytest.skip("this host can run nvdec")
    monkeypatch.setenv(nvdec_engines.ENV, "7")
    assert local_nvdec_engines() == 0
