"""List files and clip loading for training, adaptation and evaluation (docs/model.md §6–§8).

List files (one sample per line, BIKE's formats; blank lines and ``#`` comments are skipped):

    path/to/video.mp4 LABEL              a video file
    path/to/frames_dir NUM_FRAMES LABEL  a folder of decoded frames (img_00001.jpg, ... sorted by name)
    path/to/video.mp4 LABEL1,LABEL2      multi-label (``--multilabel``)

``LABEL`` is a class id (row of the label CSV) or a class name (may contain spaces). Relative paths are
taken relative to the list file's folder. A bad line is a :class:`~jobs.errors.UsageError` naming
``file:line`` and the reason.

Clip loading:

- :class:`FrameReader` gets the frames at given indices of a sample: engine.video.read_frames (one ffmpeg process with a
  ``select`` filter: only the needed frames leave the decoder, short side capped at 256), or PIL for
  frame folders; short videos are decoded once and kept in a byte-bounded cache.
- :func:`train_clip`: one random frame per segment + :func:`engine.video.augment.augment_clip`.
- :func:`eval_views`: the ``clips × crops`` test views (docs/model.md §7); :func:`eval_clip` is its one
  view. Every evaluation view of a video file is decoded by ``engine.video.read_video`` (one path).
"""
from __future__ import annotations

import io
import math
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from engine.video.augment import AugmentConfig, augment_clip
from engine.video.transform import resized_size
from engine.model.labels import LabelSet
from engine.video.sampling import crop_boxes, random_segment_indices, segment_indices, view_offsets
from engine.video import VideoError, probe, read_frames

from jobs.errors import UsageError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: A video whose decoded frames take at most this many bytes is decoded whole once and cached.
CACHE_VIDEO_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Sample:
    """One line of a list file."""
    path: str
    labels: tuple          # class ids (one for single-label lists)
    num_frames: "int | None" = None   # frame folders only
    where: str = ""        # "list.txt:12", for error messages

    @property
    def label(self) -> int:
        return self.labels[0]

    @property
    def is_folder(self) -> bool:
        return self.num_frames is not None


# ---- list files ------------------------------------------------------------------------------------------

def _resolve_label(token: str, labels: LabelSet, where: str) -> int:
    if token in labels.names:
        return labels.index(token)
    if token.isdigit():
        i = int(token)
        if i < len(labels):
            return i
        raise UsageError(f"{where}: label id {i} is out of range (the label set has {len(labels)} classes)")
    raise UsageError(f"{where}: unknown label {token!r} (not a class name of {labels.name} nor a class id)")


def _parse_labels(text: str, labels: LabelSet, multilabel: bool, where: str) -> tuple:
    if text in labels.names or not multilabel:
        return (_resolve_label(text, labels, where),)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError(f"{where}: no label")
    return tuple(sorted({_resolve_label(p, labels, where) for p in parts}))


def _read_list_text(path: str) -> str:
    """A list file's text; one-line UsageError when it is not UTF-8 or cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start}); save the list as UTF-8") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read the list file: {e.strerror or e}") from None


def parse_list(path: str, labels: LabelSet, multilabel: bool = False, check_files: bool = True) -> list:
    """Read a list file → [:class:`Sample`]. Raises UsageError with ``file:line`` on a bad line."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: list file not found")
    base = os.path.dirname(os.path.abspath(path))
    samples = []
    with io.StringIO(_read_list_text(path)) as f:       # not UTF-8, unreadable: one line (UsageError)
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            parts = line.split()
            if len(parts) < 2:
                raise UsageError(f"{where}: expected 'path label' or 'dir num_frames label', got {line!r}")
            p = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
            folder = os.path.isdir(p)
            if folder:
                if len(parts) < 3 or not parts[1].isdigit():
                    raise UsageError(f"{where}: {parts[0]} is a folder: expected 'dir num_frames label'")
                n, label_text = int(parts[1]), " ".join(parts[2:])
                if n < 1:
                    raise UsageError(f"{where}: num_frames must be >= 1, got {n}")
            else:
                if check_files and not os.path.exists(p):
                    raise UsageError(f"{where}: {parts[0]}: file not found")
                if check_files and not os.path.isfile(p):        # a FIFO or /dev/zero would never end
                    raise UsageError(f"{where}: {parts[0]}: not a regular file (a pipe or device); give a video file")
                n, label_text = None, " ".join(parts[1:])
            samples.append(Sample(p, _parse_labels(label_text, labels, multilabel, where), n, where))
    if not samples:
        raise UsageError(f"{path}: the list holds no samples")
    return samples


def label_names_in_list(path: str) -> list:
    """Class names in a ``path label`` list in order of first appearance (for lists that use names)."""
    names = []
    with io.StringIO(_read_list_text(path)) as f:
        for raw in f:
            parts = raw.split()
            if len(parts) >= 2 and not raw.strip().startswith("#"):
                base = os.path.dirname(os.path.abspath(path))
                p = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
                name = " ".join(parts[2:] if os.path.isdir(p) else parts[1:])
                if name not in names:
                    names.append(name)
    return names


def split_holdout(samples: list, fraction: float, seed: int = 0) -> tuple:
    """(train, held-out): ``fraction`` of each class (by first label) held out, at least one per class
    when the class has two or more samples. Deterministic given ``seed``."""
    if fraction <= 0:
        return list(samples), []
    rng = np.random.default_rng(seed)
    by_class: dict = {}
    for i, s in enumerate(samples):
        by_class.setdefault(s.label, []).append(i)
    held = set()
    for idx in by_class.values():
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        held.update(rng.permutation(idx)[:k].tolist())
    return ([s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held])


