"""Reading videos for the model: probe a file, then decode only the frames the sampler needs.

A small package with one ``Decoder`` interface (``base``) and a registry of backends:

    pyav        in-process CPU decoder (PyAV bundles FFmpeg), GOP-aware: seeks, skips GOPs and
                non-reference frames nobody asked for                           engine/video/pyav.py
    ffmpeg      one ffmpeg process per video with a ``select`` filter (the original path)  ffmpeg_cli.py
    nvdec       NVDEC on NVIDIA GPUs via PyAV's CUDA hwaccel; falls back to the CPU      nvdec.py

Public names, the same for every backend (``decoder=`` picks one; default "auto" = the fastest available):
``probe``, ``iter_clips``, ``read_video``, ``read_frames``, ``read_frame_at``, ``VideoError``, ``VideoInfo``, ``Clip``.
Shared pieces: ``types`` (errors, data, time budget, file guard, allowed formats), ``frameindex`` (every
frame's real timestamp and the keyframes), ``plan`` (windows -> frame numbers), ``clips`` (assembly),
``nvdec_engines`` (NVDEC engines per GPU: the size of the Ray resource ``NVDEC``).
docs/decoding.md says which decoder runs where and how to choose. ``registry`` lists the backends by name
(each imported only when chosen); a new backend is one module plus its line there.

Importing the package is cheap: each public name is imported from its module on first use (PEP 562), so
``engine.video.registry`` (the backends' names, for ``bike --help``) loads no numpy or PyAV.
"""
from __future__ import annotations

from engine.lazy import lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "CHOICES": "base", "DecodeReport": "base", "Decoder": "base", "available": "base", "decoding_choice": "base",
    "default_decoder": "base", "default_sampling": "base", "get_decoder": "base",
    "iter_clips": "clips", "probe": "clips", "read_frame_at": "clips", "read_frames": "clips", "read_video": "clips",
    "ffmpeg_exe": "ffmpeg_cli", "SAMPLINGS": "plan",
    "Clip": "types", "VideoError": "types", "VideoInfo": "types", "decode_timeout": "types",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
