"""jobs.train: ``bike train``, ``bike adapt`` and ``bike eval``: data sets of labelled videos, the learner and
optimiser, training on Ray Train, and the evaluation metrics (classification and moments)."""