def few_shot(samples: list, shots: int, seed: int = 0) -> list:
    """``shots`` samples of each class (by first label), chosen at random with ``seed``."""
    rng = np.random.default_rng(seed)
    by_class: dict = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    out = []
    for c in sorted(by_class):
        group = by_class[c]
        if len(group) < shots:
            raise UsageError(f"class {c} has {len(group)} samples in the list, fewer than --shots {shots}")
        out.extend(group[i] for i in sorted(rng.permutation(len(group))[:shots].tolist()))
    return out


# ---- decoding -------------------------------------------------------------------------------------------

def _folder_files(path: str) -> list:
    files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise VideoError(path, "frame folder holds no images (.jpg/.png)")
    return files


class FrameReader:
    """Frames of list samples at given indices, short side capped at ``resize`` (never upscaled here).

    ``cache_bytes`` bounds an LRU cache of whole decoded short videos (each at most
    ``CACHE_VIDEO_MAX_BYTES``); larger videos are decoded per request with a ``select`` filter.
    """

    def __init__(self, resize: int = 256, cache_bytes: int = 1 << 30):
        self.resize = resize
        self.cache_bytes = cache_bytes
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._cached = 0
        self._info: dict = {}

    def _video_info(self, path: str):
        info = self._info.get(path)
        if info is None:
            info = self._info[path] = probe(path)
        return info

    def num_frames(self, s: Sample) -> int:
        if s.is_folder:
            return max(1, min(s.num_frames, len(_folder_files(s.path))))
        if s.path in self._cache:
            return len(self._cache[s.path])
        return self._video_info(s.path).num_frames

    def _out_size(self, width: int, height: int) -> tuple:
        if min(width, height) <= self.resize:
            return width, height
        return resized_size(width, height, self.resize)

    def frames(self, s: Sample, indices) -> np.ndarray:
        """uint8 (len(indices), H, W, 3) frames of sample ``s`` at ``indices`` (repeats allowed)."""
        if s.is_folder:
            return self._folder_frames(s, indices)
        whole = self._cache.get(s.path)
        if whole is None:
            info = self._video_info(s.path)
            w, h = self._out_size(info.width, info.height)
            if info.num_frames * w * h * 3 <= CACHE_VIDEO_MAX_BYTES and self.cache_bytes > 0:
                whole = read_frames(s.path, None, w, h, info=info)
                self._remember(s.path, whole)
            else:
                wanted = sorted(set(int(i) for i in indices))
                got = read_frames(s.path, wanted, w, h, info=info)
                pos = {f: min(k, len(got) - 1) for k, f in enumerate(wanted)}   # stream shorter: last frame
                return got[[pos[int(i)] for i in indices]]
        self._cache.move_to_end(s.path)
        return whole[[min(int(i), len(whole) - 1) for i in indices]]

    def _remember(self, path: str, frames: np.ndarray) -> None:
        self._cache[path] = frames
        self._cached += frames.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes

    def _folder_frames(self, s: Sample, indices) -> np.ndarray:
        from PIL import Image
        files = _folder_files(s.path)
        out = []
        for i in indices:
            name = files[min(int(i), len(files) - 1)]
            try:
                with Image.open(os.path.join(s.path, name)) as im:
                    im = im.convert("RGB")
                    w, h = self._out_size(*im.size)
                    if (w, h) != im.size:
                        im = im.resize((w, h), Image.BICUBIC)
                    out.append(np.asarray(im))
            except OSError as e:
                raise VideoError(os.path.join(s.path, name), f"cannot read image: {e}") from None
        return np.stack(out)


# ---- clips ----------------------------------------------------------------------------------------------

def train_clip(reader: FrameReader, s: Sample, frames: int, rng: np.random.Generator,
               aug: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """A training clip of sample ``s``: one random frame per segment, augmented → uint8 (T, S, S, 3)."""
    idx = random_segment_indices(reader.num_frames(s), frames, rng)
    return augment_clip(reader.frames(s, idx), rng, aug)


def eval_clip(reader: FrameReader, s: Sample, frames: int, size: int = 224, resize: int = 256) -> np.ndarray:
    """The single eval view (T, S, S, 3): :func:`eval_views` with 1 clip × 1 crop, so training's held-out
    top-1, ``bike adapt`` and ``bike eval`` / ``bike classify`` see the same pixels."""
    return eval_views(reader, s, frames, size, resize, 1, 1)[0]


def eval_views(reader: FrameReader, s: Sample, frames: int, size: int = 224, resize: int = 256,
               clips: int = 1, crops: int = 1) -> np.ndarray:
    """The ``clips × crops`` test views of docs/model.md §7 → uint8 (V, T, S, S, 3), clip-major.

    Video files go through ``engine.video.read_video`` (the same decoding as ``bike classify``); frame
    folders are read here with the same sampling and crops.
    """
    if not s.is_folder:
        from engine.video import read_video
        return read_video(s.path, frames=frames, size=size, resize=resize, clips=clips, crops=crops).frames
    n = reader.num_frames(s)
    views = []
    for off in view_offsets(n, frames, clips):
        raw = reader.frames(s, segment_indices(n, frames, off))           # (T, h, w, 3)
        rw, rh = resized_size(raw.shape[2], raw.shape[1], resize)
        resized = _resize(raw, rh, rw)                                    # (T, rh, rw, 3)
        for y0, x0 in crop_boxes(rh, rw, size, crops):
            views.append(resized[:, y0:y0 + size, x0:x0 + size])
    return np.stack(views)


def _resize(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def batches(n: int, size: int):
    """Index ranges ``[i, i + size)`` covering ``range(n)``."""
    return [(i, min(n, i + size)) for i in range(0, n, max(1, size))]


def steps_per_epoch(num_samples: int, batch: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped so DDP ranks stay in step)."""
    return max(1, math.floor(num_samples / batch))
