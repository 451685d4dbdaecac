"""The loaded BIKE model: weights, caches and the forward of :mod:`engine.model.bike` (math: docs/model.md).

:func:`load_model` returns a :class:`BikeModel`; it is the one object behind ``bike classify``, the tagging
actors, eval, search, relabelling and adaptation. What the network is, is its :class:`engine.model.net.BikeConfig`
(``model.config``); its forward is the module :class:`engine.model.net.BikeNet` (``model.net``, the same module
training runs), here in eval mode under ``torch.no_grad`` at the model's precision (:mod:`engine.model.precision`).
Around it: weights, the text tower and its caches, label sets; the score comes from the branches named by
``branches``.
Shapes: B videos, T frames, C classes, L = 77 token positions, D width.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import open_clip
import torch

from engine.model import bike, textcache
from .attributes import BRANCHES, AttributeHead, attribute_sentence, fuse, top_attributes
from .config import DEFAULTS, eval_sizes
from .device import resolve_device
from .labels import LabelSet, load_labels
from .loading import Weights, load_weights
from .net import BikeConfig, BikeNet
from .precision import Precision
from .spotting import Spotting
from .temporal import TemporalTransformer
from .text import class_prompts, text_features


@dataclass
class TextFeatures:
    """End-of-text features (C, D) and all-token features (C, 77, D) of a list of texts."""
    texts: tuple
    cls: torch.Tensor
    tokens: torch.Tensor


@dataclass
class LabelScore:
    label: str
    score: float            # fused probability
    video_score: float      # video-branch probability
    attribute_score: "float | None"


#: The reason given for a video whose scores are not finite (``bike classify`` error, ``bike tag`` error row).
NONFINITE = "the model gave NaN or inf scores for this video (its weights overflow on it)"


@dataclass
class Scores:
    """Everything BIKE says about a batch of B clips for one label set."""
    labels: LabelSet
    fused: torch.Tensor                 # (B, C) probabilities from ``branches``
    video: torch.Tensor                 # (B, C) video-branch probabilities
    attribute: "torch.Tensor | None"    # (B, C) attributes-branch probabilities
    spotting: Spotting                  # logits (B, C), saliency (B, C, T), normalised frames
    features: torch.Tensor              # (B, T, D) frame features after the temporal header
    attributes: list                    # per clip: [(phrase, cosine)] * K
    sentences: list                     # per clip: the attribute sentence
    branches: str = "fused"             # which branches produced ``fused``: video | attributes | fused

    def finite(self) -> "list[bool]":
        """Per clip: whether every number given for it is finite, its frame features also in float16 (how a
        store keeps them). Finite weights can still overflow on some input (huge weights, fp16 towers)."""
        parts = [self.fused, self.video, self.spotting.saliency.flatten(1), self.features.flatten(1),
                 self.features.flatten(1).half()]
        if self.attribute is not None:
            parts.append(self.attribute)
        ok = torch.stack([torch.isfinite(p).all(dim=1) for p in parts]).all(0).tolist()
        return [bool(o) and all(math.isfinite(float(c)) for _, c in (self.attributes[b] if self.attributes else ()))
                for b, o in enumerate(ok)]

    def top(self, b: int, k: int = DEFAULTS.top_k) -> "list[LabelScore]":
        idx = self.fused[b].topk(min(k, self.fused.shape[1])).indices.tolist()
        att = self.attribute
        return [LabelScore(self.labels.names[c], float(self.fused[b, c]), float(self.video[b, c]),
                           None if att is None else float(att[b, c])) for c in idx]


def default_branches(weights: Weights) -> str:
    """Which branches score a model when none are asked for (docs/model.md §8, "Which branches").

    Trained attributes heads → ``fused`` (the authors' inference). A BIKE checkpoint without them (a released
    checkpoint, ``bike train --attr-epochs 0``) → ``video``: the authors evaluate such checkpoints on the
    video branch alone, and an untrained attributes branch would drown a trained video branch. Plain CLIP
    weights (open_clip tag, weights file, random init) → ``fused``, zero-shot on both branches.
    """
    if weights.attributes_state:
        return "fused"
    return "video" if weights.meta.get("checkpoint") else "fused"


class BikeModel:
    """A loaded BIKE model at a precision (``fp32`` exact; see :mod:`engine.model.precision`)."""

    def __init__(self, weights: Weights, frames: int = DEFAULTS.frames, device=None,
                 lexicon: "str | LabelSet" = DEFAULTS.lexicon, precision: str = "fp32",
                 branches: "str | None" = None):
        self.device = resolve_device(device)            # DeviceError: one clear line for a bad --device
        self.precision = Precision.of(precision, self.device)
        if branches is not None and branches not in BRANCHES:
            raise ValueError(f"branches must be one of {', '.join(BRANCHES)}, got {branches!r}")
        self.branches = branches or default_branches(weights)
        self.meta = dict(weights.meta)
        self.name = self.meta["name"]
        self.frames = frames
        self.clip = self.precision.cast(weights.clip.float())
        self.tokenizer = open_clip.get_tokenizer(self.name)
        self.embed_dim = int(self.clip.text_projection.shape[-1]) if isinstance(
            self.clip.text_projection, torch.Tensor) else int(self.clip.text_projection.out_features)
        text_width = int(self.clip.ln_final.weight.shape[0])
        header = None
        if weights.header_state:
            header = TemporalTransformer.from_state_dict(weights.header_state, heads=max(1, text_width // 64))
            # fp32 on the CPU at every precision: bf16 measured no faster (bench/model.py; it is <1% of the
            # image tower's work) and it would round H, where the saliency is read; autocast on CUDA
            header = header.float().eval().to(self.device)
        attribute_head = None
        if weights.attributes_state:
            attribute_head = AttributeHead(self.embed_dim)
            attribute_head.load_state_dict(weights.attributes_state, strict=True)
            attribute_head = attribute_head.float().eval().to(self.device)   # tiny: always fp32
        self.config = BikeConfig(
            name=self.name, frames=frames, header=header is not None,
            header_layers=len(header.transformer.resblocks) if header is not None else 0,
            attributes_head=attribute_head is not None, branches=self.branches, precision=self.precision.name)
        #: the one module of BIKE's forward (engine/model/net.py), run here in eval mode under no_grad
        self.net = BikeNet(self.clip.visual, self.clip.logit_scale, header, attribute_head, self.config,
                           self.precision).eval()
        self.checkpoint_labels = weights.labels
        self.class_features = None        # adapted text side of a `bike adapt` checkpoint (names, cls, tokens)
        if weights.class_features:
            cf = weights.class_features
            self.class_features = {"names": tuple(cf["names"]), "cls": cf["cls"].float().to(self.device),
                                   "tokens": cf["tokens"].float().to(self.device)}
        size = self.clip.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.resize, self.crop = eval_sizes(self.image_size)
        self.lexicon = load_labels(lexicon)
        self._text_cache: "OrderedDict[tuple, TextFeatures]" = OrderedDict()
        self._sentence_cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    # ---- identity ------------------------------------------------------------------------------------
    @property
    def header(self) -> "TemporalTransformer | None":
        """The temporal header (§3), or None (H = X)."""
        return self.net.header

    @property
    def attribute_head(self) -> "AttributeHead | None":
        """The trained attributes heads (§5), or None (zero-shot cosine)."""
        return self.net.attribute_head

    @property
    def random_init(self) -> bool:
        return bool(self.meta.get("random_init"))

    def describe(self) -> str:
        """One line naming the weights, precision and branches; random weights are said loudly."""
        m = self.meta
        src = (f"checkpoint {m['checkpoint']} (trained from RANDOM WEIGHTS)" if m.get("checkpoint") and
               m.get("random_init") else f"checkpoint {m['checkpoint']}" if m.get("checkpoint") else
               f"weights {m['pretrained']}" if m.get("pretrained") else "RANDOM WEIGHTS (--random-init)")
        hdr = "temporal header" if self.header is not None else "no temporal header"
        att = "trained attributes head" if self.attribute_head is not None else "zero-shot attributes"
        return (f"{self.name}, {src}, {self.frames} frames, {hdr}, {att}, branches {self.branches}, "
                f"precision {self.precision.name}")

    def fingerprint(self) -> dict:
        """What determines this model's numbers (used for store model ids). fp32 + fused models keep the
        fingerprint they had before precision and branches existed, so their stores stay valid."""
        fp = {"name": self.name, "weights": self.meta.get("weights_sha"), "frames": self.frames,
              "lexicon": self.lexicon.digest, "random_init": self.random_init}
        if self.precision.name != "fp32":
            fp["precision"] = self.precision.name
        if self.branches != "fused":
            fp["branches"] = self.branches
        return fp

    # ---- encoders ------------------------------------------------------------------------------------
    def preprocess(self, frames: "np.ndarray | torch.Tensor") -> torch.Tensor:
        """uint8 (..., S, S, 3) already resized and cropped → normalised float (..., 3, S, S) on the device."""
        return bike.normalise(frames, self.device)

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor, batch: int = bike.FRAME_BATCH) -> torch.Tensor:
        """(B, T, 3, H, W) normalised frames → raw frame features X (B, T, D) float32; each frame alone."""
        return self.net.frame_features(frames.to(self.device), batch)

    @torch.no_grad()
    def _run_text(self, texts, batch: int = 128):
        cls, tok = [], []
        for i in range(0, len(texts), batch):
            ids = self.tokenizer(list(texts[i:i + batch])).to(self.device)
            with self.precision.run():
                c, t = text_features(self.clip, ids)
            cls.append(c.float())
            tok.append(t.float())
        return torch.cat(cls), torch.cat(tok)

    def _cached_text(self, texts):
        """Text features of a long list (label set, lexicon) from the disk cache, else computed and stored."""
        weights_id = self.meta.get("weights_sha")
        if len(texts) < textcache.MIN_TEXTS or not weights_id:
            return self._run_text(texts)
        key = textcache.cache_key(weights_id, self.name, texts, self.precision.name)
        hit = textcache.load(key)
        if hit is not None:
            return hit[0].to(self.device), hit[1].to(self.device)
        cls, tok = self._run_text(texts)
        textcache.save(key, cls, tok)
        return cls, tok

    def encode_text(self, prompts):
        """List of strings → ``(cls (C, D), tokens (C, 77, D))`` float32 (docs/model.md §2). Cached per text list."""
        key = tuple(prompts)
        hit = self._text_cache.get(key)
        if hit is None:
            hit = TextFeatures(key, *self._cached_text(key))
            self._text_cache[key] = hit
            while len(self._text_cache) > 8:
                self._text_cache.popitem(last=False)
        return hit.cls, hit.tokens

    def sentence_features(self, sentences) -> torch.Tensor:
        """End-of-text features (B, D) of attribute sentences; each distinct sentence is encoded once."""
        if not len(sentences):
            return torch.empty(0, self.embed_dim, device=self.device)
        found = {s: self._sentence_cache[s] for s in sentences if s in self._sentence_cache}
        missing = [s for s in dict.fromkeys(sentences) if s not in found]
        if missing:
            found.update(zip(missing, self._run_text(missing)[0]))
            self._sentence_cache.update((s, found[s]) for s in missing)
            while len(self._sentence_cache) > 4096:
                self._sentence_cache.popitem(last=False)
        return torch.stack([found[s] for s in sentences])

    def label_features(self, labels: "str | LabelSet") -> TextFeatures:
        """Class prompt features; the checkpoint's adapted ones when the label names are exactly its own."""
        labels = load_labels(labels)
        prompts = class_prompts(labels.names)
        stored = self.class_features
        if stored is not None and tuple(stored["names"]) == tuple(labels.names):
            return TextFeatures(tuple(prompts), stored["cls"], stored["tokens"])
        cls, tok = self.encode_text(prompts)
        return TextFeatures(tuple(prompts), cls, tok)

    def lexicon_features(self) -> torch.Tensor:
        """End-of-text features (N, D) of the attribute lexicon phrases, embedded as they are."""
        return self.encode_text(self.lexicon.names)[0]

    # ---- video branch --------------------------------------------------------------------------------
    @torch.no_grad()
    def temporal(self, frame_features: torch.Tensor) -> torch.Tensor:
        """H (B, T, D) float32: the temporal header when loaded (H = blocks(X + P) + X), else H = X."""
        return self.net.temporal(frame_features.to(self.device))

    @torch.no_grad()
    def spot(self, frame_features: torch.Tensor, cls: torch.Tensor, tokens: torch.Tensor) -> Spotting:
        """Header + concept spotting on raw frame features (B, T, D)."""
        return self.net.spot(self.temporal(frame_features), tokens, cls)

    def video_logits(self, frame_features: torch.Tensor, cls: torch.Tensor, tokens: torch.Tensor):
        """Video-branch logits (B, C): temporal header (when loaded) + concept spotting."""
        return self.spot(frame_features, cls, tokens).logits

    # ---- attributes branch ---------------------------------------------------------------------------
    @torch.no_grad()
    def attributes(self, frame_features: torch.Tensor, k: "int | None" = None):
        """Top-k lexicon phrases per clip from the mean raw frame feature → (phrases, cosines, sentences);
        ``k`` defaults to ``config.attributes_k``."""
        k = self.config.attributes_k if k is None else k
        scores, idx = top_attributes(frame_features.to(self.device), self.lexicon_features(), k)
        phrases = [[self.lexicon.names[i] for i in row] for row in idx.tolist()]
        return phrases, scores.cpu(), [attribute_sentence(p) for p in phrases]

    @torch.no_grad()
    def attribute_logits(self, sentences, class_cls: torch.Tensor) -> torch.Tensor:
        """Attributes-branch scores (B, C) of attribute sentences against class end-of-text features."""
        return self.net.attribute_logits(self.sentence_features(sentences), class_cls.to(self.device))

    # ---- the branches and their fusion ---------------------------------------------------------------
    @torch.no_grad()
    def score_features(self, frame_features: torch.Tensor, labels: "str | LabelSet") -> Scores:
        """Score raw frame features X (B, T, D) against a label set: top attributes from X, the header,
        then :meth:`score`."""
        phrases, cos, sentences = self.attributes(frame_features)
        attributes = [list(zip(p, c.tolist())) for p, c in zip(phrases, cos)]
        return self.score(self.temporal(frame_features), labels, sentences, attributes)

    @torch.no_grad()
    def score(self, features: torch.Tensor, labels: "str | LabelSet", sentences, attributes=None) -> Scores:
        """Score header outputs H (B, T, D) with their attribute sentences (one per clip) → :class:`Scores`.

        The video branch always runs (its saliency is reported); the attributes branch runs when
        :attr:`branches` uses it; the probabilities come from :attr:`branches` (docs/model.md §5, §8).
        ``bike relabel`` calls this on stored header outputs and stored attribute phrases.
        """
        labels = load_labels(labels)
        text = self.label_features(labels)
        features = features.to(self.device, torch.float32)
        spotting = self.net.spot(features, text.tokens, text.cls)
        attr_logits = None if self.branches == "video" else self.attribute_logits(sentences, text.cls)
        probs, pv, pa = fuse(spotting.logits, attr_logits, self.branches, self.config.video_weight,
                             self.config.attribute_weight)
        return Scores(labels, probs.cpu(), pv.cpu(), None if pa is None else pa.cpu(),
                      Spotting(spotting.logits.cpu(), spotting.saliency.cpu(), spotting.frames.cpu()),
                      features.cpu(), attributes or [], list(sentences), self.branches)

    def score_frames(self, frames: np.ndarray, labels: "str | LabelSet") -> Scores:
        """uint8 (B, T, S, S, 3) clips → :class:`Scores`."""
        return self.score_features(self.encode_frames(self.preprocess(frames)), labels)

    def classify(self, video_path: str, labels: "str | LabelSet" = DEFAULTS.labels, clips: int = 1,
                 crops: int = 1, top_k: int = DEFAULTS.top_k):
        """The pipeline behind ``bike classify``: decode, score every view, average, top-k."""
        from .classify import classify_video
        return classify_video(self, video_path, labels, clips=clips, crops=crops, top_k=top_k)


