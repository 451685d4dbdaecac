"""One module per `bike` subcommand. Each defines ``register(subparsers)`` that adds its parser and sets
``func`` to a ``run(args) -> int`` function. Add new commands to :data:`jobs.cli.COMMANDS`."""
