"""``bike train LIST --labels CSV --out DIR``: fine-tune BIKE on a labelled list with Ray Train (docs/model.md §6)."""
from __future__ import annotations

import os
from dataclasses import asdict

from jobs import output
from jobs.errors import UsageError
from jobs.train.rates import LR_CLIP, LR_NEW
from jobs.cli.options import add_model_args, command_parser, fraction, load_model_from_args, model_kwargs, \
    nonneg_float, nonneg_int, positive_float, positive_int, unit_interval


def register(sub) -> None:
    p = command_parser(
        sub, "train", help="fine-tune BIKE (video branch, then attributes heads) with Ray Train",
        description="Train the video branch (CLIP visual + temporal header + logit scale; text tower frozen) with "
                    "BIKE's loss on N Ray Train workers, then the attributes heads. A checkpoint in the released "
                    "BIKE layout, carrying its class names, is written to OUT/checkpoint.pt after every epoch; "
                    "`bike classify --checkpoint OUT/checkpoint.pt` then uses those classes.",
        examples=["bike train train.txt --labels labels.csv --out runs/mine --pretrained openai --epochs 10",
                  "bike train train.txt --labels labels.csv --out runs/mine --resume --epochs 15",
                  "bike train train.txt --labels labels.csv --out runs/t --model bike-tiny --random-init "
                  "--format csv"])
    p.add_argument("list", metavar="LIST", help="list file: 'path label' or 'dir num_frames label' per line")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoint.pt, history.jsonl, ray/)")
    add_model_args(p, branches=False)       # training fits both branches; --precision: the tower's autocast
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=10, help="video-branch epochs (default 10)")
    g.add_argument("--batch", type=positive_int, default=16, metavar="N",
                   help="training examples per optimiser step (global, split across workers; default 16)")
    g.add_argument("--lr", type=positive_float, default=LR_NEW, help=f"learning rate of new modules (default {LR_NEW:g})")
    g.add_argument("--lr-clip", type=nonneg_float, default=LR_CLIP,
                   help=f"learning rate of the CLIP visual tower and logit scale (default {LR_CLIP:g}; 0 freezes them)")
    g.add_argument("--attr-epochs", type=nonneg_int, default=10, help="attributes-heads epochs (default 10; 0 skips)")
    g.add_argument("--no-header", dest="header", action="store_false",
                   help="no temporal header: VCS (or mean pooling) on raw frame features")
    g.add_argument("--pooling", choices=("vcs", "mean"), default="vcs",
                   help="how frames become a video score: vcs (BIKE) or mean (order-blind baseline)")
    g.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="fraction of each class held out for per-epoch top-1 (default 0.1; 0 disables)")
    g.add_argument("--no-flip", action="store_true",
                   help="no horizontal flips (for classes that depend on left/right)")
    g.add_argument("--crop-scale", type=unit_interval, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
                   help="random resized crop area range (default 0.08 1.0)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    r = p.add_argument_group("Ray")
    r.add_argument("--workers", type=positive_int, default=1, help="Ray Train workers (data-parallel, default 1)")
    r.add_argument("--gpus-per-worker", type=nonneg_float, default=0, help="GPUs per worker (0: CPU, gloo)")
    r.add_argument("--cpus-per-worker", type=positive_float, default=None,
                   help="CPUs per worker (default: CPUs / workers)")
    r.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: a local Ray")
    r.add_argument("--max-failures", type=nonneg_int, default=2, help="worker-group restarts after a lost worker")
    r.add_argument("--loader-workers", type=nonneg_int, default=0, help="decoding processes per worker (default 0)")
    output.add_format_arg(p, what="prints the per-epoch history")
    p.set_defaults(func=run)


def check_training_precision(args) -> None:
    """fp16 mixed precision needs GPU workers (jobs.train.learner.training_precision); say so before Ray starts."""
    if args.precision == "fp16" and not args.gpus_per_worker:
        raise UsageError("--precision fp16 trains on GPUs only (add --gpus-per-worker 1); on a CPU use bf16 "
                         "or fp32")


def build_config(args, labels, train, val, resume_path=None, header=None, pooling=None):
    """The :class:`~jobs.train.training.TrainConfig` the options describe."""
    from engine.video.augment import AugmentConfig

    from jobs.train.training import TrainConfig
    kw = model_kwargs(args)
    model = {k: kw[k] for k in ("name", "pretrained", "checkpoint", "random_init", "lexicon", "trust_checkpoint")
             if k in kw}
    model["seed"] = args.seed
    aug = AugmentConfig(scale=tuple(args.crop_scale), flip=0.0 if args.no_flip else 0.5)
    return TrainConfig(model=model, labels=list(labels.names), train=train, val=val,
                       out=os.path.abspath(args.out), frames=args.frames, epochs=args.epochs, batch=args.batch,
                       lr_new=args.lr, lr_clip=args.lr_clip, header=args.header if header is None else header,
                       pooling=pooling or args.pooling, attr_epochs=args.attr_epochs, augment=asdict(aug),
                       seed=args.seed, resume_path=resume_path, loader_workers=args.loader_workers,
                       decoder=getattr(args, "decoder", None),
                       precision=args.precision)


def run(args) -> int:
    from jobs.train import datasets as ds
    from jobs.cli.options import resolve_labels
    labels = resolve_labels(args)
    samples = ds.parse_list(args.list, labels)
    train, val = ds.split_holdout(samples, args.val_fraction, args.seed)
    if args.workers < 1:
        raise UsageError("--workers must be >= 1")
    check_training_precision(args)
    if len(train) < args.workers * 2:
        raise UsageError(f"{args.list}: {len(train)} training samples is too few for {args.workers} worker(s)")
    resume = None
    if args.resume:
        resume = os.path.join(args.out, "checkpoint.pt")
        if not os.path.isfile(resume):
            raise UsageError(f"--resume: {resume} does not exist (nothing to resume; drop --resume)")
    elif os.path.isfile(os.path.join(args.out, "checkpoint.pt")):
        output.info(f"bike: note: {args.out}/checkpoint.pt exists; it is moved to checkpoint.previous.pt "
                    "(use --resume to continue it instead)")
    load_model_from_args(args)                       # fail here, not on a worker, when weights are missing
    cfg = build_config(args, labels, train, val, resume)
    from jobs.train.training import run_training
    try:
        history = run_training(cfg, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                               cpus_per_worker=args.cpus_per_worker, address=args.address,
                               max_failures=args.max_failures)
    except ValueError as e:
        raise UsageError(str(e)) from None
    output.emit(history, args.format, table_fn=lambda h, out: print(format_history(h), file=out))
    ckpt = os.path.join(args.out, "checkpoint.pt")
    output.info(f"bike: checkpoint: {ckpt}  (bike classify --checkpoint {ckpt} VIDEO: its own labels)")
    return 0


def format_history(history: list) -> str:
    lines = [f"{'epoch':>5} {'stage':<8} {'loss':>8} {'val top1':>9} {'clips/s':>9}"]
    for m in history:
        loss = f"{m['loss']:.4f}" if "loss" in m else ""
        top1 = m.get("val_fused_top1", m.get("val_top1"))
        lines.append(f"{m['epoch']:>5} {m['stage']:<8} {loss:>8} "
                     f"{'' if top1 is None else f'{top1:.3f}':>9} "
                     f"{'' if 'clips_per_s' not in m else format(m['clips_per_s'], '.1f'):>9}")
    return "\n".join(lines)
