"""The ``Decoder`` interface and the registry of backends.

A backend is one module with one ``Decoder`` subclass, registered by name in ``engine.video.registry``
(module path and class name: imported only when chosen; the registry imports nothing heavy, so the command
line lists the backends without loading them). A decoder answers four questions:

- ``unavailable()``: None when it can run here, else why not (no GPU, no driver, package missing);
- ``probe(path)``: the file's ``VideoInfo``;
- ``frame_index(path, info, budget)``: every frame's timestamp and the keyframes (shared default: PyAV demux);
- ``frames(path, numbers, width, height, ...)``: the frames with the given sorted numbers, as displayed
  (rotation applied), resized (bicubic) to width × height, RGB uint8, in order.

``device`` says what it needs ("cpu" or "gpu"), so the pipeline can schedule it. ``reads_sources``: whether
``probe``/``frames`` also accept a ``types.ByteSource`` (a seekable file object, e.g. an object read with ranged
requests) instead of a local path; the in-process decoders do, the ffmpeg CLI does not. ``get_decoder("auto")``
picks the fastest available (nvdec, then pyav, then ffmpeg) and says once in the log which it used; asking
for an unavailable one falls back the same way, said once. ``"auto-cpu"`` is ``auto`` among the CPU backends
(the pipeline's CPU decode slots); ``"nvdec:N"`` is the nvdec backend for NVDEC slot N, which picks the GPU
(``Decoder.for_slot``).
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
from collections import deque
from typing import Iterator

import numpy as np

from . import registry
from .types import Budget, VideoInfo

log = logging.getLogger("engine.video")

#: name -> registry.Backend (module, class, help), live: a backend registered later is in it. Order =
#: preference of ``auto``.
BACKENDS = registry.BACKENDS
#: The choices of the built-in registry (``registry.choices()`` is the live list).
CHOICES = registry.choices()
#: ``auto`` among the backends whose ``device`` is "cpu" (not a command-line choice).
AUTO_CPU = "auto-cpu"
#: ``$BIKE_DECODER`` (engine/settings.py) sets the default when no decoder is named.
DEFAULT_ENV = "BIKE_DECODER"
#: The command's ``--decoder`` / ``--sampling`` while it runs (:func:`decoding_choice`): (decoder, sampling).
_CHOICE: contextvars.ContextVar = contextvars.ContextVar("bike_decoding_choice", default=(None, None))


@contextlib.contextmanager
def decoding_choice(decoder: "str | None" = None, sampling: "str | None" = None):
    """Make ``decoder`` / ``sampling`` the defaults of every decode in this context (this thread or task, not
    the environment: nothing outlives the command, and no other process sees it). A job that decodes in other
    processes passes its choice to them as arguments (``bike tag``: ``jobs.tag.tag.TagOptions``)."""
    token = _CHOICE.set((decoder, sampling))
    try:
        yield
    finally:
        _CHOICE.reset(token)


def default_decoder() -> str:
    """The decoder name a decode uses when none is named: the command's choice, else ``$BIKE_DECODER``, else auto."""
    from engine.settings import Settings
    return _CHOICE.get()[0] or Settings.from_env().decoder or "auto"


def default_sampling() -> str:
    """The frame sampling when none is named: the command's choice, else ``$BIKE_SAMPLING``, else exact."""
    from engine.settings import Settings
    return _CHOICE.get()[1] or Settings.from_env().sampling or "exact"

#: Share of damaged frames (decoder errors, concealed corruption) above which a video is an error.
CORRUPT_ERROR_SHARE = 0.2
#: ... and at least this many damaged frames (a few concealed frames are a warning, not an error).
MIN_DAMAGED_FOR_ERROR = 4


class DecodeReport:
    """Decode problems met so far: counts, and the messages not yet handed to a clip."""

    def __init__(self):
        self.decoded = 0          # frames that came out of the decoder
        self.damaged = 0          # of which flagged corrupt, plus packets the decoder rejected
        self.pending: deque[str] = deque(maxlen=20)
        self.total_messages = 0

    def warn(self, message: str) -> None:
        self.total_messages += 1
        if len(self.pending) < 20:
            self.pending.append(message)

    def take(self) -> list[str]:
        out = list(self.pending)
        self.pending.clear()
        return out

    def too_damaged(self) -> bool:
        return self.damaged >= MIN_DAMAGED_FOR_ERROR and self.damaged > CORRUPT_ERROR_SHARE * self.decoded


class Decoder:
    """Base class of the backends (see the module doc)."""

    name = "?"
    device = "cpu"
    reads_sources = False

    def unavailable(self) -> "str | None":
        return None

    def for_slot(self, slot: int) -> "Decoder":
        """This decoder for decode slot ``slot`` of its device (a GPU backend picks the GPU by it)."""
        return self

    def probe(self, path, timeout_s: float = 30.0) -> VideoInfo:
        raise NotImplementedError

    def frame_index(self, path: str, info: VideoInfo, budget: Budget):
        from .pyav import cached_index
        return cached_index(path, info, budget)

    def frames(self, path: str, numbers: "list[int]", width: int, height: int, info: VideoInfo, index,
               budget: Budget, threads: "int | None", report: DecodeReport,
               keyframes_only: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError


_instances: dict = {}          # registry.Backend -> its Decoder
_said: set = set()


def _instance(name: str) -> Decoder:
    backend = BACKENDS[name]                   # keyed by the registration: a replaced backend is a new one
    if backend not in _instances:
        _instances[backend] = getattr(importlib.import_module(backend.module), backend.cls)()
    return _instances[backend]


def _say_once(key, level, msg, *args) -> None:
    if key not in _said:
        _said.add(key)
        log.log(level, msg, *args)


def get_decoder(name: "str | Decoder | None" = None) -> Decoder:
    """The decoder called ``name`` (None: :func:`default_decoder`), or the best available fallback."""
    if isinstance(name, Decoder):
        return name
    name = name or default_decoder()
    name, _, slot = name.partition(":")
    if name not in registry.choices() + (AUTO_CPU,) or (slot and not slot.isdigit()):
        raise ValueError(f"unknown decoder {name!r}: choose one of {', '.join(registry.choices())}")
    if name not in ("auto", AUTO_CPU):
        try:
            dec = _instance(name)
            why = dec.unavailable()
        except ImportError as e:
            why = f"cannot import it ({e})"
        if why is None:
            return dec.for_slot(int(slot)) if slot else dec
        fallback = next((n for n in BACKENDS if n != name and _usable(n)), None)
        if fallback is None:
            raise RuntimeError(f"decoder {name} is not available here ({why}) and no other decoder is")
        _say_once(("fallback", name), logging.WARNING, "decoder %s is not available here (%s): using %s",
                  name, why, fallback)
        return _instance(fallback)
    for n in BACKENDS:
        if _usable(n) and (name == "auto" or _instance(n).device == "cpu"):
            _say_once((name, n), logging.INFO, "decoder: %s chose %s", name, n)
            return _instance(n)
    raise RuntimeError("no video decoder available: install PyAV (`pip install av`) or ffmpeg")


def _usable(name: str) -> bool:
    try:
        return _instance(name).unavailable() is None
    except ImportError:
        return False


def available() -> dict[str, "str | None"]:
    """Every backend -> None (usable here) or the reason it is not."""
    out = {}
    for n in BACKENDS:
        try:
            out[n] = _instance(n).unavailable()
        except ImportError as e:
            out[n] = f"cannot import it ({e})"
    return out
