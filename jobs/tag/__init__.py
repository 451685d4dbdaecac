"""jobs.tag: ``bike tag`` and ``bike relabel``: listing sources, decoding on Ray or locally, scoring clips with
the model, the text stage, writing records to the store; the checks before a run (``precheck``) and what this
machine has for it (``doctor``)."""
