"""Frame prints: a small visual fingerprint of each sampled frame, for finding copies of a video.

A print is the frame shrunk to ``GRID`` × ``GRID`` cells (the mean colour of each cell, RGB), with each
channel's mean over the frame removed, as one unit vector of ``DIM`` = GRID·GRID·3 numbers. Two prints are
compared by their dot product (cosine). What survives re-encoding, resizing and a small crop (the cell
means barely move) and what does not (different content) is measured in bench/dedup.py; the numbers are in
docs/search.md.

Why not the CLIP embeddings the store already holds: they say what a frame *shows*, so two different videos
of the same kind of scene look alike, and with random weights (tests, this project's offline demo) they
do not separate copies from other videos at all (measured: copies down to cosine 0.96, distinct videos up
to 0.987). A print costs nothing next to the model: it is computed from the frames the model already gets.
"""
from __future__ import annotations

import numpy as np

#: Cells per side of the shrunk frame.
GRID = 8
#: Numbers in one print.
DIM = GRID * GRID * 3
#: A frame whose cells differ from their mean by less than this (RMS, 0–255 levels) is flat (black, a
#: fade): its print is all zeros and matches nothing, so blank frames never make two videos alike.
FLAT_RMS = 2.0


def frame_prints(frames: np.ndarray) -> np.ndarray:
    """uint8 frames (..., H, W, 3) → float16 prints (..., DIM), each a unit vector (a flat frame: zeros, see ``FLAT_RMS``)."""
    frames = np.asarray(frames)
    *lead, h, w, c = frames.shape
    if c != 3 or h < GRID or w < GRID:
        raise ValueError(f"frames of shape {frames.shape}: need (..., H >= {GRID}, W >= {GRID}, 3)")
    bh, bw = h // GRID, w // GRID
    x = frames[..., : bh * GRID, : bw * GRID, :].reshape(*lead, GRID, bh, GRID, bw, 3)
    cells = x.astype(np.float32).mean(axis=(-4, -2))                       # (..., GRID, GRID, 3)
    cells -= cells.mean(axis=(-3, -2), keepdims=True)                     # each channel's mean removed
    v = cells.reshape(*lead, DIM)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    flat = norm <= FLAT_RMS * np.sqrt(DIM)
    return np.where(flat, 0.0, v / np.maximum(norm, 1e-3)).astype(np.float16)
