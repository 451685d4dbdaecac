"""The Ray task that runs a decode stage for one video (``jobs.tag.rayrunner`` starts it, one per video).

It lives in its own module so that a decode worker stays light: Ray imports a remote function's whole module
on the worker that runs it, and ``jobs.tag.rayrunner`` (which also holds the model actor) would bring the
model's imports. This module imports only ray, ``jobs.tag.stages`` and ``jobs.tag.tasks`` (PyAV, numpy,
pyarrow; ``engine.sources.remote``'s fsspec/boto3 clients load on first use): a decode worker holds ~150 MB
resident after decoding a video, ~620 MB with torch imported (measured on a 2-core CPU host). ``bike tag
--windows shots`` still runs TransNetV2 (torch) here, imported lazily by ``jobs.tag.decode`` only for those
decodes. tests/test_decodetask.py checks that a decode worker has no torch loaded.

The task is given the stage object itself (``DecodeStage`` or ``NvdecDecodeStage``, with the job's
``DecodeSpec``) and a ``DecodeTask``: the options travel as typed fields to whichever node runs it.
"""
from __future__ import annotations

import os
import sys

import ray

from .stages import DecodeStage, end_held
from .tasks import DecodeTask, End


def _lower_priority(nice: int) -> None:
    """Nice a decode worker (and its ffmpeg) by the job's ``DecodeSpec.nice`` (``$BIKE_DECODE_NICE`` read once on
    the driver, engine/settings.py, default 10): on a small CPU-only host the model sets the pace, so the decoders
    take the CPU it leaves; on a GPU host the model needs little CPU and decoding gets it all. Once per worker."""
    global _niced
    if not _niced:
        try:
            os.nice(int(nice))
        except OSError:
            pass
        _niced = True


_niced = False


def _decode(stage: DecodeStage, task: DecodeTask):
    _lower_priority(stage.spec.nice)
    stage.setup()
    yield from stage.process(task)


#: Own runtime env (only a marker variable): Ray keeps separate worker processes for it, so a niced decode
#: worker is never reused for a model actor.
DECODE_ENV = {"env_vars": {"BIKE_DECODE_WORKER": "1"}}


@ray.remote(num_returns="streaming", max_retries=0, runtime_env=DECODE_ENV)
def decode_task(stage: DecodeStage, task: DecodeTask):
    """``stage.process(task)`` on a Ray worker; its End message also says which resources the task held (its
    pool). The caller sets the task's resources from ``stage.resources`` (jobs/tag/rayrunner.py)."""
    for msg in _decode(stage, task):
        if isinstance(msg, End):
            msg = end_held(msg, ray.get_runtime_context().get_assigned_resources())
        yield msg


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@ray.remote(max_retries=0, runtime_env=DECODE_ENV)
def worker_report(stage: "DecodeStage | None" = None, task: "DecodeTask | None" = None) -> dict:
    """What a decode worker process holds, after decoding one video (``stage``/``task`` as for ``decode_task``;
    none: no decode): whether torch is loaded, the resident memory (MB, Linux), the pid. For tests and
    benchmarks: it runs on the same kind of worker as ``decode_task``, with this module imported the same way."""
    end = End()
    if stage is not None:
        for msg in _decode(stage, task):
            if isinstance(msg, End):
                end = msg
    return {"pid": os.getpid(), "torch": "torch" in sys.modules, "rss_mb": _rss_mb(),
            "clips": end.clips, "error": end.error}
