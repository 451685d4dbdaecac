"""What training optimises, in plain PyTorch (no Ray): modules, optimizer, schedule, checkpoint layout.

:class:`VideoLearner` is the video branch of BIKE as one ``nn.Module`` (what DDP wraps), made of the steps
of :mod:`engine.model.bike` (the same functions inference runs; math: docs/model.md)::

    frames (B, T, 3, S, S) ─ CLIP visual, per frame ─▶ X (B, T, D) ─ header (optional) ─▶ H (B, T, D)
    H vs the C class prompts (frozen text features) ─ VCS (or mean pooling) ─▶ logits (B, C) · exp(logit_scale)

The text tower is frozen, so the class prompts' features are computed once and kept as buffers.
With several data-parallel workers the loss is BIKE's global-batch loss, as in the released ``train.py``:
each worker's raw frame features are all-gathered (:func:`all_gather_local_grad`; the backward keeps the
gradient of this worker's own slice), every worker runs the header + VCS on the whole global batch and
takes the loss over all ``B = batch`` videos, and DDP averages the gradients.
:class:`AttributeLearner` is the attributes branch (two MLP heads on frozen sentence / class features).

Optimisation (docs/model.md §6: AdamW, learning rates, warm-up + cosine schedule) is :mod:`jobs.train.optim`,
the one place every optimiser of bike comes from.

Checkpoints use the released BIKE layout (``model_state_dict`` = the whole CLIP in open_clip/OpenAI key
layout, ``fusion_model_state_dict`` = the header) plus bike's keys, so ``bike classify --checkpoint`` loads
them with :func:`engine.load_model`.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.model import bike
from engine.model.attributes import AttributeHead, attribute_scores
from engine.model.config import DEFAULTS
from engine.model.spotting import l2norm
from engine.model.temporal import TemporalTransformer
from index.store import atomic_write

#: uint8 (B, T, S, S, 3) → CLIP-normalised float (B, T, 3, S, S) on the same device (engine.model.bike's step).
normalize = bike.normalise


def uses_quick_gelu(clip: nn.Module) -> bool:
    """Whether an open_clip model's MLPs use QuickGELU (OpenAI weights) rather than GELU."""
    return any(type(m).__name__ == "QuickGELU" for m in clip.modules())


