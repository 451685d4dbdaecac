"""The GPU backend: NVDEC through PyAV's CUDA hwaccel (PyAV's bundled FFmpeg has the CUDA hwaccel built in).

Same GOP-aware plan as the ``pyav`` backend (this class only adds the hardware device): packets are decoded
on the GPU's NVDEC engines, frames are copied to host memory and resized there. It is usable only where
PyAV's FFmpeg knows CUDA, an NVIDIA device node exists and the driver's ``libnvcuvid`` loads; otherwise
``unavailable()`` says why and ``get_decoder`` falls back to the CPU backend, said once in the log. A codec
NVDEC cannot decode (FFmpeg's software fallback takes it) is also said once.

In ``bike tag`` each decode on this backend holds one unit of the Ray resource ``NVDEC`` (one per hardware
engine, engine/video/nvdec_engines.py); NVDEC slot k decodes on GPU k mod the GPUs visible here
(``for_slot``), since Ray does not say which engine or GPU a unit belongs to.

Not built (it needs a GPU host to build and to check; docs/decoding.md "What remains"): frames handed to the
model without the host round trip. That means ``HWAccel(is_hw_owned=True)`` so decoded NV12 frames stay in
GPU memory, NV12 → RGB, bicubic resize and crop on the GPU (matched against this path's swscale output),
DLPack into torch on the model actor's device, FFmpeg's CUDA context shared with torch's (the primary
context) and ordered with the model's stream, and the decode running *inside* the model actor's process
(device memory cannot travel in a Ray object), so the NVDEC slots of a GPU become decoder threads of its
model actor. None of it can run or be tested without CUDA; ``bench/gpu_decode.py`` measures first whether it
pays (full decode with frames copied to the host vs left on the GPU).
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
from functools import lru_cache

from .pyav import PyAVDecoder, open_container, video_stream

log = logging.getLogger("engine.video")
_said: set = set()


@lru_cache(maxsize=1)
def _why_not() -> "str | None":
    try:
        import av.codec.hwaccel as hw
    except ImportError as e:
        return f"PyAV is not installed ({e})"
    if "cuda" not in hw.hwdevices_available():
        return "PyAV's FFmpeg has no CUDA hwaccel"
    if not glob.glob("/dev/nvidia[0-9]*"):
        return "no NVIDIA GPU (no /dev/nvidia* device)"
    try:
        ctypes.CDLL("libnvcuvid.so.1")
    except OSError:
        return "the NVIDIA driver's NVDEC library (libnvcuvid.so.1) is not installed"
    return None


def visible_gpus() -> int:
    """CUDA devices this process may use (``CUDA_VISIBLE_DEVICES``, else the NVIDIA device nodes)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip()])
    return len(glob.glob("/dev/nvidia[0-9]*"))


class NvdecDecoder(PyAVDecoder):
    name = "nvdec"
    device = "gpu"

    def __init__(self, gpu: "int | None" = None):
        self.gpu = gpu                  # CUDA device index; None: FFmpeg's default (device 0)

    def unavailable(self):
        return _why_not()

    def for_slot(self, slot: int) -> "NvdecDecoder":
        """NVDEC slot ``slot`` decodes on GPU ``slot mod (GPUs visible here)``: a node's slots spread evenly
        over its GPUs (Ray does not say which engine an ``NVDEC`` unit is; FFmpeg would use GPU 0 for all)."""
        return NvdecDecoder(gpu=slot % max(1, visible_gpus()))

    @property
    def hwaccel(self):
        from av.codec.hwaccel import HWAccel
        device = None if self.gpu is None else str(self.gpu)
        return HWAccel(device_type="cuda", device=device, allow_software_fallback=True)

    def _open_for_decode(self, path: str, threads, timeout_s: float = 60.0):
        c = open_container(path, hwaccel=self.hwaccel, timeout_s=timeout_s)
        s = video_stream(c, path)
        if not getattr(s.codec_context, "is_hwaccel", True):
            codec = s.codec_context.name
            if codec not in _said:
                _said.add(codec)
                log.warning("nvdec: NVDEC cannot decode %s here; decoding it on the CPU", codec)
            s.thread_type = "AUTO"
            s.codec_context.thread_count = threads or 0
        return c, s
