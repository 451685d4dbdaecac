"""``bike tag --runner local``: decode and score in this process, without Ray (tests and a handful of files).

Starting a local Ray (its processes, the model actor, the decode workers) costs many seconds before the first
frame; for three clips that is most of the job. :class:`LocalPipeline` has the interface ``jobs.tag.tag`` uses of
``jobs.tag.pipeline.Pipeline`` (``start``, ``run``, ``stop``, ``decodes``, ``frames_scored``, ...) and runs the
same two plain stages in the same order: ``jobs.tag.decode.decode_video`` on one video after another (an object,
``s3://...``, through ``engine.sources.remote.decode_remote`` as a decode task does) and ``jobs.tag.scoring.Scorer``
on its chunks, batched up to ``model_batch`` clips. It yields one ``VideoResult`` per video in listing order,
and the rows it leads to are those of a Ray run (tests/test_localrun.py compares them).

:func:`choose_runner` says which runner a job gets: ``auto`` is local for at most :data:`LOCAL_MAX_FILES`
local files and no ``--address``, else Ray.
"""
from __future__ import annotations

from collections import Counter

from engine.model.model import NONFINITE

from .decode import CHUNK_CLIPS, decode_video
from jobs.errors import UsageError
from .records import VideoResult
from .slots import CPU, NVDEC

#: ``--runner auto`` runs in-process for at most this many listed files (all local, no --address).
LOCAL_MAX_FILES = 4
RUNNERS = ("auto", "local", "ray")


def choose_runner(runner: str, address: "str | None", files: int, objects: int) -> "tuple[str, str]":
    """(runner, why) for ``--runner`` (auto | local | ray) given ``--address`` and the listed files (of which
    ``objects`` are object-storage URLs). ``--runner local`` with ``--address`` is a usage error."""
    if runner not in RUNNERS:
        raise UsageError(f"--runner {runner}: choose one of {', '.join(RUNNERS)}")
    if runner == "local":
        if address:
            raise UsageError("--runner local runs in this process: drop --address (or use --runner ray)")
        return "local", "--runner local"
    if runner == "ray":
        return "ray", "--runner ray"
    if address:
        return "ray", "--runner auto: --address joins a Ray cluster"
    if objects:
        return "ray", "--runner auto: object-storage sources"
    if files > LOCAL_MAX_FILES:
        return "ray", f"--runner auto: {files} files > {LOCAL_MAX_FILES}"
    return "local", f"--runner auto: {files} local file(s) <= {LOCAL_MAX_FILES}"


class _Slots:
    """What ``jobs.tag.tag`` reads of the Ray pipeline's decode slots: one CPU decode at a time."""
    sizes = {CPU: 1, NVDEC: 0}


class LocalPipeline:
    """Decode + score videos in this process, one video at a time. Same arguments as ``Pipeline`` where
    they apply (no Ray resources: one decode, one model)."""

    def __init__(self, model_kwargs: dict, labels, window_s: "float | None" = 10.0, model_batch: int = 32,
                 timeout_s: "float | None" = None, chunk_clips: int = CHUNK_CLIPS, decoder: "str | None" = None,
                 sampling: "str | None" = None, windows: str = "fixed", min_shot: float = 1.0):
        self.model_kwargs, self.labels = model_kwargs, labels
        self.window_s, self.model_batch, self.timeout_s = window_s, max(1, model_batch), timeout_s
        self.chunk_clips = max(1, min(chunk_clips, self.model_batch))
        self.decoder, self.sampling = decoder, sampling
        self.windows, self.min_shot, self.known_shots = windows, min_shot, {}
        self.slots = _Slots()
        self.decodes: Counter = Counter()
        self.scorer = None
        self.facts: "dict | None" = None
        self.frames_scored = 0

    @property
    def actors(self) -> list:
        """The one in-process model (``jobs.tag.tag`` divides the model's busy time by their number)."""
        return [self.scorer] if self.scorer is not None else []

    def start(self) -> dict:
        """Load the model (``jobs.tag.scoring.Scorer``) and return its facts; a loading error is raised as itself."""
        from .scoring import Scorer                          # imports torch
        self.scorer = Scorer(dict(self.model_kwargs), self.labels)
        self.facts = self.scorer.facts()
        return self.facts

    def model_busy_s(self) -> float:
        return self.scorer.busy() if self.scorer is not None else 0.0

    def stop(self) -> None:
        self.scorer = None

    def _decode(self, path: str, video_id: str):
        from engine.sources import remote
        f = self.facts
        kwargs = dict(frames=f["frames"], window_s=self.window_s, size=f["crop"], resize=f["resize"],
                      chunk_clips=self.chunk_clips, timeout_s=self.timeout_s, threads=None,
                      decoder=self.decoder, sampling=self.sampling)
        if self.windows != "fixed":
            kwargs.update(windows=self.windows, min_shot=self.min_shot, shots=self.known_shots.get(video_id))
        if remote.is_remote(path):
            return remote.decode_remote(path, decode_video, **kwargs)
        return decode_video(path, **kwargs)

    def run(self, items):
        """``items``: iterable of ``(video_id, path, error)``; yields one ``VideoResult`` per item, in order."""
        if self.facts is None:
            self.start()
        for vid, path, err in items:
            yield VideoResult.failed(vid, path, err) if err is not None else self._video(vid, path)

    def _video(self, vid: str, path: str) -> VideoResult:
        T = self.facts["frames"]
        info, shots, clips, warnings, streamed, error = None, None, [], [], None, None
        pending: list = []                                   # [(spans, frames)] waiting for a full batch

        def score():
            nonlocal error
            if not pending:
                return
            try:
                results = self.scorer.score([p[0] for p in pending], *[p[1] for p in pending])
            except Exception as e:  # noqa: BLE001 - as a failed model call on Ray: an error row
                error = error or f"model failed on this video: {type(e).__name__}: {e}"
                results = []
            for (spans, _), res in zip(pending, results):
                clips.extend(res)
                self.frames_scored += len(spans) * T
            pending.clear()

        stream = self._decode(path, vid)
        want = None
        for msg in stream:
            if want is not None:                             # the frames of the chunk announced before
                pending.append((want, msg))
                want = None
                if sum(len(p[0]) for p in pending) >= self.model_batch and error is None:
                    score()
                continue
            kind = msg["kind"]
            if kind == "head":
                info = msg["info"]
            elif kind == "shots":
                shots = msg
            elif kind == "chunk":
                want = msg["spans"]
            elif kind == "end":
                self.decodes[(CPU, msg.get("decoder"))] += 1
                warnings, streamed = msg.get("warnings") or [], msg.get("streamed")
                error = error or msg.get("error")
        if error is None:
            score()
        if error is None and not all(c.finite for c in clips):
            error = NONFINITE                                # NaN/inf scores: an error row, never 'ok'
        if error is not None:
            r = VideoResult.failed(vid, path, error, info=info)
            r.streamed = streamed
            return r
        r = VideoResult.from_info(vid, path, info)
        r.warnings, r.streamed, r.shots = "; ".join(warnings) or None, streamed, shots
        r.clips = sorted(clips, key=lambda c: c.span.index)
        return r
