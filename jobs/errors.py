"""Errors a user can act on. The CLI prints their message (no traceback) and exits with status 2."""
from __future__ import annotations

from engine.device import DeviceError
from engine.labels import LabelError
from engine.loading import CheckpointError, WeightsUnavailable
from engine.video import VideoError
from index.store import StoreError


class UsageError(Exception):
    """Bad arguments or a bad store/path: the message says what to fix."""


#: Exceptions whose message is enough for the user: printed as ``bike: error: <message>``.
USER_ERRORS = (UsageError, LabelError, CheckpointError, WeightsUnavailable, VideoError, StoreError,
               DeviceError)
