"""The `bike` command: ``bike <command> --help`` documents each one."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import USER_ERRORS

#: Subcommands, each a module in jobs/commands/ with ``register(subparsers)``.
COMMANDS = ["classify", "tag", "index", "search", "sql", "train", "adapt", "eval", "relabel", "compact"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bike", description="Video search and tagging with BIKE (CVPR 2023): classify, tag, search, "
                                 "SQL, train and adapt.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"jobs.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"bike: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
