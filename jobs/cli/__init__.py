"""jobs.cli: the `bike` command: the entry (``entry.main``, re-exported here as ``jobs.cli.main``), one module
per subcommand in ``jobs/cli/commands/`` and the shared options. ``python -m jobs.cli`` runs it."""
from jobs.cli.entry import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
