"""``bike train`` as a Ray Train program: docs/model.md §6 on N data-parallel workers (DDP: gloo on CPU, nccl on GPU).

Driver (:func:`run_training`): start or join Ray, build a ``TorchTrainer`` with one worker per
``--workers``, a ``FailureConfig`` (a lost worker restarts the group from the last reported checkpoint)
and ``OUT/ray`` as Ray's storage (on a multi-node cluster OUT must be a shared folder); wait; return the
per-epoch history.

Worker (:func:`train_loop`), two stages:

1. **video** — for each epoch: this rank's share of a seeded global shuffle (equal step counts on every
   rank); per sample one random frame per segment + clip augmentation (``jobs.train.datasets.train_clip``);
   ``VideoLearner`` (CLIP visual → header → VCS against the frozen class prompts) → BIKE loss over the
   global batch (frame features all-gathered across workers, as the released ``train.py`` does); AdamW,
   warm-up + cosine per step, mixed precision by ``--precision`` (the image tower under autocast: fp16 + a
   gradient scaler on GPU, bf16 on CPUs with native bf16; weights, header, VCS and loss in fp32). After every epoch: top-1 on the held-out samples (all ranks,
   summed), then rank 0 writes ``OUT/checkpoint.pt`` (released BIKE layout + optimizer/scheduler) and
   reports it to Ray Train with the metrics.
2. **attributes** — everything else frozen: attribute sentences of the training clips are computed once
   (top-5 lexicon phrases of the mean raw frame feature), then the two heads are trained on them with the
   same loss. Final checkpoint has ``stage == "done"``.

A restarted worker group (worker lost) takes ``ray.train.get_checkpoint()``; a new ``bike train --resume``
takes ``OUT/checkpoint.pt``. Either continues after the last completed epoch.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from engine.video.augment import AugmentConfig
from engine.video import VideoError
from engine.model.loss import batch_logits, bike_loss

from jobs.train import datasets as ds
from jobs.train import optim
from .learner import (AttributeLearner, training_precision, VideoLearner, all_gather_labels, all_gather_local_grad, checkpoint_dict,
                      new_header, normalize, save_atomic)

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.jsonl"
#: logit_scale is clamped to ln(100) like CLIP's.
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class TrainConfig:
    """Everything a worker needs (plain data: it travels to Ray workers)."""
    model: dict                      # engine.load_model kwargs: name, pretrained, checkpoint, random_init, lexicon, seed
    labels: list                     # class names, in id order
    train: list                      # [Sample]
    val: list                        # [Sample] held out for per-epoch top-1
    out: str
    frames: int = 8
    epochs: int = 10
    batch: int = 16                  # global batch (split evenly across workers)
    lr_new: float = optim.LR_NEW     # docs/model.md §6; the recipe lives in jobs/train/optim.py
    lr_clip: float = optim.LR_CLIP
    header: bool = True              # train a temporal header (False: VCS/mean pooling on raw frames)
    header_layers: int = 6
    pooling: str = "vcs"             # "vcs" or "mean" (the order-blind baseline)
    attr_epochs: int = 10            # 0: skip the attributes stage
    augment: dict = field(default_factory=lambda: asdict(AugmentConfig()))
    seed: int = 0
    resume_path: "str | None" = None
    precision: str = "auto"          # jobs.train.learner.training_precision: auto | fp32 | bf16 | fp16
    loader_workers: int = 0          # torch DataLoader processes per Ray worker
    cache_bytes: int = 1 << 30       # decoded short videos kept per worker
    decoder: "str | None" = None     # --decoder for every decode of every worker (None: $BIKE_DECODER / auto)
    log_every: int = 50              # steps between progress lines inside an epoch

    def __post_init__(self):        # samples arrive as dicts after asdict() on the way to the workers
        self.train = [s if isinstance(s, ds.Sample) else ds.Sample(**{**s, "labels": tuple(s["labels"])})
                      for s in self.train]
        self.val = [s if isinstance(s, ds.Sample) else ds.Sample(**{**s, "labels": tuple(s["labels"])})
                    for s in self.val]
        # made absolute where the user typed them (the driver): Ray workers run in another directory, and a
        # relative --resume path there silently found nothing and restarted at epoch 1
        self.out = os.path.abspath(self.out)
        if self.resume_path:
            self.resume_path = os.path.abspath(self.resume_path)


# ---- data ------------------------------------------------------------------------------------------------

class TrainClips(torch.utils.data.Dataset):
    """Augmented training clips; sample i of epoch e is reproducible from (seed, e, i)."""

    def __init__(self, samples, frames, aug: AugmentConfig, seed: int, cache_bytes: int):
        self.samples, self.frames, self.aug, self.seed = samples, frames, aug, seed
        self.reader = ds.FrameReader(resize=aug.resize, cache_bytes=cache_bytes)
        self.epoch = 0
        self.bad: set = set()

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        for k in range(10):                       # a broken video is replaced by the next sample
            j = (i + k) % len(self.samples)
            if j in self.bad:
                continue
            s = self.samples[j]
            rng = np.random.default_rng([self.seed, self.epoch, j])
            try:
                clip = ds.train_clip(self.reader, s, self.frames, rng, self.aug)
            except (VideoError, OSError) as e:         # unreadable video or image: skip it, say so
                self.bad.add(j)
                print(f"[train] warning: skipping {s.where}: {e}", file=sys.stderr, flush=True)
                continue
            return torch.from_numpy(clip), s.label
        raise RuntimeError(f"10 consecutive unreadable samples from index {i}; check the list")


def local_indices(n: int, batch: int, rank: int, world: int, seed: int, epoch: int) -> list:
    """This rank's sample indices for one epoch: a seeded global permutation, rank-strided, cut so every
    rank runs the same number of steps of ``batch // world`` samples."""
    steps = ds.steps_per_epoch(n, batch)
    per_rank = batch // world
    order = np.random.default_rng([seed, epoch, 7]).permutation(n)
    if n < steps * per_rank * world:                 # fewer samples than one global batch: repeat
        order = np.resize(order, steps * per_rank * world)
    return order[rank::world][:steps * per_rank].tolist()


