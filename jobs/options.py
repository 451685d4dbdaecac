"""Command-line options shared by several commands (model selection) and how they become a model."""
from __future__ import annotations

import argparse
import sys

from engine.config import DEFAULTS


def add_model_args(p: argparse.ArgumentParser, labels: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="NAME",
                   help=f"open_clip model name (default {DEFAULTS.model}, or the checkpoint's own)")
    g.add_argument("--pretrained", default=None, metavar="TAG|FILE",
                   help=f"open_clip pretrained tag or a local CLIP weights file (default {DEFAULTS.pretrained})")
    g.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="a BIKE checkpoint (released layout: model_state_dict + fusion_model_state_dict)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of a legacy --checkpoint/--pretrained file that safe loading "
                        "refuses (it can run code: only for files you trust)")
    g.add_argument("--random-init", action="store_true",
                   help="run with seeded random weights when no weights are available (results meaningless)")
    g.add_argument("--frames", type=int, default=DEFAULTS.frames,
                   metavar="T", help=f"frames per clip (default {DEFAULTS.frames}; 16 and 32 supported)")
    g.add_argument("--lexicon", default=DEFAULTS.lexicon, metavar="SET",
                   help=f"attribute lexicon: a label set name or file (default {DEFAULTS.lexicon})")
    g.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    if labels:
        p.add_argument("--labels", default=DEFAULTS.labels, metavar="SET",
                       help="label set: built-in name (kinetics400, k600-split1..3, ucf101, hmdb51, "
                            f"activitynet, charades), an 'id,name' CSV, or 'a,b,c' (default {DEFAULTS.labels})")


def model_kwargs(args) -> dict:
    """The keyword arguments of :func:`engine.load_model` that the options select."""
    return dict(name=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint,
                random_init=args.random_init, frames=args.frames, device=args.device, lexicon=args.lexicon,
                **({"trust_checkpoint": True} if getattr(args, "trust_checkpoint", False) else {}))


def load_model_from_args(args):
    """Load the model the options name; say in one line which weights are in use."""
    import engine
    model = engine.load_model(**model_kwargs(args))
    print(f"bike: model: {model.describe()}", file=sys.stderr)
    return model
