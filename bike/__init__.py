"""bike — video search and tagging with BIKE (CVPR 2023): the public Python API.

    >>> import bike
    >>> model = bike.load_model("ViT-B-32", pretrained="openai")        # or checkpoint=..., random_init=True
    >>> r = bike.classify("clip.mp4", model=model, labels="ucf101")      # a ClassifyResult
    >>> r.labels[0].label, r.labels[0].score, r.saliency, r.frame_times
    >>> summary = bike.tag(["~/videos"], store="tags/", model="bike-tiny", random_init=True)   # a TagSummary
    >>> hits = bike.Searcher("tags/").search("a dog catches a frisbee", k=5)   # SearchResults of SearchResult
    >>> hits[0].path, hits[0].start_s, hits[0].moment_s
    >>> columns, rows = bike.sql("tags/", "SELECT label, count(*) FROM labels WHERE rank = 0 GROUP BY 1")

Everything the CLI prints comes from these objects (``bike ... --format json`` is their ``to_dict()``
or dataclass fields). Importing ``bike`` is cheap: the names below are imported from the ``engine``, ``index``
and ``jobs`` packages on first use, so ``import bike`` does not load torch until a model is needed.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:                                     # what type checkers see (the package ships py.typed)
    from engine.model.classify import AttributeScore, ClassifyResult
    from engine.model.labels import LabelError, LabelSet, load_labels
    from engine.model.loading import CheckpointError, WeightsUnavailable
    from engine.model.model import BikeModel, LabelScore, load_model
    from engine.video import VideoError, read_video
    from index.search.search import ClipLabel, SearchResult, SearchResults, Searcher
    from index.store import Store, StoreError
    from jobs.tag.tag import TagSummary

__version__ = "0.1.0"

#: public name → "module:attribute"
_EXPORTS = {
    "load_model": "engine.model.model:load_model",
    "BikeModel": "engine.model.model:BikeModel",
    "LabelScore": "engine.model.model:LabelScore",
    "ClassifyResult": "engine.model.classify:ClassifyResult",
    "AttributeScore": "engine.model.classify:AttributeScore",
    "LabelSet": "engine.model.labels:LabelSet",
    "load_labels": "engine.model.labels:load_labels",
    "read_video": "engine.video:read_video",
    "Searcher": "index.search.search:Searcher",
    "SearchResult": "index.search.search:SearchResult",
    "ClipLabel": "index.search.search:ClipLabel",
    "SearchResults": "index.search.search:SearchResults",
    "Store": "index.store.core:Store",
    "TagSummary": "jobs.tag.tag:TagSummary",
    "VideoError": "engine.video:VideoError",
    "LabelError": "engine.model.labels:LabelError",
    "CheckpointError": "engine.model.loading:CheckpointError",
    "WeightsUnavailable": "engine.model.loading:WeightsUnavailable",
    "StoreError": "index.store.core:StoreError",
}

__all__ = sorted([*_EXPORTS, "classify", "tag", "search", "sql", "__version__"])


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'bike' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_EXPORTS))


def classify(video: str, model: "BikeModel | None" = None, labels: "str | LabelSet | list[str] | None" = None,
             *, clips: int = 1, crops: int = 1, top: int = 5, **model_kwargs: Any) -> "ClassifyResult":
    """Classify one video as ``bike classify`` does. ``model``: a loaded model (else ``load_model(**model_kwargs)``);
    ``labels``: a label set (default: the checkpoint's own classes when it carries them, else Kinetics-400)."""
    from engine.model.classify import classify_video
    from engine.model.config import DEFAULTS
    from engine.model.model import load_model as _load
    if model is None:
        model = _load(**model_kwargs)
    if labels is None:
        labels = list(model.checkpoint_labels) if model.checkpoint_labels else DEFAULTS.labels
    return classify_video(model, video, labels, clips=clips, crops=crops, top_k=top)


def tag(sources: "str | Iterable[str]", store: str, labels: "str | LabelSet | list[str] | None" = None, *,
        window: "float | None" = 10.0, force: bool = False, address: "str | None" = None, index: bool = True,
        progress: bool = False, **model_kwargs: Any) -> "TagSummary":
    """Tag videos (files, folders, globs, list files) into ``store`` as ``bike tag`` does, on Ray (a local
    one unless ``address``; Ray already initialised in this process is used as it is). ``model_kwargs`` are
    :func:`load_model`'s (``name`` or ``model``, ``pretrained``, ``checkpoint``, ``random_init``, ``frames``...)."""
    from engine.model.config import DEFAULTS
    from jobs.tag.tag import TagOptions, run_tag
    if "model" in model_kwargs:
        model_kwargs["name"] = model_kwargs.pop("model")
    if labels is None:
        from jobs.cli.options import checkpoint_labels
        labels = checkpoint_labels(model_kwargs.get("checkpoint")) or DEFAULTS.labels
    opts = TagOptions(sources=[sources] if isinstance(sources, str) else list(sources), store=store,
                      labels=labels, model_kwargs=model_kwargs, window_s=window or None, address=address,
                      force=force, index=index, progress=progress)
    return run_tag(opts, log=lambda msg: None)


def search(store: "str | Store", query: str, k: int = 10, **kwargs: Any) -> "SearchResults":
    """One search (loads the model each call: keep a :class:`Searcher` for many queries)."""
    from index.search.search import search as _search
    return _search(store, query, k=k, **kwargs)


def sql(store: "str | Store", query: str) -> "tuple[list[str], list[tuple]]":
    """Read-only SQL over a store's views (``bike sql``): ``(columns, rows)``."""
    from index.store.sql import query as _query
    from index.store import Store as _Store
    return _query(store if isinstance(store, _Store) else _Store(store), query)
