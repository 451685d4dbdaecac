"""``bike tag --windows fixed|shots``: what the choice means for the job (docs/tagging.md "Windows").

- ``fixed``: clips are consecutive ``--window`` seconds (the model id is what it always was);
- ``shots``: the decode task detects the video's shots (engine/video/shots.py: TransNetV2, dense decoding
  only around candidate cuts) and cuts windows inside them: no clip spans a cut, a shot longer than
  ``--window`` is split into equal windows ≤ it, shots shorter than ``--min-shot`` join a neighbour. The
  window plan changes which clips exist, so it is part of the model id (:func:`plan_key`). Detected shots are
  stored in the ``shots`` table; a later run (another model or label set) reuses them (:func:`stored_shots`).
"""
from __future__ import annotations

from jobs.errors import UsageError

WINDOWS = ("fixed", "shots")


def check_windows(opts) -> None:
    """Refuse a bad ``--windows`` / ``--min-shot`` before any work, and a missing detector package."""
    if opts.windows not in WINDOWS:
        raise UsageError(f"--windows {opts.windows}: give one of {', '.join(WINDOWS)}")
    if opts.min_shot < 0:
        raise UsageError(f"--min-shot {opts.min_shot}: give a length >= 0 seconds")
    if opts.windows == "shots":
        from engine.video import transnet
        why = transnet.available()
        if why:
            raise UsageError(f"--windows shots: {why}")


def plan_key(opts) -> "str | None":
    """What the model id records about the window plan: None for fixed windows (ids unchanged), else the
    detector, its version and ``--min-shot``."""
    if opts.windows == "fixed":
        return None
    from engine.video import transnet
    return f"shots:{transnet.version()}:min_shot={float(opts.min_shot):g}"


def stored_shots(store) -> dict:
    """video_id → [(start_s, end_s)] of the shots the store holds from this detector version (any model)."""
    from engine.video import transnet
    try:
        t = store.read("shots", ["video_id", "shot", "start_s", "end_s", "version"])
    except Exception:  # noqa: BLE001 - no shots yet (or an older store): detect them
        return {}
    out: dict = {}
    seen: set = set()
    version = transnet.version()
    rows = sorted(zip(*(t[c].to_pylist() for c in ("video_id", "shot", "start_s", "end_s", "version"))))
    for vid, shot, a, b, ver in rows:
        if ver != version or (vid, shot) in seen:          # the same shots stored by several runs: once
            continue
        seen.add((vid, shot))
        out.setdefault(vid, []).append((a, b))
    return out
