"""The `bike` command: ``bike <command> --help`` documents each one.

Start-up is kept light: this module, jobs/errors.py, jobs/cli/options.py, jobs/output.py and the command
modules' top level import no torch, open_clip or Ray (tests/test_cli_contract.py checks it); a command
imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from jobs import output
from jobs.errors import user_errors
from .options import HelpFormatter, add_verbosity_args, apply_verbosity, command_context

#: Subcommands, each a module in jobs/cli/commands/ with ``register(subparsers)``. A new command is one new
#: module and one name here; it inherits -q/-v, the help layout and the error handling.
COMMANDS = ["classify", "tag", "index", "search", "sql", "train", "adapt", "eval", "relabel", "weights", "check",
            "repair", "serve", "compact", "export", "dedup", "label"]


def version() -> str:
    try:
        from importlib.metadata import version as _v
        return _v("bike")
    except Exception:  # noqa: BLE001 - not installed (a source checkout on PYTHONPATH)
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bike", formatter_class=HelpFormatter,
        description="Video search and tagging with BIKE (CVPR 2023): classify, tag, search, SQL, train and "
                    "adapt. Results go to stdout (--format table|json|jsonl|csv), messages to stderr.",
        epilog="examples:\n  bike classify clip.mp4\n  bike tag ~/videos --store tags/\n"
               "  bike search --store tags/ \"a dog catches a frisbee\" -k 5\n"
               "  bike weights                 # what weights are cached, what this machine has\n"
               "`bike COMMAND --help` documents each command.")
    parser.add_argument("--version", action="version", version=f"bike {version()}")
    add_verbosity_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"jobs.cli.commands.{name}").register(sub)
    for p in sub.choices.values():                   # every command, including ones added later
        p.formatter_class = HelpFormatter
        if "--verbose" not in p._option_string_actions:
            add_verbosity_args(p, suppress=True)
    return parser


def _error_line(e) -> str:
    path, reason = getattr(e, "path", None), getattr(e, "reason", None)
    if isinstance(path, str) and isinstance(reason, str):           # VideoError-like: the name made safe
        return f"bike: error: {output.safe(path)}: {output.safe(reason, keep_newlines=True)}"
    line = f"bike: error: {output.safe(str(e), keep_newlines=True)}"
    if type(e).__name__ == "WeightsUnavailable":
        from jobs.tag.doctor import RELEASED, hub_cache
        line += (f"\n  open_clip caches downloaded weights in {hub_cache()}; released BIKE checkpoints: {RELEASED}"
                 " (pass one with --checkpoint FILE); `bike weights` lists what is cached here")
    return line


def main(argv=None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):               # bare `bike`: the overview
        parser.print_help()
        return 0
    apply_verbosity(args)
    try:
        try:
            with command_context(args):
                code = int(args.func(args) or 0)
            sys.stdout.flush()
            return code
        except BrokenPipeError:                       # `bike ... | head`: the reader has what it wanted
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return 0
    except KeyboardInterrupt as e:            # a job may say what it kept (jobs/tag/tag.py: Interrupted)
        print(f"bike: interrupted{': ' + output.safe(str(e)) if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - only the user-facing kinds are turned into one line
        if isinstance(e, user_errors()):
            print(_error_line(e), file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.errno is not None and e.strerror and output.verbosity() < output.VERBOSE:
            where = f"{e.filename}: " if e.filename else ""
            print(_error_line(f"{where}{e.strerror}"), file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