# ---- distributed helpers -----------------------------------------------------------------------------------

def _all_sum(values, device) -> list:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


def _quiet_worker_logs() -> None:
    """Keep a worker's console to bike's own progress lines: Ray Train's per-report INFO records ("Reporting
    training result …", "Checkpoint successfully created …") and open_clip's INFO chatter are dropped;
    warnings and errors still show."""
    import logging
    for name in ("", "ray.train", "open_clip"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[train] {msg}", flush=True)


# ---- evaluation on the held-out part -----------------------------------------------------------------------

@torch.no_grad()
def heldout_top1(learner, samples, reader, frames, size, resize, device, rank, world, batch=16,
                 attr=None, bike_model=None) -> dict:
    """Top-1 of the video branch (and of the attributes branch and the fusion when ``attr`` is given)
    on this rank's share of ``samples``, summed over ranks."""
    from engine.model.attributes import fuse
    mine = samples[rank::world]
    learner.eval()
    correct_v = correct_a = correct_f = 0
    for lo, hi in ds.batches(len(mine), batch):
        clips = np.stack([ds.eval_clip(reader, s, frames, size, resize) for s in mine[lo:hi]])
        x = normalize(torch.from_numpy(clips).to(device))
        y = torch.tensor([s.label for s in mine[lo:hi]], device=device)
        logits = learner.raw_logits(x)                                     # (b, C)
        correct_v += int((logits.argmax(1) == y).sum())
        if attr is not None:
            feats = learner.frame_features(x).float()                          # raw (b, T, D)
            sentences = bike_model.attributes(feats)[2]
            a = attr(bike_model.sentence_features(sentences))                  # (b, C) scaled
            correct_a += int((a.argmax(1) == y).sum())
            fused = fuse(logits, a / attr.scale)[0]
            correct_f += int((fused.argmax(1) == y).sum())
    learner.train()
    n, cv, ca, cf = _all_sum([len(mine), correct_v, correct_a, correct_f], device)
    if n == 0:
        return {}
    out = {"val_top1": cv / n, "val_n": int(n)}
    if attr is not None:
        out.update(val_attr_top1=ca / n, val_fused_top1=cf / n)
    return out


# ---- the worker -----------------------------------------------------------------------------------------

def load_resume_state(path: str) -> dict:
    """A checkpoint to continue from, loaded safely (``weights_only``: bike's checkpoints hold only tensors,
    numbers, strings, lists and dicts) and checked → the state; :class:`engine.CheckpointError` with the
    file and the reason otherwise (the file is left as it is)."""
    from engine.model.loading import CheckpointError, read_state_file
    state = read_state_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("model_state_dict"), dict) \
            or not isinstance(state.get("epoch", 0), int):
        raise CheckpointError(f"{path}: not a checkpoint written by bike train (no model_state_dict/epoch); "
                              "cannot resume from it")
    return state


