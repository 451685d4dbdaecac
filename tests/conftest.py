"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) with tiny random-init CLIP models."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "BIKE_CACHE_DIR" not in os.environ:           # keep the text-feature cache out of ~/.cache during tests
    import tempfile
    os.environ["BIKE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bike-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

TINY = "bike-tiny"


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random-init BIKE model (no header) with a small lexicon, shared by the session."""
    import engine
    return engine.load_model(TINY, random_init=True, lexicon="hmdb51")


@pytest.fixture(scope="session")
def ray_cluster():
    """One real Ray local cluster per test session (starting one costs ~5 s here). ``address="local"``: a new
    private Ray even when another one (`ray start`, another session) runs on this host."""
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()
