"""Starting or joining Ray, and sizing the work to what the cluster has.

* No ``--address``: a local Ray sized to this machine (all its CPUs, its GPUs), shut down when the job ends.
* ``--address auto`` (inside a cluster, e.g. ``ray job submit``) or ``HOST:PORT``: join that cluster.
* Ray already initialised in this process (tests, notebooks): used as it is, left running.

Sizing (:func:`plan_resources`): one model actor per GPU (``num_gpus=1``); with no GPU one model actor on
the CPU. Actors and decode tasks ask for fractional CPUs so they never hold every CPU and starve each other
(Ray on 2 cores deadlocks with whole-CPU actors: see ENVIRONMENT.md); how many decodes run at once is
bounded by the driver, not by Ray's CPU accounting.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UsageError

#: Environment variables passed on to Ray workers when set on the driver.
FORWARD_ENV = ("HF_HUB_OFFLINE", "BIKE_FFMPEG", "HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME",
               # object-storage sources (jobs/remote.py): endpoint, credentials, spool
               "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_DEFAULT_REGION", "AWS_PROFILE", "BIKE_SPOOL_DIR", "BIKE_SPOOL_MAX_GB")


@dataclass
class Resources:
    cpus: float
    gpus: float
    actors: int              # model actors
    actor_cpus: float        # Ray CPU request of each model actor
    actor_gpus: float
    model_threads: int       # torch threads in a CPU model actor
    decoders: int            # video decodes in flight at once
    decode_cpus: float       # Ray CPU request of each decode task


def connect(address: "str | None" = None, num_cpus: "int | None" = None) -> bool:
    """Start or join Ray. Returns True when this call started it (so the caller shuts it down)."""
    import ray
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                  runtime_env={"env_vars": env})
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
    except ConnectionError as e:
        raise UsageError(f"cannot join the Ray cluster at --address {address}: {e}; start one with "
                         "`ray start --head` or `ray up ray_cluster.yaml`, or leave --address out to run "
                         "locally") from None
    return True


def plan_resources(cpus: float, gpus: float, decoders: "int | None" = None) -> Resources:
    """How many model actors and concurrent decodes a cluster with ``cpus``/``gpus`` gets."""
    if gpus >= 1:
        actors = int(gpus)
        actor_cpus, actor_gpus, threads = 1.0 if cpus >= 2 * actors + 1 else 0.5, 1.0, 2
        free = max(cpus - actors * actor_cpus, 1.0)
        dec = decoders or max(1, int(free))
    else:
        actors, actor_gpus = 1, 0.0
        actor_cpus = 1.0 if cpus >= 4 else 0.5
        threads = max(1, int(cpus))
        # on a small CPU-only host the model, not decoding, sets the pace: a few decodes keep it fed
        dec = decoders or max(1, min(int(cpus) - 1, 8) if cpus >= 4 else 2)
    # fractional per-task request so `dec` tasks always fit beside the actors
    room = max(cpus - actors * actor_cpus, 0.25)
    decode_cpus = min(1.0, room / dec)
    return Resources(cpus, gpus, actors, actor_cpus, actor_gpus, threads, dec, round(decode_cpus, 3))


def cluster_resources(decoders: "int | None" = None) -> Resources:
    import ray
    res = ray.cluster_resources()
    return plan_resources(float(res.get("CPU", 1)), float(res.get("GPU", 0)), decoders)


def shutdown(started: bool) -> None:
    import ray
    if started and ray.is_initialized():
        ray.shutdown()