class _AllGatherLocalGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns the gradient of this rank's own slice (no reduction):
    the released BIKE ``AllGather``. Every rank computes the same global loss, so that slice is exactly
    d(loss)/d(local input); DDP then averages the parameter gradients over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def distributed_world() -> int:
    """Number of processes in the default process group (1 when there is none)."""
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_gather_local_grad(x: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each of W ranks → (W·b, ...) in rank order; identity without a process group.
    Every rank must pass the same ``b``."""
    return _AllGatherLocalGrad.apply(x) if distributed_world() > 1 else x


def all_gather_labels(y: torch.Tensor) -> torch.Tensor:
    """Labels (b,) of every rank → (W·b,), in the order of :func:`all_gather_local_grad`."""
    if distributed_world() == 1:
        return y
    import torch.distributed as dist
    parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, y.contiguous())
    return torch.cat(parts, 0)


def new_header(embed_dim: int, text_width: int, layers: int = 6, seed: int = 0) -> TemporalTransformer:
    """A freshly initialised temporal header (docs/model.md §3), identical on every worker for one seed."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return TemporalTransformer(embed_dim, heads=max(1, text_width // 64), layers=layers)
    finally:
        torch.random.set_rng_state(state)


class VideoLearner(nn.Module):
    """The video branch: CLIP visual (+ header) against fixed class features → scaled logits (B, C)."""

    def __init__(self, visual: nn.Module, logit_scale: nn.Parameter, cls: torch.Tensor, tokens: torch.Tensor,
                 header: "TemporalTransformer | None" = None, pooling: str = "vcs", tau: float = DEFAULTS.tau):
        super().__init__()
        if pooling not in ("vcs", "mean"):
            raise ValueError(f"pooling must be 'vcs' or 'mean', got {pooling!r}")
        self.visual = visual
        self.header = header
        self.logit_scale = logit_scale                       # shared with the CLIP model: saved with it
        self.pooling, self.tau = pooling, tau
        self.register_buffer("cls", cls.detach().float().clone(), persistent=False)        # (C, D)
        self.register_buffer("tokens", tokens.detach().float().clone(), persistent=False)  # (C, 77, D)
        #: reduced-precision dtype of the image tower's forward (autocast over fp32 master weights), or None
        #: for fp32 (``bike train --precision``, :func:`training_precision`)
        self.amp: "torch.dtype | None" = None

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) → raw frame features X (B, T, D), every frame through the image tower alone. With
        :attr:`amp`, the tower runs under autocast and X comes back in fp32: the header and concept spotting
        (a softmax at tau = 0.01) stay fp32, as at inference (docs/model.md, "Precision")."""
        if self.amp is None:
            return bike.frame_features(self.visual, frames)
        with torch.autocast(frames.device.type, dtype=self.amp):
            x = bike.frame_features(self.visual, frames)
        return x.float()

    def raw_logits(self, frames: torch.Tensor, gather: bool = False) -> torch.Tensor:
        """Unscaled logits (B, C): what evaluation uses (temperature-1 softmax). ``gather``: the frame
        features of every data-parallel worker are all-gathered first → (global B, C) (see the module doc)."""
        x = self.frame_features(frames)
        if gather:
            x = all_gather_local_grad(x)
        h = bike.temporal(self.header, x)                                 # (B, T, D)
        return bike.video_logits(h, self.tokens, self.cls, self.pooling, self.tau)

    def forward(self, frames: torch.Tensor, gather: bool = False) -> torch.Tensor:
        """Training logits (B, C) = raw logits × exp(logit_scale); ``gather`` as in :meth:`raw_logits`."""
        return self.raw_logits(frames, gather) * self.logit_scale.exp()


class AttributeLearner(nn.Module):
    """The attributes branch: heads on frozen, L2-normalised sentence (B, D) and class (C, D) features."""

    def __init__(self, head: AttributeHead, cls: torch.Tensor, logit_scale: torch.Tensor):
        super().__init__()
        self.head = head
        self.register_buffer("cls", l2norm(cls.detach().float()).clone(), persistent=False)
        self.register_buffer("scale", logit_scale.detach().float().exp().clone(), persistent=False)

    def forward(self, sentences: torch.Tensor) -> torch.Tensor:
        """(B, D) sentence end-of-text features → scaled cosine logits (B, C)."""
        return attribute_scores(sentences, self.cls, self.head) * self.scale


def training_precision(precision: "str | None", device) -> "tuple[str, torch.dtype | None]":
    """``bike train --precision`` on ``device`` → (concrete name, autocast dtype of the image tower or None).
    Weights, optimiser state and the loss stay fp32 (mixed precision); ``auto`` is fp16 on CUDA (with a
    gradient scaler), bf16 on CPUs with native bf16 matrix units, fp32 elsewhere (engine/model/precision.py).
    fp16 on a CPU is refused: no CPU runs it fast, and its range needs a gradient scaler."""
    from engine.model.precision import resolve
    device = torch.device(device)
    name = resolve(precision, device.type)
    if name == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 trains on GPUs only (--gpus-per-worker 1); on a CPU use bf16 or fp32")
    return name, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def checkpoint_dict(model_name: str, clip: nn.Module, header, attribute_head, labels, frames: int, epoch: int,
                    stage: str, optimizer=None, scheduler=None, scaler=None, **extra) -> dict:
    """A checkpoint in the released BIKE layout plus bike's keys (see the module docstring)."""
    return {
        "model_state_dict": {k: v.detach().cpu() for k, v in clip.state_dict().items()},
        "fusion_model_state_dict": ({k: v.detach().cpu() for k, v in header.state_dict().items()}
                                    if header is not None else {}),
        "attributes_state_dict": ({k: v.detach().cpu() for k, v in attribute_head.state_dict().items()}
                                  if attribute_head is not None else None),
        "labels": list(labels),
        "model_name": model_name,
        "quick_gelu": uses_quick_gelu(clip),
        "frames": int(frames),
        "epoch": int(epoch),
        "stage": stage,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        **extra,
    }


def save_atomic(obj: dict, path: str) -> str:
    """torch.save to a temporary name in the same folder, fsync, then rename: a crash never leaves half a file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
    return path
