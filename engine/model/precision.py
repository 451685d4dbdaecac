"""Numeric precision of the model: ``auto | fp32 | bf16 | fp16`` (docs/model.md, "Precision").

What engages the hardware is the dtype of the *weights and inputs*, not autocast:

* CPU: the towers and the header are cast to bfloat16 (weights and inputs), so every matrix multiply is a
  bf16 GEMM that oneDNN runs on AMX / AVX512-BF16. ``torch.autocast("cpu")`` alone re-casts fp32 weights on
  every call and keeps LayerNorm/softmax paths in fp32: measured 42 frames/s vs 184 for the cast tower
  (ViT-B-32, 2 cores; fp32 37).
* CUDA: fp16 (or bf16) autocast over fp32 weights, the usual mixed precision of GPU inference.
* The temporal header stays fp32 on the CPU: cast to bf16 it was not faster (0.85x, bench/model.py; it is
  under 1% of the image tower's work) and it would round H, from which the saliency is read.

``auto`` picks fp16 on CUDA, bf16 on CPUs that have AMX or AVX512-BF16, fp32 elsewhere. fp32 is exact (the
equivalence tests use it). Concept spotting and fusion always accumulate in fp32: the saliency is a softmax
of similarities divided by tau = 0.01, which would magnify bf16 rounding of the similarities a hundredfold.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

CHOICES = ("auto", "fp32", "bf16", "fp16")
#: /proc/cpuinfo flags of CPUs with native bf16 matrix arithmetic.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX or AVX512-BF16)."""
    return any(f in cpu_flags() for f in BF16_FLAGS)


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch (for checks made before a model loads)."""
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return False


def resolve(precision: "str | None", device) -> str:
    """``auto`` (or None) → the concrete precision for ``device`` (a torch device or its name; None: cuda
    when a GPU is visible); a concrete one is checked and kept. Does not import torch."""
    p = (precision or "auto").lower()
    if p not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, got {precision!r}")
    if p != "auto":
        return p
    kind = str(device).split(":")[0] if device is not None else ("cuda" if gpu_present() else "cpu")
    if kind == "cuda":
        return "fp16"
    if kind == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class Precision:
    """A concrete precision on a device: how modules are stored and how they are run."""
    name: str                 # fp32 | bf16 | fp16
    device: torch.device

    @classmethod
    def of(cls, precision: "str | None", device) -> "Precision":
        import torch
        device = torch.device(device)
        return cls(resolve(precision, device.type), device)

    @property
    def dtype(self):
        import torch
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def autocast(self) -> bool:
        """CUDA runs reduced precision as autocast over fp32 weights; the CPU casts the weights."""
        return self.device.type == "cuda" and self.name != "fp32"

    @property
    def weight_dtype(self):
        """The dtype modules are stored in."""
        import torch
        return torch.float32 if self.autocast else self.dtype

    def cast(self, module):
        """``module`` moved to the device and stored in :attr:`weight_dtype` (in place; returned)."""
        if module is None:
            return None
        return module.to(self.device, self.weight_dtype).eval()

    def input(self, x):
        """A float input for a module stored by :meth:`cast`."""
        return x.to(self.device, self.weight_dtype)

    def run(self):
        """Context of a forward pass: autocast on CUDA at reduced precision, nothing otherwise."""
        if self.autocast:
            import torch
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()
