"""Which torch device a model runs on: ``--device`` checked against what this host has, in one clear line.

``None`` → ``cuda`` when a GPU is visible, else ``cpu``. Accepted: ``cpu``, ``cuda``, ``cuda:N``, ``mps``
(and anything else torch names, when this host has it). ``gpu`` is refused with the right spelling, and a
device this host does not have (``cuda`` on a CPU-only host, ``cuda:3`` with two GPUs) is refused with what
it does have, instead of a torch traceback.
"""
from __future__ import annotations


class DeviceError(ValueError):
    """A --device this host cannot use; the message says what it has."""


def _have() -> str:
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"this host has {n} CUDA GPU(s)" + (": use --device cpu" if n == 0 else f" (cuda:0..cuda:{n - 1})")


def resolve_device(spec=None) -> "torch.device":  # noqa: F821 - torch is imported here, not at the top
    """``spec`` (str, torch.device or None) → a torch.device this host has; :class:`DeviceError` otherwise.
    (torch is imported inside: ``jobs.errors`` imports :class:`DeviceError` and must stay light.)"""
    import torch
    if spec is None or spec == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(spec, torch.device):
        dev = spec
    else:
        text = str(spec).strip().lower()
        if text in ("gpu", "gpus") or text.startswith("gpu:"):
            raise DeviceError(f"--device {spec}: no such torch device; write cuda (or cuda:N) for a GPU; {_have()}")
        try:
            dev = torch.device(text)
        except (RuntimeError, ValueError):
            raise DeviceError(f"--device {spec}: not a torch device (cpu, cuda, cuda:N, mps); {_have()}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise DeviceError(f"--device {spec}: not available; {_have()}")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"--device {spec}: not available on this host; {_have()}")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {spec}: bike runs on cpu, cuda or mps; {_have()}")
    return dev
