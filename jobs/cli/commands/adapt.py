"""``bike adapt LIST --shots K --out DIR``: learn new classes from K examples each (few-shot)."""
from __future__ import annotations

import os
import shutil

from jobs import output
from jobs.errors import UsageError
from jobs.train.rates import LR_CLIP, LR_NEW
from jobs.cli.options import add_model_args, command_parser, load_model_from_args, nonneg_float, positive_float, \
    positive_int


def register(sub) -> None:
    p = command_parser(
        sub, "adapt", help="adapt a model to new classes from K examples each (fast or BIKE few-shot fine-tuning)",
        description="Few-shot adaptation. LIST holds 'path label' lines (label = class name, or an id of --labels); "
                    "K examples of each class are used. fast (default): encode the examples once and learn only "
                    "the class text features and the attributes heads (seconds on a CPU). finetune: BIKE's "
                    "few-shot recipe (no header, VCS on raw frames, CLIP visual fine-tuned) with Ray Train. "
                    "Writes OUT/adapted.pt, carrying its class names, for `bike classify/tag/eval --checkpoint "
                    "OUT/adapted.pt` (those classes are then the default labels).",
        examples=["bike adapt shots.txt --shots 4 --checkpoint runs/mine/checkpoint.pt --out runs/new",
                  "bike adapt shots.txt --shots 8 --mode finetune --pretrained openai --out runs/ft",
                  "bike adapt shots.txt --shots 2 --model bike-tiny --random-init --out /tmp/a --format json"])
    p.add_argument("list", metavar="LIST")
    p.add_argument("--shots", type=positive_int, required=True, metavar="K", help="examples per class")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (adapted.pt)")
    p.add_argument("--base", dest="checkpoint", default=None, help=output.argparse_suppress())  # = --checkpoint
    p.add_argument("--mode", choices=("fast", "finetune"), default="fast",
                   help="fast: learn class text features + attributes heads; finetune: BIKE's few-shot recipe")
    add_model_args(p, labels=False)
    p.add_argument("--labels", default=None, metavar="SET",
                   help="class names (CSV or a,b,c); default: the names used in LIST, in order of appearance")
    p.add_argument("--seed", type=int, default=0, help="which K examples are drawn, and training randomness")
    f = p.add_argument_group("fast mode")
    f.add_argument("--views", type=positive_int, default=4, help="views encoded per example (default 4)")
    f.add_argument("--steps", type=positive_int, default=300, help="optimisation steps (default 300)")
    t = p.add_argument_group("finetune mode (Ray Train)")
    t.add_argument("--epochs", type=positive_int, default=10, help="training epochs")
    t.add_argument("--batch", type=positive_int, default=8, metavar="N",
                   help="training examples per optimiser step (global; at most the number of examples)")
    t.add_argument("--lr-clip", type=positive_float, default=LR_CLIP, help=f"CLIP visual learning rate (default {LR_CLIP:g})")
    t.add_argument("--workers", type=positive_int, default=1, help="Ray Train workers")
    t.add_argument("--gpus-per-worker", type=nonneg_float, default=0, help="GPUs per worker (0: CPU)")
    t.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    output.add_format_arg(p, what="fast: the summary, finetune: the per-epoch history")
    p.set_defaults(func=run)


def _labels(args):
    from engine.model.labels import load_labels

    from jobs.train import datasets as ds
    if args.labels:
        return load_labels(args.labels)
    names = ds.label_names_in_list(args.list) if os.path.isfile(args.list) else []
    if not names:
        raise UsageError(f"{args.list}: no labels found in the list (or pass --labels)")
    if all(n.isdigit() for n in names):
        raise UsageError(f"{args.list}: the list uses class ids; pass --labels with the class names")
    return load_labels(names)


def run(args) -> int:
    from jobs.train import datasets as ds
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
        from jobs.train.adapt import FastConfig, fast_adapt
        args.precision = "fp32"                  # it writes the base's weights into the new checkpoint: exact
        model = load_model_from_args(args)
        summary = fast_adapt(model, shots, list(labels.names), out_path,
                             FastConfig(views=args.views, steps=args.steps, seed=args.seed))
        record = {**summary, "checkpoint": out_path}
        output.emit(record, args.format, table_fn=lambda r, out: print(
            f"adapted {r['classes']} classes from {r['examples']} examples in {r['seconds']:.1f} s -> "
            f"{output.safe(out_path)}", file=out))
        return 0
    return _finetune(args, labels, samples, shots, out_path)


def _finetune(args, labels, samples, shots, out_path) -> int:
    """BIKE few-shot: no header, VCS on raw frames, CLIP visual fine-tuned, via Ray Train."""
    from dataclasses import asdict

    from engine.video.augment import AugmentConfig

    from jobs.cli.options import model_kwargs
    from jobs.train.training import TrainConfig, run_training
    from .train import check_training_precision, format_history
    check_training_precision(args)
    load_model_from_args(args)
    chosen = set(id(s) for s in shots)
    rest = [s for s in samples if id(s) not in chosen]
    kw = model_kwargs(args)
    cfg = TrainConfig(model={**{k: kw[k] for k in ("name", "pretrained", "checkpoint", "random_init", "lexicon")},
                             "seed": args.seed},
                      labels=list(labels.names), train=shots, val=rest[:20 * len(labels)],
                      out=os.path.abspath(args.out), frames=args.frames, epochs=args.epochs,
                      batch=min(args.batch, len(shots)), lr_new=LR_NEW, lr_clip=args.lr_clip, header=False,
                      attr_epochs=0, augment=asdict(AugmentConfig()), seed=args.seed, precision=args.precision,
                      decoder=getattr(args, "decoder", None))
    try:
        history = run_training(cfg, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                               address=args.address)
    except ValueError as e:
        raise UsageError(str(e)) from None
    shutil.copyfile(os.path.join(args.out, "checkpoint.pt"), out_path)
    if args.format == "table":
        print(format_history(history))
        print(f"adapted {len(labels)} classes from {len(shots)} examples -> {output.safe(out_path)}")
    else:
        output.emit(history, args.format)
    return 0
