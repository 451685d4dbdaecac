"""Progress of long jobs: a tqdm bar on a terminal, a one-line log every ``interval`` seconds otherwise.

The bar counts videos; frames are counted as they are scored (:meth:`Progress.follow`), so a single
1-hour video moves the frame count and rate every second instead of only when it is finished.
"""
from __future__ import annotations

import sys
import threading
import time

from jobs import output


class Progress:
    """Counts videos (ok / error) and frames; shows videos/s and frames/s."""

    def __init__(self, total: int, what: str = "tag", stream=None, interval: float = 10.0,
                 bar: "bool | None" = None):
        self.stream = stream or sys.stderr
        self.total, self.what, self.interval = total, what, interval
        self.ok = self.error = self.frames = self.skipped = 0
        self.start = self._last_log = time.monotonic()
        use_bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        self._frames_fn = None
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        if use_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="video", desc=f"bike {what}", file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    @property
    def done(self) -> int:
        return self.ok + self.error

    @property
    def frames_now(self) -> int:
        """Frames scored so far, finished videos or not (:meth:`follow`), else those of finished videos."""
        live = 0
        if self._frames_fn is not None:
            try:
                live = int(self._frames_fn())
            except Exception:  # noqa: BLE001 - a display only
                live = 0
        return max(self.frames, live)

    def rates(self) -> "tuple[float, float]":
        dt = max(time.monotonic() - self.start, 1e-9)
        return self.done / dt, self.frames_now / dt

    def follow(self, frames_fn, every: float = 1.0) -> None:
        """Refresh the frame count from ``frames_fn()`` every ``every`` s (bar) or ``interval`` s (log) on a
        background thread, while videos are still running."""
        self._frames_fn = frames_fn
        period = every if self.bar is not None else self.interval

        def loop():
            while not self._stop.wait(period):
                with self._lock:
                    if self.bar is not None:
                        self._postfix()
                        self.bar.refresh()
                    elif time.monotonic() - self._last_log >= self.interval:
                        self.log()

        self._thread = threading.Thread(target=loop, name="bike-progress", daemon=True)
        self._thread.start()

    def _postfix(self) -> None:
        vps, fps = self.rates()
        self.bar.set_postfix_str(f"{self.frames_now} frames, {fps:.1f} frames/s, {self.error} errors",
                                 refresh=False)

    def update(self, ok: bool, frames: int = 0) -> None:
        if ok:
            self.ok += 1
        else:
            self.error += 1
        self.frames += frames
        with self._lock:
            if self.bar is not None:
                self._postfix()
                self.bar.update(1)
            elif time.monotonic() - self._last_log >= self.interval:
                self.log()

    def skip(self, n: int = 1) -> None:
        """Videos that need no work (already in the store): they advance the bar, not the rates."""
        self.skipped += n
        if self.bar is not None:
            with self._lock:
                self.bar.update(n)

    def log(self) -> None:
        self._last_log = time.monotonic()
        if output.verbosity() < output.NORMAL:               # -q: no progress lines
            return
        vps, fps = self.rates()
        print(f"bike {self.what}: {self.done + self.skipped}/{self.total} videos ({self.error} errors, "
              f"{self.skipped} skipped), {self.frames_now} frames, {vps:.2f} videos/s, "
              f"{fps:.1f} frames/s, {time.monotonic() - self.start:.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.bar is not None:
            self.bar.close()