def _load_state(cfg: TrainConfig):
    """The checkpoint to continue from, else None: Ray's latest reported one (worker group restarted), or
    ``OUT/checkpoint.pt``, which only exists when this run wrote it (a restart whose report had not reached
    Ray's controller yet) or when ``--resume`` asked for it (the driver moves a stale one away otherwise)."""
    import ray.train
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            return load_resume_state(os.path.join(d, CHECKPOINT_NAME)), "ray"
    path = cfg.resume_path or os.path.join(cfg.out, CHECKPOINT_NAME)
    if os.path.isfile(path):
        return load_resume_state(path), path
    if cfg.resume_path:                     # asked to continue: never restart from scratch over it
        raise FileNotFoundError(f"{path}: the checkpoint to resume from is gone")
    return None, None


def _report(rank: int, cfg: TrainConfig, metrics: dict, ckpt: "dict | None") -> None:
    """Every rank reports; rank 0 attaches the checkpoint and makes it OUT/checkpoint.pt."""
    import ray.train
    if rank != 0 or ckpt is None:
        ray.train.report(metrics)
        return
    staging = os.path.join(cfg.out, f".staging-{metrics['epoch']}-{metrics['stage']}")
    os.makedirs(staging, exist_ok=True)
    path = save_atomic(ckpt, os.path.join(staging, CHECKPOINT_NAME))
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(staging),
                     delete_local_checkpoint_after_upload=False)
    os.replace(path, os.path.join(cfg.out, CHECKPOINT_NAME))
    shutil.rmtree(staging, ignore_errors=True)
    write_history(cfg.out, metrics)


def train_loop(config: dict) -> None:
    """Ray Train's ``train_loop_per_worker``: see the module docstring. The config's ``decoder`` is the
    default of every decode in this worker (``engine.video.decoding_choice``; its DataLoader processes fork
    with it)."""
    from engine.video.base import decoding_choice
    with decoding_choice(config.get("decoder")):
        _train_loop(config)


