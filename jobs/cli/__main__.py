"""``python -m jobs.cli``: the `bike` command."""
import sys

from jobs.cli.entry import main

sys.exit(main())
