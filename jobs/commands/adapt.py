"""``bike adapt LIST --shots K --out DIR``: learn new classes from K examples each (few-shot)."""
from __future__ import annotations

import os
import shutil

from engine.labels import load_labels

from .. import datasets as ds
from ..errors import UsageError
from ..options import add_model_args, load_model_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "adapt", help="adapt a model to new classes from K examples each (fast or BIKE few-shot fine-tuning)",
        description="Few-shot adaptation. LIST holds 'path label' lines (label = class name, or an id of --labels); "
                    "K examples of each class are used. fast (default): encode the examples once and learn only "
                    "the class text features and the attributes heads (seconds on a CPU). finetune: BIKE's "
                    "few-shot recipe (no header, VCS on raw frames, CLIP visual fine-tuned) with Ray Train. "
                    "Writes OUT/adapted.pt for `bike classify/tag/eval --checkpoint OUT/adapted.pt`.")
    p.add_argument("list", metavar="LIST")
    p.add_argument("--shots", type=int, required=True, metavar="K", help="examples per class")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--base", default=None, metavar="CHECKPOINT", help="BIKE checkpoint to adapt (same as --checkpoint)")
    p.add_argument("--mode", choices=("fast", "finetune"), default="fast")
    add_model_args(p, labels=False)
    p.add_argument("--labels", default=None, metavar="SET",
                   help="class names (CSV or a,b,c); default: the names used in LIST, in order of appearance")
    p.add_argument("--seed", type=int, default=0, help="which K examples are drawn, and training randomness")
    f = p.add_argument_group("fast mode")
    f.add_argument("--views", type=int, default=4, help="views encoded per example (default 4)")
    f.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    t = p.add_argument_group("finetune mode (Ray Train)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr-clip", type=float, default=5e-6, help="CLIP visual learning rate (default 5e-6)")
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--gpus-per-worker", type=float, default=0)
    t.add_argument("--address", default=None)
    p.set_defaults(func=run)


def _labels(args):
    if args.labels:
        return load_labels(args.labels)
    names = ds.label_names_in_list(args.list) if os.path.isfile(args.list) else []
    if not names:
        raise UsageError(f"{args.list}: no labels found in the list (or pass --labels)")
    if all(n.isdigit() for n in names):
        raise UsageError(f"{args.list}: the list uses class ids; pass --labels with the class names")
    return load_labels(names)


def run(args) -> int:
    if args.shots < 1:
        raise UsageError("--shots must be >= 1")
    if args.base:
        if args.checkpoint and args.checkpoint != args.base:
            raise UsageError("give the base model once: --base or --checkpoint")
        args.checkpoint = args.base
    labels = _labels(args)
    samples = ds.parse_list(args.list, labels)
    shots = ds.few_shot(samples, args.shots, args.seed)
    missing = sorted(set(range(len(labels))) - {s.label for s in shots})
    if missing:
        raise UsageError(f"{args.list}: no examples of {', '.join(labels.names[i] for i in missing[:5])}")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{args.out}: cannot create the output folder (--out): {e.strerror or e}") from None
    if not os.access(args.out, os.W_OK):
        raise UsageError(f"{args.out}: the output folder (--out) is not writable")
    out_path = os.path.join(args.out, "adapted.pt")
    if args.mode == "fast":
        from ..adapt import FastConfig, fast_adapt
        model = load_model_from_args(args)
        summary = fast_adapt(model, shots, list(labels.names), out_path,
                             FastConfig(views=args.views, steps=args.steps, seed=args.seed))
        print(f"adapted {summary['classes']} classes from {summary['examples']} examples in "
              f"{summary['seconds']:.1f} s -> {out_path}")
        return 0
    return _finetune(args, labels, samples, shots, out_path)


def _finetune(args, labels, samples, shots, out_path) -> int:
    """BIKE few-shot: no header, VCS on raw frames, CLIP visual fine-tuned, via Ray Train."""
    from dataclasses import asdict

    from engine.augment import AugmentConfig

    from ..options import model_kwargs
    from ..training import TrainConfig, run_training
    from .train import format_history
    load_model_from_args(args)
    chosen = set(id(s) for s in shots)
    rest = [s for s in samples if id(s) not in chosen]
    kw = model_kwargs(args)
    cfg = TrainConfig(model={**{k: kw[k] for k in ("name", "pretrained", "checkpoint", "random_init", "lexicon")},
                             "seed": args.seed},
                      labels=list(labels.names), train=shots, val=rest[:20 * len(labels)],
                      out=os.path.abspath(args.out), frames=args.frames, epochs=args.epochs,
                      batch=min(args.batch, len(shots)), lr_new=5e-5, lr_clip=args.lr_clip, header=False,
                      attr_epochs=0, augment=asdict(AugmentConfig()), seed=args.seed)
    try:
        history = run_training(cfg, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                               address=args.address)
    except ValueError as e:
        raise UsageError(str(e)) from None
    shutil.copyfile(os.path.join(args.out, "checkpoint.pt"), out_path)
    print(format_history(history))
    print(f"adapted {len(labels)} classes from {len(shots)} examples -> {out_path}")
    return 0
