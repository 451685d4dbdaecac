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
docs/decoding.md says which decoder runs where and how to choose.
"""
from .base import CHOICES, DecodeReport, Decoder, available, decoding_choice, default_decoder, default_sampling, get_decoder
from .clips import iter_clips, probe, read_frame_at, read_frames, read_video
from .ffmpeg_cli import ffmpeg_exe
from .plan import SAMPLINGS
from .types import Clip, VideoError, VideoInfo, decode_timeout

__all__ = ["CHOICES", "Clip", "DecodeReport", "Decoder", "SAMPLINGS", "VideoError", "VideoInfo", "available", "decoding_choice", "default_decoder", "default_sampling",
           "decode_timeout", "ffmpeg_exe", "get_decoder", "iter_clips", "probe", "read_frame_at", "read_frames", "read_video"]