def _train_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    import engine

    cfg = TrainConfig(**config)
    _quiet_worker_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    on_gpu = device.type == "cuda"
    aug = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.augment.items()})
    local_batch = cfg.batch // world

    state, source = _load_state(cfg)
    model = engine.load_model(**cfg.model, frames=cfg.frames, device=str(device))
    clip = model.clip
    if state is not None:
        clip.load_state_dict(state["model_state_dict"])
    elif cfg.model.get("random_init"):
        # docs/model.md §6: training starts from CLIP's logit scale of 100; a random-init tower has 1/0.07 ≈ 14.3
        with torch.no_grad():
            clip.logit_scale.fill_(MAX_LOGIT_SCALE)
        _log(rank, "random-init model: logit scale set to 100 (docs/model.md §6 starts training at CLIP's 100)")
    text_width = int(clip.ln_final.weight.shape[0])
    header = None
    if cfg.header:
        if state is not None and state.get("fusion_model_state_dict"):
            header = engine.TemporalTransformer.from_state_dict(state["fusion_model_state_dict"],
                                                                heads=max(1, text_width // 64))
        else:
            header = model.header or new_header(model.embed_dim, text_width, cfg.header_layers, cfg.seed)
        header = header.to(device)
    for p in clip.parameters():                       # text tower frozen; visual + logit_scale train
        p.requires_grad_(False)
    for p in list(clip.visual.parameters()) + [clip.logit_scale]:
        p.requires_grad_(cfg.lr_clip > 0)

    text = model.label_features(cfg.labels)           # frozen text tower: (C, D), (C, 77, D)
    learner = VideoLearner(clip.visual, clip.logit_scale, text.cls, text.tokens, header, cfg.pooling).to(device)
    net = ray.train.torch.prepare_model(learner, parallel_strategy_kwargs={"broadcast_buffers": False})
    opt = optim.adamw(optim.video_groups(clip.visual, clip.logit_scale, [header], cfg.lr_new, cfg.lr_clip))
    steps = ds.steps_per_epoch(len(cfg.train), cfg.batch)
    sched = optim.schedule(opt, cfg.epochs, steps)
    prec, learner.amp = training_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=on_gpu and prec == "fp16")
    start = 0
    attribute_head = model.attribute_head
    if state is not None:
        start = int(state.get("epoch", 0))
        if state.get("optimizer"):
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        _log(rank, f"resuming from {source}: {start} epoch(s) done, stage {state.get('stage')}")
        if state.get("stage") == "done" and start >= cfg.epochs:
            _log(rank, "nothing to do: training already complete")
            return

    data = TrainClips(cfg.train, cfg.frames, aug, cfg.seed, cfg.cache_bytes)
    val_reader = ds.FrameReader(resize=aug.resize, cache_bytes=cfg.cache_bytes // 4)
    _log(rank, f"{len(cfg.train)} training / {len(cfg.val)} held-out clips, {len(cfg.labels)} classes, "
               f"{world} worker(s) on {device.type} ({prec}), batch {cfg.batch} ({local_batch}/worker), "
               f"{steps} steps/epoch, warm-up {optim.warmup_epochs(cfg.epochs):.2f} epochs")
    extra = {"pooling": cfg.pooling, "random_init": model.random_init,     # lineage: RANDOM WEIGHTS stays said
             "train_config": {k: v for k, v in config.items() if k not in ("train", "val")}}

    for epoch in range(start, cfg.epochs):
        data.epoch = epoch
        idx = local_indices(len(cfg.train), cfg.batch, rank, world, cfg.seed, epoch)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, idx), batch_size=local_batch,
                                             shuffle=False, num_workers=cfg.loader_workers, drop_last=True)
        t0, total, seen = time.time(), 0.0, 0
        for step, (frames, labels) in enumerate(loader):
            x = normalize(frames.to(device, non_blocking=True))            # (b, T, 3, S, S)
            y = labels.to(device)
            logits = net(x, gather=world > 1)                              # (global B, C), scaled
            y = all_gather_labels(y)                                       # (global B,)
            loss = bike_loss(batch_logits(logits.float(), y), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            with torch.no_grad():
                clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            total += float(loss.detach())
            seen += x.shape[0]                                             # this worker's clips
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                _log(rank, f"epoch {epoch + 1} step {step + 1}/{steps} loss {total / (step + 1):.4f}")
        elapsed = time.time() - t0
        loss_sum, n_steps, clips = _all_sum([total, steps, seen], device)
        metrics = {"epoch": epoch + 1, "stage": "video", "loss": loss_sum / max(1, n_steps),
                   "clips_per_s": clips / max(elapsed, 1e-9), "precision": prec, "lr": opt.param_groups[0]["lr"],
                   "logit_scale": float(clip.logit_scale.detach().exp()), "seconds": elapsed}
        metrics.update(heldout_top1(learner, cfg.val, val_reader, cfg.frames, aug.size, aug.resize, device,
                                    rank, world, local_batch))
        _log(rank, f"epoch {epoch + 1}/{cfg.epochs}  loss {metrics['loss']:.4f}  "
                   f"val top1 {metrics.get('val_top1', float('nan')):.3f}  "
                   f"{metrics['clips_per_s']:.1f} clips/s  lr {metrics['lr']:.2e}  ({elapsed:.1f} s)")
        ckpt = None
        if rank == 0:
            ckpt = checkpoint_dict(model.name, clip, header, attribute_head, cfg.labels, cfg.frames, epoch + 1,
                                   "video", opt, sched, scaler, **extra)
        _report(rank, cfg, metrics, ckpt)

    if cfg.attr_epochs > 0:
        attribute_head = _train_attributes(cfg, model, learner, data, val_reader, aug, device, rank, world,
                                           local_batch)
        metrics = {"epoch": cfg.epochs, "stage": "done"}
        attr = AttributeLearner(attribute_head, text.cls, clip.logit_scale).to(device)
        metrics.update(heldout_top1(learner, cfg.val, val_reader, cfg.frames, aug.size, aug.resize, device,
                                    rank, world, local_batch, attr=attr, bike_model=model))
        _log(rank, "attributes stage: val top1 video {:.3f} / attributes {:.3f} / fused {:.3f}".format(
            metrics.get("val_top1", math.nan), metrics.get("val_attr_top1", math.nan),
            metrics.get("val_fused_top1", math.nan)))
    else:
        metrics = {"epoch": cfg.epochs, "stage": "done"}
    ckpt = None
    if rank == 0:
        ckpt = checkpoint_dict(model.name, clip, header, attribute_head, cfg.labels, cfg.frames, cfg.epochs,
                               "done", opt, sched, scaler, **extra)
    _report(rank, cfg, metrics, ckpt)


def _train_attributes(cfg, model, learner, data, reader, aug, device, rank, world, local_batch):
    """Stage 2: train the attributes heads on frozen attribute sentences of the training clips."""
    import ray.train.torch

    from engine.model.attributes import AttributeHead

    t0 = time.time()
    learner.eval()
    sentences, labels = [], []
    with torch.no_grad():                         # every rank embeds all training clips once (eval view)
        mine = cfg.train[rank::world]
        for lo, hi in ds.batches(len(mine), max(1, local_batch)):
            clips = np.stack([ds.eval_clip(reader, s, cfg.frames, aug.size, aug.resize) for s in mine[lo:hi]])
            feats = learner.frame_features(normalize(torch.from_numpy(clips).to(device))).float()
            sentences.append(model.sentence_features(model.attributes(feats)[2]))
            labels += [s.label for s in mine[lo:hi]]
    learner.train()
    feats = torch.cat(sentences)                                                  # (n, D)
    ys = torch.tensor(labels, device=device)
    head = model.attribute_head or AttributeHead(model.embed_dim)
    attr = AttributeLearner(head.to(device), model.label_features(cfg.labels).cls, model.clip.logit_scale)
    net = ray.train.torch.prepare_model(attr, parallel_strategy_kwargs={"broadcast_buffers": False})
    opt = optim.adamw(optim.head_groups(head, cfg.lr_new))
    counts = [0] * world
    counts[rank] = len(ys)
    counts = [int(c) for c in _all_sum(counts, device)]
    per_rank = max(2, local_batch)
    steps = max(1, min(counts) // per_rank)
    sched = optim.schedule(opt, cfg.attr_epochs, steps)
    for epoch in range(cfg.attr_epochs):
        order = np.random.default_rng([cfg.seed, epoch, 11, rank]).permutation(len(ys))
        order = np.resize(order, steps * per_rank)
        total = 0.0
        for k in range(steps):
            sel = torch.as_tensor(order[k * per_rank:(k + 1) * per_rank], device=device)
            y = all_gather_labels(ys[sel])                  # the global batch, as in the video stage
            loss = bike_loss(batch_logits(net(all_gather_local_grad(feats[sel])), y), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        if epoch + 1 == cfg.attr_epochs or (epoch + 1) % max(1, cfg.attr_epochs // 4) == 0:
            _log(rank, f"attributes epoch {epoch + 1}/{cfg.attr_epochs}  loss {total / steps:.4f}")
    _log(rank, f"attributes stage took {time.time() - t0:.1f} s")
    return head


# ---- the driver -----------------------------------------------------------------------------------------

def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # above jobs/train/


#: Ray Train V2 routes a worker's print() through logging *and* the original stream, so every progress line
#: reached the console twice; with the patch off a print is printed once.
QUIET_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def ensure_ray(address: "str | None" = None, num_cpus: "int | None" = None):
    """Join ``address`` (e.g. ``auto``) or start a local Ray sized to this machine; reuse a running one.

    A local Ray is started with its dashboard: Ray Train's placement-group cleaner (which frees a crashed
    run's resources) asks the state API, served by the dashboard, whether the run is still alive; without
    it the cleaner cannot work and logs a warning every few seconds."""
    import ray
    for k, v in QUIET_TRAIN_ENV.items():
        os.environ.setdefault(k, v)              # Ray Train propagates these to its controller and workers
    if not ray.is_initialized():
        env = {"PYTHONPATH": os.pathsep.join(p for p in (_repo_root(), os.environ.get("PYTHONPATH")) if p)}
        env.update({k: os.environ[k] for k in ("HF_HUB_OFFLINE", *QUIET_TRAIN_ENV) if k in os.environ})
        kw = {} if address else {"num_cpus": num_cpus or os.cpu_count(), "include_dashboard": True,
                                 "dashboard_host": "127.0.0.1"}
        ray.init(address=address, runtime_env={"env_vars": env}, **kw)
    return ray


def run_training(cfg: TrainConfig, workers: int = 1, gpus_per_worker: float = 0, cpus_per_worker=None,
                 address: "str | None" = None, max_failures: int = 2, loop=None) -> list:
    """Train with Ray Train; returns the per-epoch metrics (also in ``OUT/history.jsonl``). A ``resume_path``
    is checked here, on the driver, before Ray starts: a missing or damaged checkpoint is one clear error
    (:class:`engine.CheckpointError`), and the file is left untouched. ``loop`` is the per-worker function
    (default :func:`train_loop`; a test wraps it to inject a fault)."""
    if cfg.resume_path:
        load_resume_state(cfg.resume_path)
    _check_out_writable(cfg.out)
    ray = ensure_ray(address)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if cfg.batch < 2 * workers:
        raise ValueError(f"--batch {cfg.batch} is too small for {workers} worker(s): each needs >= 2 clips "
                         "(the loss compares clips within a batch)")
    if cpus_per_worker is None:
        total = ray.cluster_resources().get("CPU", 1)
        cpus_per_worker = max(1, int(total // workers)) if not gpus_per_worker else 1
    os.makedirs(cfg.out, exist_ok=True)
    hist = os.path.join(cfg.out, HISTORY_NAME)
    if not cfg.resume_path:                        # a fresh run: nothing of an earlier one may be continued
        if os.path.exists(hist):
            os.remove(hist)
        last = os.path.join(cfg.out, CHECKPOINT_NAME)
        if os.path.exists(last):
            os.replace(last, os.path.join(cfg.out, "checkpoint.previous.pt"))
            print(f"[train] moved the earlier {last} to checkpoint.previous.pt", file=sys.stderr)
    # Ray's own copy of the checkpoints lives in OUT/ray/<run>; one fresh run name per command, so Ray never
    # restores an earlier command's state by itself (continuing is --resume's job, from OUT/checkpoint.pt)
    ray_dir = os.path.join(os.path.abspath(cfg.out), "ray")
    shutil.rmtree(ray_dir, ignore_errors=True)
    run_name = time.strftime("run-%Y%m%d-%H%M%S")
    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        loop or train_loop,
        train_loop_config=asdict(cfg),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus_per_worker),
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name, storage_path=ray_dir,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(int(cpus_per_worker))}},
        ),
    )
    try:
        trainer.fit()
    except Exception as e:  # noqa: BLE001 - re-raised unless a worker hit something the user can act on
        cause = worker_user_error(e)
        if cause is None:
            raise
        if isinstance(cause, OSError):
            from jobs.errors import UsageError
            raise UsageError(f"{cause.filename or cfg.out}: cannot write: {os.strerror(cause.errno)} (training "
                             f"stopped; {os.path.join(cfg.out, CHECKPOINT_NAME)} holds the last whole epoch: "
                             "free space, then rerun with --resume)") from None
        raise cause from None
    return read_history(cfg.out)


#: Errors of the file system that a worker can hit and the user can fix (disk full, quota, read-only).
_FS_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def worker_user_error(exc: BaseException) -> "BaseException | None":
    """The error inside a Ray Train failure that deserves one line instead of a worker traceback: a
    full/read-only disk (``OSError``) or a bad checkpoint (``engine.CheckpointError``); None otherwise.
    Follows Ray's ``worker_failures`` / ``controller_failure`` / ``cause`` and Python's ``__cause__`` /
    ``__context__``."""
    from engine.model.loading import CheckpointError
    stack, seen = [exc], set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CheckpointError) or (isinstance(e, OSError) and e.errno in _FS_ERRNOS):
            return e
        stack.extend(getattr(e, "worker_failures", {}).values())
        stack.extend([getattr(e, "controller_failure", None), getattr(e, "cause", None), e.__cause__,
                      e.__context__])
    return None


def _check_out_writable(out: str) -> None:
    """``--out`` must be a folder this user can write (checked before Ray starts)."""
    from jobs.errors import UsageError
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("x")
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"{out}: cannot write the output folder (--out): {e.strerror or e}") from None


def _history_key(entry: dict) -> tuple:
    return entry.get("epoch"), entry.get("stage")


def write_history(out: str, metrics: dict) -> None:
    """Record one epoch's (or the final ``done``) metrics in ``OUT/history.jsonl``, idempotently: an entry
    with the same (epoch, stage) as an earlier one replaces it in place. Ray Train may run a report again
    (a worker group restarted from a checkpoint whose report had not reached the controller), and the
    history then had that epoch, or its final ``done`` line, twice. The file is rewritten whole under a
    temporary name and renamed, so a crash never leaves half a line."""
    from index.store import atomic_write
    entries = read_history(out)
    key = _history_key(metrics)
    at = next((i for i, e in enumerate(entries) if _history_key(e) == key), None)
    if at is None:
        entries.append(metrics)
    else:
        entries[at] = metrics

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in entries)
    atomic_write(os.path.join(out, HISTORY_NAME), write)


def read_history(out: str) -> list:
    path = os.path.join(out, HISTORY_NAME)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
