"""The one resize rule of bike: the size a frame is scaled to before its square crops are cut.

Every path that resizes frames uses :func:`resized_size` — the decoders (``engine.video.clips``: what
``bike classify``/``tag`` see), the training augmentation and evaluation view (``engine.video.augment``) and the
training frame reader (``jobs.train.datasets``) — so a frame of a given size lands on the same grid whichever
path read it.

The rule: the short side becomes ``short`` exactly, the aspect ratio is kept, and the long side is rounded
to the nearest even number (never below ``short``). Even sizes keep chroma-subsampled (4:2:0) pixel
formats whole when FFmpeg scales.
"""
from __future__ import annotations


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(w, h) with the short side = ``short`` and the aspect kept; the long side rounded to even.

    >>> resized_size(64, 48, 256)      # 4:3 → 341.33 → 342
    (342, 256)
    >>> resized_size(50, 100, 256)
    (256, 512)
    """
    if width <= height:
        return short, max(short, 2 * round(height * short / width / 2))
    return max(short, 2 * round(width * short / height / 2)), short
