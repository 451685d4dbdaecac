"""The Ray task that decodes one video for ``bike tag`` (``jobs.tag.pipeline`` starts it, one per video).

It lives in its own module so that a decode worker stays light: Ray imports a remote function's whole module
on the worker that runs it, and ``jobs.tag.pipeline`` (which also holds the model actor) imports ``jobs.tag.scoring``
and with it torch. This module imports only ray, ``jobs.tag.decode`` (PyAV, numpy) and ``engine.sources.remote``
(whose fsspec/boto3 clients load on first use): a decode worker holds ~150 MB resident after decoding a video,
~620 MB with torch imported (measured on a 2-core CPU host). ``bike tag --windows shots`` still runs
TransNetV2 (torch) here, imported lazily by ``jobs.tag.decode`` only for those decodes. tests/test_decodetask.py checks that a decode worker has no torch loaded.
"""
from __future__ import annotations

import os
import sys

import ray

from engine.sources import remote

from .decode import decode_video

def _lower_priority() -> None:
    """Nice a decode worker (and its ffmpeg) by ``$BIKE_DECODE_NICE`` (engine/settings.py, default 10): on a
    small CPU-only host the model sets the pace, so the decoders take the CPU it leaves; on a GPU host the
    model needs little CPU and decoding gets it all."""
    global _niced
    if not _niced:
        from engine.settings import Settings
        try:
            os.nice(Settings.from_env().decode_nice)
        except OSError:
            pass
        _niced = True


_niced = False


def _decode(path, frames, window_s, size, resize, chunk_clips, timeout_s, threads, decoder=None,
            sampling=None, windows="fixed", min_shot=1.0, shots=None):
    _lower_priority()
    kwargs = dict(frames=frames, window_s=window_s, size=size, resize=resize, chunk_clips=chunk_clips,
                  timeout_s=timeout_s, threads=threads, decoder=decoder, sampling=sampling)
    if windows != "fixed":
        kwargs.update(windows=windows, min_shot=min_shot, shots=shots)
    if remote.is_remote(path):                      # object storage: fetched here, on the decoding node
        yield from remote.decode_remote(path, decode_video, **kwargs)
        return
    yield from decode_video(path, **kwargs)


#: Own runtime env (only a marker variable): Ray keeps separate worker processes for it, so a niced decode
#: worker is never reused for a model actor.
DECODE_ENV = {"env_vars": {"BIKE_DECODE_WORKER": "1"}}


@ray.remote(num_returns="streaming", max_retries=0, runtime_env=DECODE_ENV)
def decode_task(*args, **kwargs):
    """``_decode`` on a Ray worker; its end message also says which resources the task held (its pool)."""
    for msg in _decode(*args, **kwargs):
        if type(msg) is dict and msg.get("kind") == "end":
            msg = {**msg, "held": sorted(ray.get_runtime_context().get_assigned_resources())}
        yield msg


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@ray.remote(max_retries=0, runtime_env=DECODE_ENV)
def worker_report(*decode_args, **decode_kwargs) -> dict:
    """What a decode worker process holds, after decoding one video (``decode_args`` as for ``decode_task``;
    none: no decode): whether torch is loaded, the resident memory (MB, Linux), the pid. For tests and
    benchmarks: it runs on the same kind of worker as ``decode_task``, with this module imported the same way."""
    end = {}
    if decode_args:
        for msg in _decode(*decode_args, **decode_kwargs):
            if type(msg) is dict and msg.get("kind") == "end":
                end = msg
    return {"pid": os.getpid(), "torch": "torch" in sys.modules, "rss_mb": _rss_mb(),
            "clips": end.get("clips"), "error": end.get("error")}
