"""Command-line options shared by several commands (model selection) and how they become a model."""
from __future__ import annotations

import argparse
import os
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
    add_decoder_args(p)
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


class _EnvChoice(argparse.Action):
    """Store the choice and export it as an environment variable, so every decode in this process (and the
    local Ray workers it starts) uses it: ``engine.video`` reads ``$BIKE_DECODER`` / ``$BIKE_SAMPLING``."""

    def __init__(self, *a, env: str, **k):
        self.env = env
        super().__init__(*a, **k)

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, value)
        os.environ[self.env] = value


def add_decoder_args(p: argparse.ArgumentParser) -> None:
    """``--decoder`` and ``--sampling`` (docs/decoding.md) for every command that decodes video."""
    g = p.add_argument_group("decoding")
    g.add_argument("--decoder", default=None, action=_EnvChoice, env="BIKE_DECODER",
                   choices=("auto", "pyav", "ffmpeg", "nvdec"),
                   help="video decoder: pyav (in-process, decodes only the sampled GOPs), ffmpeg (one ffmpeg "
                        "process per video), nvdec (NVIDIA GPUs; falls back to the CPU); default auto: the "
                        "fastest available")
    g.add_argument("--sampling", default=None, action=_EnvChoice, env="BIKE_SAMPLING",
                   choices=("exact", "keyframes"),
                   help="exact (default): the frames BIKE's sampler names; keyframes: the keyframe nearest each "
                        "segment centre (approximate, several times faster; for triage of huge archives)")
