"""BIKE as one ``nn.Module`` (:class:`BikeNet`) and its typed configuration (:class:`BikeConfig`).

nanoGPT-style: one config dataclass says what the network is, one module owns the forward, and both inference
and training run it. ``engine.model.model.BikeModel`` (classify, tag, eval, search, relabel, adapt) holds a
``BikeNet`` in eval mode and calls it under ``torch.no_grad``; ``jobs.train.learner.VideoLearner`` *is* a
``BikeNet`` (plus the frozen class features as buffers) that DDP wraps and trains. The steps are the
functions of :mod:`engine.model.bike` (math: docs/model.md)::

    frames (B, T, 3, S, S) ─ visual, per frame ─▶ X (B, T, D) ─ header (optional) ─▶ H (B, T, D)
    H vs C texts (tokens (C, 77, D), cls (C, D)) ─ VCS (or mean pooling) ─▶ raw logits (B, C)
    forward = raw logits · exp(logit_scale)                        (training's scaled logits, §4 / §6)
    attribute sentences (B, D) vs cls ─ zero-shot cosine or the trained heads ─▶ scores (B, C)     §5

Precision, the one place it differs between the two uses: at inference the towers are *stored* at the
model's precision (:class:`engine.model.precision.Precision`: cast weights on the CPU, autocast on CUDA);
in training the weights stay fp32 and the image tower runs under autocast (:attr:`BikeNet.amp`). The
header, concept spotting, the loss and fusion are fp32 in both (a softmax at tau = 0.01).

The text tower is not part of this module: its features are computed once per label set (frozen in
training, cached at inference; ``BikeModel.label_features``) and passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import bike
from .attributes import BRANCHES, attribute_scores
from .config import DEFAULTS
from .gather import all_gather_local_grad
from .precision import Precision
from .spotting import Spotting

POOLINGS = ("vcs", "mean")


@dataclass(frozen=True)
class BikeConfig:
    """What a BIKE network is: architecture, clip length, which parts it has, and the constants of its math.

    ``name`` the open_clip architecture (``ViT-B-32``, ``bike-tiny``, an ``inferred-...`` name); ``frames`` T
    per clip; ``header`` / ``header_layers`` the temporal header (§3) and its depth; ``attributes_head``
    whether the attributes branch has trained heads (else zero-shot cosine, §5); ``attributes_k`` phrases per
    clip; ``branches`` which branches give the probabilities (§8); ``precision`` of the towers at inference;
    ``pooling`` ``vcs`` (BIKE) or ``mean`` (the order-blind baseline, training only); ``tau`` the temperature
    of concept spotting (§4); ``video_weight`` / ``attribute_weight`` the fusion weights (§5)."""
    name: str = DEFAULTS.model
    frames: int = DEFAULTS.frames
    header: bool = True
    header_layers: int = 6
    attributes_head: bool = False
    attributes_k: int = DEFAULTS.attributes_k
    branches: str = "fused"
    precision: str = "fp32"
    pooling: str = "vcs"
    tau: float = DEFAULTS.tau
    video_weight: float = DEFAULTS.video_weight
    attribute_weight: float = DEFAULTS.attribute_weight

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be 'vcs' or 'mean', got {self.pooling!r}")
        if self.branches not in BRANCHES:
            raise ValueError(f"branches must be one of {', '.join(BRANCHES)}, got {self.branches!r}")
        if self.frames < 1 or self.tau <= 0:
            raise ValueError(f"frames must be >= 1 and tau > 0, got {self.frames}, {self.tau}")


class BikeNet(nn.Module):
    """BIKE's image side as one module: image tower, optional temporal header, optional attributes heads,
    CLIP's ``logit_scale``; the class (or query) text features are arguments. See the module docstring."""

    def __init__(self, visual: nn.Module, logit_scale: nn.Parameter, header: "nn.Module | None" = None,
                 attribute_head: "nn.Module | None" = None, config: "BikeConfig | None" = None,
                 precision: "Precision | None" = None):
        super().__init__()
        self.config = config or BikeConfig()
        self.visual = visual
        self.header = header
        self.attribute_head = attribute_head
        self.logit_scale = logit_scale                    # shared with the CLIP model: saved with it
        #: inference: how the towers are stored and run (None: as they are, fp32)
        self.precision = precision
        #: training: autocast dtype of the image tower over fp32 master weights, or None (``bike train
        #: --precision``, :func:`jobs.train.learner.training_precision`)
        self.amp: "torch.dtype | None" = None

    @property
    def tau(self) -> float:
        return self.config.tau

    @property
    def pooling(self) -> str:
        return self.config.pooling

    def frame_features(self, frames: torch.Tensor, batch: int = bike.FRAME_BATCH) -> torch.Tensor:
        """(B, T, 3, S, S) normalised frames → raw frame features X (B, T, D) float32, each frame alone (§1).
        With :attr:`amp` the tower runs under autocast and X comes back in fp32."""
        if self.amp is None:
            return bike.frame_features(self.visual, frames, self.precision, batch)
        with torch.autocast(frames.device.type, dtype=self.amp):
            x = bike.frame_features(self.visual, frames, None, batch)
        return x.float()

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        """H (B, T, D) float32: H = blocks(X + P[:T]) + X with the header, else H = X (§3)."""
        return bike.temporal(self.header, x, self.precision)

    def spot(self, h: torch.Tensor, tokens: torch.Tensor, cls: torch.Tensor) -> Spotting:
        """Video Concept Spotting of H against C texts: logits (B, C), saliency (B, C, T), Hn (§4)."""
        return bike.video_branch(h, tokens, cls, self.tau)

    def video_logits(self, h: torch.Tensor, tokens: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Raw video-branch logits (B, C) of H: VCS, or mean pooling with ``config.pooling == "mean"``."""
        return bike.video_logits(h, tokens, cls, self.pooling, self.tau)

    def set_classes(self, cls: torch.Tensor, tokens: torch.Tensor) -> None:
        """Fix the class texts' features, cls (C, D) and tokens (C, 77, D), as buffers (not saved in a state
        dict): what :meth:`raw_logits` / :meth:`forward` compare with when given none (training)."""
        self.register_buffer("cls", cls.detach().float().clone(), persistent=False)
        self.register_buffer("tokens", tokens.detach().float().clone(), persistent=False)

    def raw_logits(self, frames: torch.Tensor, tokens: "torch.Tensor | None" = None,
                   cls: "torch.Tensor | None" = None, gather: bool = False) -> torch.Tensor:
        """Unscaled logits (B, C) of normalised frames against ``tokens`` / ``cls`` (default: those of
        :meth:`set_classes`): what evaluation uses (temperature-1 softmax). ``gather``: the frame features of
        every data-parallel worker are all-gathered before the header (global batch;
        :func:`engine.model.gather.all_gather_local_grad`)."""
        if tokens is None or cls is None:
            tokens, cls = self.tokens, self.cls
        x = self.frame_features(frames)
        if gather:
            x = all_gather_local_grad(x)
        return self.video_logits(self.temporal(x), tokens, cls)

    def forward(self, frames: torch.Tensor, tokens: "torch.Tensor | None" = None,
                cls: "torch.Tensor | None" = None, gather: bool = False) -> torch.Tensor:
        """Training logits (B, C) = raw logits × exp(logit_scale) (§4, §6); arguments as :meth:`raw_logits`."""
        return self.raw_logits(frames, tokens, cls, gather) * self.logit_scale.exp()

    def attribute_logits(self, sentences: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Attributes-branch scores (B, C): end-of-text features of attribute sentences (B, D) against class
        end-of-text features (C, D), through the trained heads when present, else cosine (§5)."""
        return attribute_scores(sentences, cls, self.attribute_head)
