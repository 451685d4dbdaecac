"""The shared vocabulary of the `bike` command: help layout, checked numbers, model options.

One name per idea, in every command:

* ``-k/--top N`` results to show; ``--format table|json|jsonl|csv`` (jobs/output.py); ``-q/--quiet``,
  ``-v/--verbose`` (added to every command by jobs/cli/entry.py);
* ``--checkpoint FILE`` a BIKE checkpoint, ``--pretrained TAG|FILE`` CLIP weights, ``--random-init``;
* ``--model-id ID`` the model of a store (``bike sql --store S "SELECT * FROM models"`` lists them);
* ``--batch N`` is documented per command family (videos per store batch, or training examples per step).

Numbers are checked when the command line is parsed (:func:`positive_int`, ...): ``--frames 0`` is refused
by argparse with the reason before anything starts. This module imports nothing heavy (no torch, no Ray).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import textwrap

from engine.model.config import DEFAULTS

from jobs import output


# ---- help layout ------------------------------------------------------------------------------------------
class HelpFormatter(argparse.HelpFormatter):
    """Help wrapped to the terminal; every option shows its default; indented lines (examples) kept as is."""

    def __init__(self, prog, indent_increment=2, max_help_position=30, width=None):
        width = width or max(60, min(shutil.get_terminal_size((100, 24)).columns, 120) - 2)
        super().__init__(prog, indent_increment, max_help_position, width)

    def _fill_text(self, text, width, indent):
        lines = []
        for line in text.splitlines():
            if not line.strip() or line.startswith(" "):
                lines.append(indent + line)
            else:
                lines.extend(textwrap.wrap(line, width, initial_indent=indent, subsequent_indent=indent))
        return "\n".join(lines)

    def _get_help_string(self, action):
        text = action.help or ""
        if text is argparse.SUPPRESS or "default" in text or "%(default)" in text:
            return text
        if action.default in (None, False, argparse.SUPPRESS) or action.option_strings == [] \
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if isinstance(action, argparse._CountAction):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def command_parser(sub, name: str, help: str, description: str, examples: "list[str]"):
    """A subcommand's parser with bike's help layout and an examples epilog (every command has examples)."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=HelpFormatter)


def add_verbosity_args(p, suppress: bool = False) -> None:
    """``-q/--quiet`` and ``-v/--verbose``. On subcommands ``suppress`` leaves the value of the main parser."""
    kw = {"default": argparse.SUPPRESS} if suppress else {"default": 0}
    p.add_argument("-q", "--quiet", action="count", help="print results and errors only (no progress, no notes)",
                   **kw)
    p.add_argument("-v", "--verbose", action="count", help="more detail on stderr, including Ray's own logs", **kw)


def apply_verbosity(args) -> None:
    quiet, verbose = getattr(args, "quiet", 0) or 0, getattr(args, "verbose", 0) or 0
    output.set_verbosity(output.QUIET if quiet > verbose else output.VERBOSE if verbose else output.NORMAL)


