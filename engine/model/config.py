"""Defaults in one place. Every command-line flag and API default reads from here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: CLIP's normalisation constants (docs/model.md §1).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: The single prompt template (docs/model.md §2).
PROMPT_TEMPLATE = "This is a video about {}"
#: Prefix of the attribute sentence (docs/model.md §5); phrases follow, joined by "," with no spaces.
ATTRIBUTE_PREFIX = "This is a video about "


@dataclass(frozen=True)
class Defaults:
    model: str = "ViT-B-32"
    pretrained: str = "openai"
    frames: int = 8
    window_s: float = 10.0
    labels: str = "kinetics400"
    lexicon: str = "kinetics400"
    top_k: int = 5
    attributes_k: int = 5
    tau: float = 0.01
    video_weight: float = 0.7
    attribute_weight: float = 0.3
    seed: int = 0
    dedup_threshold: float = 0.5     # bike dedup: frame-print similarity of a copy (bench/dedup.py)


DEFAULTS = Defaults()


def eval_sizes(image_size: int) -> tuple[int, int]:
    """(resize, crop) for evaluation: short side 256 → centre 224; 336-px models: 336 → 336 (docs/model.md §1)."""
    if image_size >= 336:
        return image_size, image_size
    return 256 * image_size // 224, image_size


def cache_root() -> "Path | None":
    """bike's cache folder: ``$BIKE_CACHE_DIR``, default ``~/.cache/bike``; None when it is set to an empty
    string (caches turned off). Text features (engine/model/textcache.py), thumbnails (jobs/serve/media.py) and
    local copies of an object-storage store's index (index/search/vectors.py) live under it."""
    from engine.settings import Settings
    env = Settings.from_env().cache_dir
    if env is None:
        return Path.home() / ".cache" / "bike"
    return Path(env) if env else None