def load_model(name: "str | None" = DEFAULTS.model, pretrained: "str | None" = None,
               checkpoint: "str | None" = None, random_init: bool = False, frames: int = DEFAULTS.frames,
               device=None, lexicon: "str | LabelSet" = DEFAULTS.lexicon, seed: int = DEFAULTS.seed,
               trust_checkpoint: bool = False, expect_sha: "str | None" = None,
               precision: str = "fp32", branches: "str | None" = None) -> BikeModel:
    """Load a BIKE model: ``pretrained`` an open_clip tag or a weights file, or ``checkpoint`` a BIKE
    checkpoint (any CLIP size: the architecture is read from the file when ``name`` is None), or
    ``random_init=True``. With none of them, the OpenAI weights are tried.
    ``trust_checkpoint`` / ``expect_sha``: see ``engine.model.loading`` (safe loading, hash checked first).

    ``precision``: ``fp32`` (exact, the default of the Python API), ``bf16``, ``fp16`` or ``auto`` (what the
    hardware runs fastest: see :mod:`engine.model.precision`). ``branches``: ``video``, ``attributes`` or
    ``fused``; None = the model's default (:func:`default_branches`)."""
    if not (pretrained or checkpoint or random_init):
        pretrained = DEFAULTS.pretrained
    weights = load_weights(name, pretrained=pretrained, checkpoint=checkpoint, random_init=random_init, seed=seed,
                           trust_checkpoint=trust_checkpoint, expect_sha=expect_sha)
    return BikeModel(weights, frames=frames, device=device, lexicon=lexicon, precision=precision,
                     branches=branches)