# ---- checked numbers --------------------------------------------------------------------------------------
def _number(kind, test, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: give a finite number")
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
        return value
    parse.__name__ = f"{kind.__name__} {what}"
    return parse


positive_int = _number(int, lambda v: v >= 1, ">= 1")
nonneg_int = _number(int, lambda v: v >= 0, ">= 0")
positive_float = _number(float, lambda v: v > 0, "> 0")
nonneg_float = _number(float, lambda v: v >= 0, ">= 0")
fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
unit_interval = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")


def add_top_arg(p, default: int, what: str = "results") -> None:
    """``-k/--top N``: how many results (labels, clips) to show."""
    p.add_argument("-k", "--top", type=positive_int, default=default, metavar="N", help=f"{what} to show")


def add_store_arg(p, required: bool = True, note: str = "from `bike tag`") -> None:
    """``--store DIR`` (a directory, or ``s3://bucket/prefix/``) with its ``--endpoint URL``: every command that
    takes a store declares both here, with one help text (``note`` says where the store comes from);
    ``--endpoint`` holds for the command's duration (``command_context``, run by ``jobs.cli.main``)."""
    p.add_argument("--store", required=required, default=None, metavar="DIR",
                   help=f"the store: a directory, or s3://bucket/prefix/ ({note}; docs/storage.md)")
    add_endpoint_arg(p)


def add_endpoint_arg(p) -> None:
    """``--endpoint URL`` (declared by :func:`add_store_arg`): the S3-compatible server of ``s3://`` URLs."""
    p.add_argument("--endpoint", default=None, metavar="URL",
                   help="S3-compatible endpoint for s3:// URLs: the store, and the sources of `bike tag` "
                        "(default: $AWS_ENDPOINT_URL, else AWS)")



def add_model_id_arg(p, help: str = "which model's clips (default: the only one, else the most recently "
                                    "tagged; `bike sql --store S \"SELECT * FROM models\"` lists them)") -> None:
    p.add_argument("--model-id", default=None, metavar="ID", help=help)


def _device(text: str) -> str:
    t = text.strip().lower()
    if t == "gpu":
        raise argparse.ArgumentTypeError("'gpu': say 'cuda' (or 'cuda:N')")
    head, _, index = t.partition(":")
    if head not in ("cpu", "cuda", "mps", "xpu") or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: give cpu, cuda or cuda:N")
    return t


# ---- model selection --------------------------------------------------------------------------------------
def add_model_args(p: argparse.ArgumentParser, labels: bool = True, branches: bool = True) -> None:
    """The model options; ``branches=False`` for commands where choosing the scoring branches means nothing
    (``bike train`` fits both)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="NAME",
                   help=f"open_clip model name (default {DEFAULTS.model}, or the checkpoint's own)")
    g.add_argument("--pretrained", default=None, metavar="TAG|FILE",
                   help="open_clip pretrained tag (downloaded and cached on first use) or a local CLIP weights "
                        f"file (default {DEFAULTS.pretrained} when no --checkpoint; see `bike weights`)")
    g.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="a BIKE checkpoint: released (model_state_dict + fusion_model_state_dict) or written by "
                        "`bike train` / `bike adapt` (its labels become the default --labels)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of a legacy --checkpoint/--pretrained file that safe loading "
                        "refuses (it can run code: only for files you trust)")
    g.add_argument("--random-init", action="store_true",
                   help="run with seeded random weights when no weights are available (results meaningless, "
                        "labelled RANDOM WEIGHTS everywhere)")
    g.add_argument("--frames", type=positive_int, default=DEFAULTS.frames,
                   metavar="T", help=f"frames per clip (default {DEFAULTS.frames}; 16 and 32 supported)")
    g.add_argument("--lexicon", default=DEFAULTS.lexicon, metavar="SET",
                   help=f"attribute lexicon: a label set name or file (default {DEFAULTS.lexicon})")
    g.add_argument("--device", default=None, type=_device,
                   help="torch device: cpu, cuda, cuda:N (default: cuda when available, else cpu)")
    g.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="numeric precision of the image and text towers: auto = fp16 on CUDA, bf16 on CPUs "
                        "with AMX/AVX512-BF16, else fp32 (exact); see docs/model.md (default auto)")
    if branches:
        g.add_argument("--branches", default=None, choices=("video", "attributes", "fused"),
                       help="which branches score: video, attributes, or their 0.7/0.3 fusion (default: fused with "
                            "trained attributes heads or plain CLIP weights, video for a checkpoint without them)")
    add_decoder_args(p)
    if labels:
        p.add_argument("--labels", default=None, metavar="SET",
                       help="label set: built-in name (kinetics400, k600-split1..3, ucf101, hmdb51, "
                            "activitynet, charades), an 'id,name' CSV, or 'a,b,c' (default: the --checkpoint's "
                            f"own labels when it has them, else {DEFAULTS.labels})")


def model_kwargs(args) -> dict:
    """The keyword arguments of :func:`engine.load_model` that the options select."""
    return dict(name=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint,
                random_init=args.random_init, frames=args.frames, device=args.device, lexicon=args.lexicon,
                precision=args.precision, branches=getattr(args, "branches", None),
                **({"trust_checkpoint": True} if getattr(args, "trust_checkpoint", False) else {}))


def checkpoint_labels(path: "str | None") -> "list[str] | None":
    """The class names a bike-written checkpoint carries (``labels``), or None (released checkpoints)."""
    if not path:
        return None
    from engine.model.loading import read_state_file
    state = read_state_file(path)
    names = state.get("labels") if isinstance(state, dict) else None
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def resolve_labels(args, model=None):
    """``--labels`` as given; else the checkpoint's own class names; else the default label set."""
    from engine.model.labels import load_labels
    if getattr(args, "labels", None):
        return load_labels(args.labels)
    names = getattr(model, "checkpoint_labels", None) if model is not None else \
        checkpoint_labels(getattr(args, "checkpoint", None))
    if names:
        output.info(f"bike: labels: the {len(names)} classes of {args.checkpoint} (--labels to change)")
        return load_labels(list(names))
    return load_labels(DEFAULTS.labels)


def load_model_from_args(args):
    """Load the model the options name; say in one line which weights are in use."""
    from engine.model.model import load_model

    from jobs.tag.precheck import check_hub
    check_hub(model_kwargs(args))                # uncached weights and no network: said in seconds, not minutes
    model = load_model(**model_kwargs(args))
    output.info(f"bike: model: {model.describe()}")
    return model


@contextlib.contextmanager
def command_context(args):
    """What a command's options set for its own duration, in this process only, restored after it (a process
    that runs several commands, e.g. a test or a notebook, must not keep the previous one's choice):
    ``--decoder`` / ``--sampling`` as the defaults of in-process decodes (``engine.video.decoding_choice``: a
    context variable, not the environment) and ``--endpoint`` as the S3 endpoint
    (``engine.sources.remote.using_endpoint``). ``bike tag`` also passes its choices to its decode tasks as
    arguments (``jobs.tag.tag.TagOptions``), so they reach the workers of a joined cluster."""
    from engine.sources.remote import using_endpoint
    from engine.video.base import decoding_choice
    with decoding_choice(getattr(args, "decoder", None), getattr(args, "sampling", None)), \
            using_endpoint(getattr(args, "endpoint", None)):
        yield


def add_decoder_args(p: argparse.ArgumentParser) -> None:
    """``--decoder`` and ``--sampling`` (docs/decoding.md) for every command that decodes video."""
    from engine.video import registry             # names only: no backend, numpy or PyAV is imported
    g = p.add_argument_group("decoding")
    g.add_argument("--decoder", default=None, choices=registry.choices(), help=registry.help_text())
    g.add_argument("--sampling", default=None,
                   choices=("exact", "keyframes"),
                   help="exact (default): the frames BIKE's sampler names; keyframes: the keyframe nearest each "
                        "segment centre (approximate, several times faster; for triage of huge archives)")


def add_query_precision_arg(p) -> None:
    """``--precision`` of commands that encode queries with a store's model (search, serve)."""
    p.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16", "fp16"),
                   help="precision of the text/image towers for queries (default: the one the store was tagged "
                        "with; docs/model.md)")
