"""Training augmentation of docs/model.md §6, applied to a whole clip at once (same draw for every frame).

    short side → 256,  random resized crop (area 0.08–1, aspect 3/4–4/3) → 224,
    horizontal flip (p 0.5),  grayscale (p 0.2)

Plain functions on uint8 ``(T, H, W, 3)`` arrays; randomness comes from a ``numpy.random.Generator``
the caller owns, so a clip's augmentation is reproducible from a seed. The crop box is drawn in the
coordinates of the frame resized to short side 256 (so its area and aspect distributions are exactly
the ones above) and the source pixels under it are resampled once, straight to 224 px: the same crop
as resizing twice, with one interpolation instead of two.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .transform import resized_size

#: ITU-R 601 luma weights (what torchvision's Grayscale uses).
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 224                      # output side
    resize: int = 256                    # short side before cropping
    scale: tuple = (0.08, 1.0)           # crop area as a fraction of the resized frame
    ratio: tuple = (3 / 4, 4 / 3)        # crop aspect (width / height)
    flip: float = 0.5                    # probability of a horizontal flip
    gray: float = 0.2                    # probability of grayscale


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """A crop ``(y0, x0, h, w)`` of a height×width frame with area fraction in ``scale`` and aspect
    w/h in ``ratio`` (log-uniform), as torchvision's RandomResizedCrop: 10 tries, then the largest
    centred crop whose aspect is clamped into ``ratio``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            return y0, x0, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resample(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut ``box`` (y0, x0, h, w) out of uint8 (T, H, W, 3) frames and resize it to (T, size, size, 3)
    with bicubic antialiased interpolation."""
    y0, x0, h, w = box
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0:y0 + h, x0:x0 + w]))    # (T, h, w, 3)
    x = x.permute(0, 3, 1, 2).float()                                               # (T, 3, h, w)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def hflip(frames: np.ndarray) -> np.ndarray:
    """Mirror left–right: (T, H, W, 3) → (T, H, W, 3)."""
    return np.ascontiguousarray(frames[:, :, ::-1])


def grayscale(frames: np.ndarray) -> np.ndarray:
    """Luma replicated into the three channels: (T, H, W, 3) uint8 → same shape."""
    y = frames.astype(np.float32) @ np.asarray(LUMA, np.float32)                      # (T, H, W)
    y = np.clip(np.round(y), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def augment_clip(frames: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()):
    """The BIKE training augmentation of one clip: uint8 (T, H, W, 3) → uint8 (T, size, size, 3).

    One crop box, one flip decision and one grayscale decision for the whole clip.
    """
    _, height, width, _ = frames.shape
    rw, rh = resized_size(width, height, cfg.resize)                    # the short-side-256 frame
    y0, x0, h, w = random_resized_crop_box(rh, rw, rng, cfg.scale, cfg.ratio)
    sy, sx = height / rh, width / rw                                       # back to source pixels
    box = (int(round(y0 * sy)), int(round(x0 * sx)),
           max(1, int(round(h * sy))), max(1, int(round(w * sx))))
    out = resample(frames, box, cfg.size)
    if rng.random() < cfg.flip:
        out = hflip(out)
    if rng.random() < cfg.gray:
        out = grayscale(out)
    return out


def center_view(frames: np.ndarray, size: int = 224, resize: int = 256) -> np.ndarray:
    """The evaluation view: short side → ``resize``, centre ``size`` crop. uint8 (T, H, W, 3) in and out."""
    _, height, width, _ = frames.shape
    rw, rh = resized_size(width, height, resize)
    sy, sx = height / rh, width / rw
    y0, x0 = (rh - size) // 2, (rw - size) // 2
    box = (int(round(y0 * sy)), int(round(x0 * sx)), max(1, int(round(size * sy))), max(1, int(round(size * sx))))
    return resample(frames, box, size)
