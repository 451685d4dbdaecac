"""bike.engine: the BIKE model and video reading (plain PyTorch + open_clip; no Ray, no storage).

    >>> import engine
    >>> model = engine.load_model("ViT-B-32", pretrained="openai")      # or checkpoint=..., random_init=True
    >>> result = model.classify("clip.mp4", labels="kinetics400")
    >>> result.labels[0].label, result.saliency

Importing the package is cheap: each public name is imported from its module on first use (PEP 562), so
``import engine.model.labels`` or ``import engine.model.config`` never pulls in torch or open_clip. The model
configs shipped in ``engine/configs`` (e.g. ``bike-tiny``) are registered with open_clip by
``engine.model.loading``, which every model construction goes through.

Subpackages, lowest first: ``engine.settings`` (the one settings object), ``engine.video`` (decoding, frame
sampling and transforms, the shot model), ``engine.sources`` (remote byte sources), ``engine.transcripts`` (text
channels: subtitles, OCR, speech) and ``engine.model`` (the BIKE model: towers, branches, weights, labels).
"""
from __future__ import annotations

from .lazy import lazy_exports
from pathlib import Path

#: Folder of the open_clip model configs shipped with the engine (registered by :mod:`engine.model.loading`).
CONFIGS = Path(__file__).parent / "configs"

#: public name → the submodule that defines it
_EXPORTS = {
    "AttributeHead": "model.attributes", "attribute_scores": "model.attributes",
    "attribute_sentence": "model.attributes", "fuse": "model.attributes", "top_attributes": "model.attributes",
    "DEFAULTS": "model.config",
    "LabelError": "model.labels", "LabelSet": "model.labels", "load_labels": "model.labels",
    "CheckpointError": "model.loading", "WeightsUnavailable": "model.loading", "load_weights": "model.loading",
    "BikeModel": "model.model", "LabelScore": "model.model", "Scores": "model.model", "load_model": "model.model",
    "Spotting": "model.spotting", "concept_spotting": "model.spotting",
    "TemporalTransformer": "model.temporal",
    "Clip": "video", "VideoError": "video", "VideoInfo": "video", "iter_clips": "video", "probe": "video",
    "read_video": "video",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
