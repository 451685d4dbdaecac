"""Starting or joining Ray, and sizing the work to what the cluster has.

* No ``--address``: a local Ray sized to this machine (all its CPUs, its GPUs), shut down when the job ends,
  and ended by a small watchdog (jobs/tag/reaper.py) within a second when the driver is killed (``kill -9``).
* ``RAY_ADDRESS`` set, or ``--address auto``: a running Ray (``ray start --head``) is reused. Without either,
  bike never attaches to whatever Ray it finds on the host (Ray's own default): that one may belong to another
  session and end mid-job.
* ``--address auto`` (inside a cluster, e.g. ``ray job submit``) or ``HOST:PORT``: join that cluster.
* Ray already initialised in this process (tests, notebooks): used as it is, left running.

Ray's own logs (its start banner, worker output) stay out of the terminal; ``-v`` shows them.

Sizing (:func:`plan_resources`): one model actor per GPU (``num_gpus=1``); with no GPU one model actor on
the CPU. Actors and decode tasks ask for fractional CPUs so they never hold every CPU and starve each other
(measured: on a 2-core host, actors that each take a whole CPU left Ray Data's read tasks no CPU and the
job deadlocked); how many decodes run at once is
bounded by the driver, not by Ray's CPU accounting.

Decode pools (jobs/tag/slots.py): besides the CPU decodes, each registered decode stage with a custom Ray
resource (jobs/tag/stages.py ``DECODE_STAGES``; NVDEC: ``{"NVDEC": 1}``, one unit per hardware decode engine,
docs/decoding.md) gets one slot per unit of that resource in the cluster, read by the name it declares
(``ray.cluster_resources()[name]``), and a small CPU share per decode. The local Ray bike starts declares what
each such stage's ``local_units()`` finds on this host (NVDEC: engines per GPU × GPUs when the nvdec backend can
run here, engine/video/nvdec_engines.py, ``$BIKE_NVDEC_ENGINES`` overrides); a cluster declares it on its
nodes (``ray start --resources='{"NVDEC": 7}'``, ray_cluster.yaml). The pools then run side by side
(jobs/tag/rayrunner.py). Nothing here names a pool.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from jobs import output
from jobs.errors import UsageError

#: Environment variables passed on to Ray workers when set on the driver.
FORWARD_ENV = ("HF_HUB_OFFLINE", "BIKE_FFMPEG", "HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME",
               # object-storage sources (engine/sources/remote.py): endpoint, credentials, ranged reads, spool
               "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_DEFAULT_REGION", "AWS_PROFILE", "BIKE_SPOOL_DIR", "BIKE_SPOOL_MAX_GB",
               "BIKE_REMOTE_READ", "BIKE_STREAM_CACHE_MB", "BIKE_STREAM_STALL_S")


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
    #: pool → decodes in flight at once, for the pools of a custom resource (one per unit in the cluster)
    pools: dict = field(default_factory=dict)
    #: pool → Ray CPU request of each of its decode tasks (at most what its stage declares)
    pool_task_cpus: dict = field(default_factory=dict)

    def slots(self) -> "dict[str, int]":
        """Slots every pool offers (``jobs.tag.slots.pool_sizes`` chooses among them per ``--decoder``)."""
        from .slots import cpu_pool
        return {cpu_pool(): self.decoders, **self.pools}

    def pool_cpus(self) -> "dict[str, float]":
        """Ray CPU request of one decode, per pool (``jobs.tag.stages.decode_stages``)."""
        from .slots import cpu_pool
        return {cpu_pool(): self.decode_cpus, **self.pool_task_cpus}


def _resource_stages() -> list:
    """The registered decode stages that declare a custom Ray resource (their slots are its units)."""
    from .stages import DECODE_STAGES
    return [c for c in DECODE_STAGES.values() if c.slot_resource() is not None]


def connect(address: "str | None" = None, num_cpus: "int | None" = None) -> bool:
    """Start or join Ray. Returns True when this call started it (so the caller shuts it down)."""
    import ray
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for k in _job_env_keys():            # set by the job's own runtime env already: Ray refuses them twice
        env.pop(k, None)
    verbose = output.verbosity() >= output.VERBOSE
    kwargs = dict(include_dashboard=False, log_to_driver=verbose, configure_logging=verbose,
                  runtime_env={"env_vars": env})
    if not verbose:                      # Ray's banners and warnings (token auth, ...) stay out of the terminal
        import logging
        kwargs["logging_level"] = "ERROR"
        logging.getLogger("ray").setLevel(logging.ERROR)
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            output.info(f"bike: joining the Ray cluster at {address}...")
            ray.init(address=address, **kwargs)
        else:   # "local": a private Ray, even when another one (a test session, a notebook) runs on this host
            units = local_units()
            if units:
                kwargs["resources"] = units
            cpus = num_cpus or os.cpu_count() or 1
            what = f"{cpus} CPU{'s' if cpus != 1 else ''}" + "".join(f", {n} {r}" for r, n in units.items())
            output.info(f"bike: starting Ray (local, {what})...")
            ray.init(address="local", num_cpus=cpus, **kwargs)
            start_reaper()
    except ConnectionError as e:
        raise UsageError(f"cannot join the Ray cluster at --address {address}: {e}; start one with "
                         "`ray start --head` or `ray up ray_cluster.yaml`, or leave --address out to run "
                         "locally") from None
    return True


def _job_env_keys() -> set:
    """The environment variables a Ray job's runtime env sets when this driver runs as one (``ray job submit
    --runtime-env-json``): ``ray.init`` may not set the same keys again (Ray stops with "Failed to merge the
    Job's runtime env"), and the job's values already reach every worker."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return set()
    try:
        return set(((json.loads(raw) or {}).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError, TypeError):
        return set()


def start_reaper() -> "subprocess.Popen | None":
    """Start jobs/tag/reaper.py for the Ray processes this driver just started (see the module docstring)."""
    try:
        import ray
        node = ray._private.worker._global_node
        procs = [p.pid for _, p in node.live_processes()] if node is not None else []
    except Exception:  # noqa: BLE001 - a Ray without these internals: no watchdog, Ray's own timeouts apply
        return None
    from .reaper import start_time
    spec = {"driver": os.getpid(), "procs": [(pid, start_time(pid)) for pid in procs if start_time(pid)],
            "interval": 0.2, "refresh": 1.0, "grace": 0.0, "pgid": os.getpgid(0), "since": start_time(os.getpid())}
    if not spec["procs"]:
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
    proc = subprocess.Popen([sys.executable, "-S", script, json.dumps(spec)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)
    _REAPERS.append(proc)                  # kept referenced: it outlives nothing but this process
    return proc


_REAPERS: list = []


def local_units() -> "dict[str, int]":
    """The custom resources the local Ray declares: each registered decode stage's ``local_units()`` on this
    host, by the resource name it declares (none: left out)."""
    units = {c.slot_resource(): int(c.local_units()) for c in _resource_stages()}
    return {r: n for r, n in units.items() if n > 0}


def plan_resources(cpus: float, gpus: float, decoders: "int | None" = None,
                   units: "dict | None" = None) -> Resources:
    """How many model actors and concurrent decodes a cluster with ``cpus``/``gpus`` and the custom resources
    ``units`` (name → amount, e.g. ``ray.cluster_resources()``) gets: ``decoders`` CPU decodes (default: sized
    to the CPUs) and, for each registered decode stage with a custom resource, one decode per unit of it."""
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
    # fractional per-task requests so `dec` CPU decodes and the other pools' decodes always fit beside the
    # actors; the other pools' decodes take at most half of that room, each at most what its stage declares
    room = max(cpus - actors * actor_cpus, 0.25)
    units = units or {}
    pools = {c.pool: max(0, int(float(units.get(c.slot_resource(), 0)))) for c in _resource_stages()}
    pools = {p: n for p, n in pools.items() if n}
    n_all = sum(pools.values())
    from .stages import DECODE_STAGES
    pool_task_cpus = {p: _floor(min(DECODE_STAGES[p].resources.cpus, room / 2 / n_all)) for p in pools}
    decode_cpus = _floor(min(1.0, (room - sum(pools[p] * pool_task_cpus[p] for p in pools)) / dec))
    return Resources(cpus, gpus, actors, actor_cpus, actor_gpus, threads, dec, decode_cpus, pools, pool_task_cpus)


def _floor(x: float) -> float:
    """Rounded down to Ray's resource precision (1e-4), so that n requests of it fit in n × x."""
    return int(x * 10000) / 10000


def cluster_resources(decoders: "int | None" = None) -> Resources:
    import ray
    res = ray.cluster_resources()
    return plan_resources(float(res.get("CPU", 1)), float(res.get("GPU", 0)), decoders, units=res)


def shutdown(started: bool) -> None:
    import ray
    if started and ray.is_initialized():
        ray.shutdown()
