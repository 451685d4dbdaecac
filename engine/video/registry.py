"""The registry of decoder backends: names, where each lives, and one line of help. Imports nothing heavy.

A backend is one module with one ``engine.video.base.Decoder`` subclass. It is *registered* by name with the
module path and class name only, so listing the backends (``bike --help``'s ``--decoder`` choices,
``jobs/cli/options.py``) imports neither the backend nor numpy or PyAV; the module is imported the first time
the decoder is chosen (``engine.video.base.get_decoder``).

Adding a CPU backend: write ``engine/video/<name>.py`` with the ``Decoder`` subclass, and add its line to
:data:`BUILTIN` below (or call :func:`register` from code that runs before the command line is parsed, as a
test or a plug-in does). ``--decoder``'s choices and help follow, and ``auto`` tries it in registry order.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    module: str         # where the Decoder subclass lives (imported only when chosen)
    cls: str            # its class name
    help: str = ""      # a few words for --decoder's help: what it is, where it runs


#: The backends bike ships, in ``auto``'s order of preference (fastest first).
BUILTIN = (
    Backend("nvdec", "engine.video.nvdec", "NvdecDecoder", "NVIDIA GPUs; falls back to the CPU"),
    Backend("pyav", "engine.video.pyav", "PyAVDecoder", "in-process, decodes only the sampled GOPs"),
    Backend("ffmpeg", "engine.video.ffmpeg_cli", "FFmpegDecoder", "one ffmpeg process per video"),
)

#: name -> Backend, in ``auto``'s order (registration order; :func:`register` may put one earlier).
BACKENDS: "dict[str, Backend]" = {b.name: b for b in BUILTIN}
#: The choice that picks the fastest available backend.
AUTO = "auto"


def register(name: str, module: str, cls: str, help: str = "", before: "str | None" = None) -> Backend:
    """Register (or replace) the backend ``name``: class ``cls`` of module ``module``, imported only when
    chosen. ``before``: a registered name it is preferred to by ``auto`` (default: last)."""
    if not name or not name.replace("_", "").replace("-", "").isalnum() or name == AUTO or name.startswith(AUTO):
        raise ValueError(f"a decoder name is letters, digits, '-' and '_' and not 'auto...': {name!r}")
    backend = Backend(name, module, cls, help)
    items = [(n, b) for n, b in BACKENDS.items() if n != name]
    at = next((i for i, (n, _) in enumerate(items) if n == before), len(items))
    items.insert(at, (name, backend))
    BACKENDS.clear()
    BACKENDS.update(items)
    return backend


def unregister(name: str) -> None:
    """Remove a registered backend (a test's own, when it is done)."""
    BACKENDS.pop(name, None)


def names() -> "tuple[str, ...]":
    """The registered backends, in ``auto``'s order."""
    return tuple(BACKENDS)


def choices() -> "tuple[str, ...]":
    """``--decoder``'s choices: ``auto`` then every registered backend."""
    return (AUTO, *BACKENDS)


def help_text() -> str:
    """``--decoder``'s help, one phrase per registered backend."""
    parts = [f"{b.name} ({b.help})" if b.help else b.name for b in BACKENDS.values()]
    return f"video decoder: {', '.join(parts)}; default auto: the fastest available"
