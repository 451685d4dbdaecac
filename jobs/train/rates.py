"""The learning rates of docs/model.md §6, without torch: the CLI's ``--lr`` / ``--lr-clip`` defaults read them
at ``bike --help`` time, and :mod:`jobs.train.optim` (which imports torch) builds every optimiser from them."""

#: New modules (temporal header, attributes heads).
LR_NEW = 5e-5
#: The CLIP visual tower and ``logit_scale`` (0 freezes them).
LR_CLIP = 5e-6
