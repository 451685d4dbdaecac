"""The runners of ``bike tag`` / ``bike relabel`` over the stages of jobs/tag/stages.py, and which one a job gets.

Two runners run the same stage objects:

    LocalRunner   (here)                    setup() and process() in this process, one video after another;
                                            no Ray (starting a local Ray costs many seconds before the first
                                            frame: for three clips that is most of the job)
    RayRunner     (jobs/tag/rayrunner.py)   decode stages as Ray streaming tasks, the score stage in Ray
                                            actors, each with the options its declared resources make

Both take ``(video_id, path, error)`` items (``bike relabel``: ``StoredVideo`` items and no decode stage) and
yield one ``VideoResult`` per item; :func:`commit` feeds them to the shared :class:`~jobs.tag.stages.WriteStage`.
:class:`Assembly` turns one video's decode messages and scored clips into its ``VideoResult`` for both, so a
local run and a Ray run commit the same rows (tests/test_localrun.py, tests/test_stages.py).

:func:`choose_runner` says which runner a job gets: ``auto`` is local for at most :data:`LOCAL_MAX_FILES`
local files and no ``--address``, else Ray. This module imports no Ray and no torch.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from jobs.errors import UsageError
from .records import VideoResult
from .slots import DecodeSlots
from .stages import DecodeStage, ScoreStage, WriteStage
from .tasks import Chunk, DecodeSpec, DecodeTask, End, Head, ScoreBatch, Shots

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


def model_spec(spec: DecodeSpec, facts, model_batch: int) -> DecodeSpec:
    """``spec`` with what the loaded model decides: frames per clip, crop and resize, clips per chunk."""
    return replace(spec, frames=facts.frames, size=facts.crop, resize=facts.resize,
                   chunk_clips=max(1, min(spec.chunk_clips, model_batch)))


@dataclass
class Assembly:
    """One video in flight: its decode messages and scored clips → its ``VideoResult`` (:meth:`result`)."""
    video_id: str
    path: str
    info: object = None
    error: "str | None" = None
    warnings: list = field(default_factory=list)  # decode problems that did not make it an error
    streamed: "dict | None" = None              # an object's content id etc. (engine/sources/remote.py)
    shots: "dict | None" = None                 # --windows shots: the shots its decode detected
    ended: bool = False                         # the End message arrived
    done: bool = False                          # the decode stream has ended
    outstanding: int = 0                        # chunks queued or being scored
    clips: list = field(default_factory=list)

    def on(self, msg) -> None:
        """Take a Head, Shots or End message."""
        if isinstance(msg, Head):
            self.info = msg.info
        elif isinstance(msg, Shots):
            self.shots = msg.record()
        elif isinstance(msg, End):
            self.ended = True
            self.warnings, self.streamed = list(msg.warnings or []), msg.streamed
            if msg.error:
                self.error = self.error or msg.error

    def result(self) -> VideoResult:
        if self.error is None and not all(c.finite for c in self.clips):
            from engine.model.model import NONFINITE         # imports torch: only for such a video
            self.error = NONFINITE                   # NaN/inf scores: an error row, never 'ok'
        if self.error is not None:
            r = VideoResult.failed(self.video_id, self.path, self.error, info=self.info)
            r.streamed = self.streamed
            return r
        r = VideoResult.from_info(self.video_id, self.path, self.info)
        r.warnings, r.streamed, r.shots = "; ".join(self.warnings) or None, self.streamed, self.shots
        r.clips = sorted(self.clips, key=lambda c: c.span.index)
        return r


def commit(results, write: WriteStage, each=None) -> None:
    """Drive ``results`` (a runner's ``run``) into ``write``: ``each(result)`` first (counts, progress; it may
    return None to drop a result, or another result); commit the rest at the end. On any exception (Ctrl-C
    too) the finished videos are still committed (all-or-nothing per batch), then the exception goes on."""
    try:
        for r in results:
            if each is not None:
                r = each(r)
                if r is None:
                    continue
            write.process([r])
        write.flush()
    except BaseException:
        try:
            write.flush()
        except BaseException:  # noqa: BLE001 - the first error is the one to report
            pass
        raise


class _Slots:
    """What ``jobs.tag.tag`` reads of the decode slots: one CPU decode at a time (none for relabel)."""

    def __init__(self, cpu: int):
        self.sizes = DecodeSlots({DecodeStage.pool: cpu}).sizes


class LocalRunner:
    """Run the stages in this process: ``score`` (a :class:`ScoreStage`, or a :class:`StoredScoreStage` with no
    ``spec``: relabel) and, with a ``spec``, a CPU :class:`DecodeStage` built once the model's facts are known.
    Videos are decoded one after another; chunks are scored in batches of up to ``model_batch`` clips
    (relabel: ``model_batch`` clips or ``batch_items`` videos). Results come in listing order."""
    name = "local"

    def __init__(self, score, spec: "DecodeSpec | None" = None, model_batch: int = 32,
                 batch_items: "int | None" = None):
        self.score, self.spec = score, spec
        self.model_batch, self.batch_items = max(1, model_batch), batch_items
        self.decoder = spec.decoder if spec is not None else None
        self.decode: "DecodeStage | None" = None
        self.slots = _Slots(1 if spec is not None else 0)
        self.decodes: Counter = Counter()
        self.known_shots: dict = {}
        self.facts = None                        # jobs.tag.records.ModelFacts, once started
        self.frames_scored = 0
        self._started = False

    @property
    def actors(self) -> list:
        """The one in-process model (``jobs.tag.tag`` divides the model's busy time by their number)."""
        return [self.score]

    def start(self):
        """Set the stages up here (the model loads) → the model's facts; a loading error is raised as itself."""
        self.score.setup()
        self._started = True
        if isinstance(self.score, ScoreStage):
            self.facts = self.score.facts()
        if self.spec is not None:
            self.decode = DecodeStage(model_spec(self.spec, self.facts, self.model_batch))
            self.decode.setup()
        return self.facts

    def model_busy_s(self) -> float:
        return self.score.busy()

    def stop(self) -> None:
        """Nothing runs outside this process."""

    def run(self, items):
        """``items``: ``(video_id, path, error)`` (an error: an error result, no decode), or ``StoredVideo``s
        when there is no decode stage. Yields one ``VideoResult`` per item, in order."""
        if not self._started:
            self.start()
        if self.spec is None:
            yield from self._stored(items)
            return
        for vid, path, err in items:
            yield VideoResult.failed(vid, path, err) if err is not None else self._video(vid, path)

    def _stored(self, items):
        pending, clips = [], 0
        for item in items:
            pending.append(item)
            clips += len(item.spans)
            if clips >= self.model_batch or (self.batch_items and len(pending) >= self.batch_items):
                yield from self.score.process(pending)
                pending, clips = [], 0
        if pending:
            yield from self.score.process(pending)

    def _video(self, vid: str, path: str) -> VideoResult:
        T = self.decode.spec.frames
        v = Assembly(vid, path)
        pending: list = []                                   # [(spans, frames)] waiting for a full batch

        def score():
            if not pending:
                return
            try:
                results = self.score.process(ScoreBatch([p[0] for p in pending], tuple(p[1] for p in pending)))
            except Exception as e:  # noqa: BLE001 - as a failed model call on Ray: an error row
                v.error = v.error or f"model failed on this video: {type(e).__name__}: {e}"
                results = []
            for (spans, _), res in zip(pending, results):
                v.clips.extend(res)
                self.frames_scored += len(spans) * T
            pending.clear()

        want = None
        for msg in self.decode.process(DecodeTask(vid, path, shots=self.known_shots.get(vid))):
            if want is not None:                             # the frames of the chunk announced before
                pending.append((want, msg))
                want = None
                if sum(len(p[0]) for p in pending) >= self.model_batch and v.error is None:
                    score()
            elif isinstance(msg, Chunk):
                want = msg.spans
            else:
                if isinstance(msg, End):
                    self.decodes[(DecodeStage.pool, msg.decoder)] += 1
                v.on(msg)
        if v.error is None:
            score()
        return v.result()
