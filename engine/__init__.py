"""bike.engine: the BIKE model and video reading (plain PyTorch + open_clip; no Ray, no storage).

    >>> import engine
    >>> model = engine.load_model("ViT-B-32", pretrained="openai")      # or checkpoint=..., random_init=True
    >>> result = model.classify("clip.mp4", labels="kinetics400")
    >>> result.labels[0].label, result.saliency

Importing the package is cheap: each public name is imported from its module on first use (PEP 562), so
``import engine.labels`` or ``import engine.config`` never pulls in torch or open_clip. The model configs
shipped in ``engine/configs`` (e.g. ``bike-tiny``) are registered with open_clip by ``engine.loading``,
which every model construction goes through.
"""
from __future__ import annotations

import importlib
from pathlib import Path

#: Folder of the open_clip model configs shipped with the engine (registered by :mod:`engine.loading`).
CONFIGS = Path(__file__).parent / "configs"

#: public name → the submodule that defines it
_EXPORTS = {
    "AttributeHead": "attributes", "attribute_scores": "attributes", "attribute_sentence": "attributes",
    "fuse": "attributes", "top_attributes": "attributes",
    "DEFAULTS": "config",
    "LabelError": "labels", "LabelSet": "labels", "load_labels": "labels",
    "CheckpointError": "loading", "WeightsUnavailable": "loading", "load_weights": "loading",
    "BikeModel": "model", "LabelScore": "model", "Scores": "model", "load_model": "model",
    "Spotting": "spotting", "concept_spotting": "spotting",
    "TemporalTransformer": "temporal",
    "Clip": "video", "VideoError": "video", "VideoInfo": "video", "iter_clips": "video", "probe": "video",
    "read_video": "video",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value                      # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
