"""``bike adapt``: teach a BIKE model new classes from K examples each.

Two modes:

- ``fast`` (default, seconds on a CPU): no backbone training. The K examples of every class are decoded
  and encoded ONCE (an eval view plus a few augmented training views each) into frame features, passed
  through the (frozen) temporal header when the base has one. Then only the text side is learnt: the class
  features ``cls`` (C, D) and ``tokens`` (C, 77, D), initialised from the frozen text tower's prompts, with
  BIKE's loss on VCS logits; then the attributes heads on the examples' attribute sentences (same loss,
  the adapted ``cls`` frozen). The result is stored as ``class_features`` in the checkpoint, and
  :meth:`engine.BikeModel.label_features` returns it whenever the requested label names are these classes.
- ``finetune``: BIKE's few-shot recipe (docs/model.md §8): no temporal header, VCS on raw frames, CLIP visual
  fine-tuned, through the same Ray Train program as ``bike train`` (:mod:`jobs.train.training`).

Either way the output ``OUT/adapted.pt`` is a BIKE checkpoint usable by ``bike classify/tag/eval
--checkpoint``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.model import bike
from engine.model.attributes import AttributeHead
from engine.video.augment import AugmentConfig
from engine.model.loss import batch_logits, bike_loss

from jobs.train import datasets as ds
from jobs.train import optim
from .learner import AttributeLearner, checkpoint_dict, save_atomic


@dataclass
class FastConfig:
    views: int = 4              # per example: 1 eval view + (views - 1) augmented random-segment views
    steps: int = 300            # optimisation steps of the class features (full batch)
    lr: float = 0.02            # Adam step, relative to the RMS of the initial class features
    attr_steps: int = 300       # optimisation steps of the attributes heads
    attr_lr: float = 1e-3
    seed: int = 0
    augment: AugmentConfig = AugmentConfig(scale=(0.5, 1.0), flip=0.0)


def _log(msg: str) -> None:
    print(f"[adapt] {msg}", file=sys.stderr, flush=True)


@torch.no_grad()
def encode_examples(model, samples, cfg: FastConfig):
    """Raw frame features (N·views, T, D) of every example view, and their labels (N·views,)."""
    reader = ds.FrameReader(resize=cfg.augment.resize)
    feats, labels = [], []
    for i, s in enumerate(samples):
        rng = np.random.default_rng([cfg.seed, i])
        clips = [ds.eval_clip(reader, s, model.frames, model.crop, model.resize)]
        clips += [ds.train_clip(reader, s, model.frames, rng, cfg.augment) for _ in range(cfg.views - 1)]
        feats.append(model.encode_frames(model.preprocess(np.stack(clips))))    # (views, T, D)
        labels += [s.label] * len(clips)
    return torch.cat(feats), torch.tensor(labels, device=model.device)


def learn_class_features(model, feats, labels, names, cfg: FastConfig):
    """Optimise (cls, tokens) of ``names`` so VCS of the header features classifies ``labels``."""
    text = model.label_features(list(names))                                     # frozen text tower init
    cls = torch.nn.Parameter(text.cls.detach().clone())                          # (C, D)
    tokens = torch.nn.Parameter(text.tokens.detach().clone())                    # (C, 77, D)
    h = model.temporal(feats)                                                    # (N, T, D), header frozen
    scale = model.clip.logit_scale.detach().exp()
    rms = float(text.cls.pow(2).mean().sqrt())
    opt = optim.adapt_adam([cls, tokens], cfg.lr * rms)
    for step in range(cfg.steps):
        logits = bike.video_logits(h, tokens, cls) * scale                         # (N, C), VCS
        loss = bike_loss(batch_logits(logits, labels), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 0 or step + 1 == cfg.steps:
            acc = float((logits.argmax(1) == labels).float().mean())
            _log(f"class features step {step + 1}/{cfg.steps}: loss {float(loss.detach()):.4f}, train top-1 {acc:.3f}")
    return cls.detach(), tokens.detach()


def learn_attribute_head(model, feats, labels, cls, cfg: FastConfig) -> AttributeHead:
    """Train the attributes heads on the examples' attribute sentences against the adapted ``cls``."""
    with torch.no_grad():
        sentences = model.sentence_features(model.attributes(feats)[2])          # (N, D)
    torch.manual_seed(cfg.seed)
    head = AttributeHead(model.embed_dim)
    if model.attribute_head is not None:                                          # start from the base's heads
        head.load_state_dict(model.attribute_head.state_dict())
    head = head.to(model.device).train()
    net = AttributeLearner(head, cls, model.clip.logit_scale)
    opt = optim.adapt_adam(head.parameters(), cfg.attr_lr)
    for step in range(cfg.attr_steps):
        loss = bike_loss(batch_logits(net(sentences), labels), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _log(f"attributes heads: loss {float(loss.detach()):.4f} after {cfg.attr_steps} steps")
    return head.eval()


def fast_adapt(model, samples, names, out_path: str, cfg: FastConfig = FastConfig()) -> dict:
    """The ``fast`` mode end to end; writes ``out_path`` and returns a summary. ``model`` must hold fp32
    weights (they are written into the new checkpoint)."""
    if model.precision.weight_dtype != torch.float32:
        raise ValueError(f"bike adapt needs the base model in fp32 weights, not {model.precision.name}")
    t0 = time.time()
    feats, labels = encode_examples(model, samples, cfg)
    t_enc = time.time() - t0
    _log(f"encoded {len(samples)} examples x {cfg.views} views in {t_enc:.1f} s")
    cls, tokens = learn_class_features(model, feats, labels, names, cfg)
    head = learn_attribute_head(model, feats, labels, cls, cfg)
    ckpt = checkpoint_dict(model.name, model.clip, model.header, head, names, model.frames, epoch=0,
                           stage="adapted", random_init=model.random_init,      # lineage of random weights
                           class_features={"names": list(names), "cls": cls.cpu(), "tokens": tokens.cpu()},
                           adapt={"mode": "fast", "examples": len(samples), "views": cfg.views,
                                  "steps": cfg.steps, "base": model.describe()})
    save_atomic(ckpt, out_path)
    seconds = time.time() - t0
    _log(f"wrote {out_path} ({seconds:.1f} s)")
    return {"mode": "fast", "examples": len(samples), "classes": len(names), "seconds": seconds,
            "encode_seconds": t_enc, "checkpoint": out_path}
