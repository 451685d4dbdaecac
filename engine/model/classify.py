"""``bike classify``: one video → top labels, attributes and the top label's saliency over its frames."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .config import DEFAULTS
from .labels import LabelSet, load_labels
from .model import NONFINITE, LabelScore
from engine.video import VideoError, read_video


class ScorePair:
    """Base of the small frozen dataclasses of a name and its score (:class:`AttributeScore`,
    ``index.search.search.ClipLabel``): they also unpack and index as the ``(name, score)`` pairs of earlier versions."""
    __slots__ = ()

    def _pair(self) -> tuple:
        name, score = fields(self)
        return getattr(self, name.name), getattr(self, score.name)

    def __iter__(self):
        return iter(self._pair())

    def __getitem__(self, i):           # a[0]: as the pairs of earlier versions
        return self._pair()[i]


@dataclass(frozen=True)
class AttributeScore(ScorePair):
    """One attribute phrase of the lexicon and its cosine; unpacks as ``phrase, score`` like the pairs it replaced."""
    attribute: str
    score: float


@dataclass
class ClassifyResult:
    video: str
    labels: list            # [LabelScore] best first: score (from ``branches``), video / attributes probabilities
    attributes: list        # [AttributeScore] top-K lexicon phrases (attribute, cosine)
    saliency: list          # top label's saliency per sampled frame (sums to 1)
    frame_times: list       # timestamp (s) of each sampled frame
    model: str              # which weights produced this (random weights are named)
    random_init: bool
    views: int = 1
    branches: str = "fused"  # which branches produced ``score``: video | attributes | fused
    precision: str = "fp32"  # what the towers and header ran at

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attributes"] = [{"attribute": a, "score": s} for a, s in self.attributes]
        return d


def classify_video(model, path: str, labels: "str | LabelSet" = DEFAULTS.labels, clips: int = 1,
                   crops: int = 1, top_k: int = DEFAULTS.top_k) -> ClassifyResult:
    """Decode ``clips`` × ``crops`` views of the whole video, score each, average the probabilities
    (docs/model.md §7). Attributes and saliency are reported for the first view."""
    labels = load_labels(labels)
    clip = read_video(path, frames=model.frames, size=model.crop, resize=model.resize, clips=clips, crops=crops)
    scores = model.score_frames(clip.frames, labels)                        # B = views
    if not all(scores.finite()):
        raise VideoError(path, NONFINITE)
    fused = scores.fused.mean(0, keepdim=True)
    video = scores.video.mean(0, keepdim=True)
    attr = None if scores.attribute is None else scores.attribute.mean(0, keepdim=True)
    idx = fused[0].topk(min(top_k, len(labels))).indices.tolist()
    top = [LabelScore(labels.names[c], float(fused[0, c]), float(video[0, c]),
                      None if attr is None else float(attr[0, c])) for c in idx]
    t = model.frames
    return ClassifyResult(
        video=path, labels=top, attributes=[AttributeScore(str(a), float(c)) for a, c in scores.attributes[0]],
        saliency=[float(x) for x in scores.spotting.saliency[0, idx[0]]],
        frame_times=[float(x) for x in clip.frame_times[:t]],
        model=model.describe(), random_init=model.random_init, views=int(clip.frames.shape[0]),
        branches=scores.branches, precision=model.precision.name)
