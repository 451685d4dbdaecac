"""Errors a user can act on. The CLI prints their message (no traceback) and exits with status 2.

This module imports nothing heavy: the error classes of the engine and the store are looked up by name
(:data:`USER_ERROR_CLASSES`) only when an exception is being handled, and only in modules already imported
(an exception can only be raised by a module that has been imported), so ``bike --help`` never loads torch.
"""
from __future__ import annotations

import sys


class UsageError(Exception):
    """Bad arguments or a bad store/path: the message says what to fix."""


#: ``(module, class)`` of every exception whose message is enough for the user (``bike: error: <message>``).
#: A new module with its own user-facing error adds one line here.
USER_ERROR_CLASSES = [
    ("engine.model.labels", "LabelError"),
    ("engine.model.device", "DeviceError"),
    ("engine.model.loading", "CheckpointError"),
    ("engine.model.loading", "WeightsUnavailable"),
    ("engine.video", "VideoError"),
    ("index.store.core", "StoreError"),
    ("index.store.sql", "SQLError"),
    ("index.store.where", "WhereError"),
    ("engine.sources.remote", "RemoteError"),
]


def user_errors() -> tuple:
    """The user-facing exception classes: :class:`UsageError` and those of :data:`USER_ERROR_CLASSES` whose
    module is imported."""
    found = [UsageError]
    for module, name in USER_ERROR_CLASSES:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)
