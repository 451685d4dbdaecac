"""Sizing the tagging job to a cluster: never more CPU asked than there is (Ray on 2 cores deadlocks)."""
from __future__ import annotations

import pytest

from jobs.raycluster import plan_resources


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
