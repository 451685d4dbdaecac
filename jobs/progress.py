"""Progress of long jobs: a tqdm bar on a terminal, a one-line log every ``interval`` seconds otherwise."""
from __future__ import annotations

import sys
import time


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
        if use_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="video", desc=f"bike {what}", file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    @property
    def done(self) -> int:
        return self.ok + self.error

    def rates(self) -> "tuple[float, float]":
        dt = max(time.monotonic() - self.start, 1e-9)
        return self.done / dt, self.frames / dt

    def update(self, ok: bool, frames: int = 0) -> None:
        if ok:
            self.ok += 1
        else:
            self.error += 1
        self.frames += frames
        vps, fps = self.rates()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{fps:.1f} frames/s, {self.error} errors", refresh=False)
        elif time.monotonic() - self._last_log >= self.interval:
            self.log()

    def skip(self, n: int = 1) -> None:
        """Videos that need no work (already in the store): they advance the bar, not the rates."""
        self.skipped += n
        if self.bar is not None:
            self.bar.update(n)

    def log(self) -> None:
        self._last_log = time.monotonic()
        vps, fps = self.rates()
        print(f"bike {self.what}: {self.done + self.skipped}/{self.total} videos ({self.error} errors, "
              f"{self.skipped} skipped), {vps:.2f} videos/s, "
              f"{fps:.1f} frames/s, {time.monotonic() - self.start:.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
