"""bike.engine: the BIKE model and video reading (plain PyTorch + open_clip; no Ray, no storage).

    >>> import engine
    >>> model = engine.load_model("ViT-B-32", pretrained="openai")      # or checkpoint=..., random_init=True
    >>> result = model.classify("clip.mp4", labels="kinetics400")
    >>> result.labels[0].label, result.saliency
"""
from __future__ import annotations

from pathlib import Path

import open_clip

# Register the model configs shipped with the engine (e.g. "bike-tiny", a tiny random-init CLIP for tests).
open_clip.add_model_config(Path(__file__).parent / "configs")

from .attributes import AttributeHead, attribute_scores, attribute_sentence, fuse, top_attributes  # noqa: E402
from .config import DEFAULTS  # noqa: E402
from .labels import LabelError, LabelSet, load_labels  # noqa: E402
from .loading import CheckpointError, WeightsUnavailable, load_weights  # noqa: E402
from .model import BikeModel, LabelScore, Scores, load_model  # noqa: E402
from .spotting import Spotting, concept_spotting  # noqa: E402
from .temporal import TemporalTransformer  # noqa: E402
from .video import Clip, VideoError, VideoInfo, iter_clips, probe, read_video  # noqa: E402

__all__ = [
    "AttributeHead", "BikeModel", "CheckpointError", "Clip", "DEFAULTS", "LabelError", "LabelScore",
    "LabelSet", "Scores", "Spotting", "TemporalTransformer", "VideoError", "VideoInfo", "WeightsUnavailable",
    "attribute_scores", "attribute_sentence", "concept_spotting", "fuse", "iter_clips", "load_labels",
    "load_model", "load_weights", "probe", "read_video", "top_attributes",
]
