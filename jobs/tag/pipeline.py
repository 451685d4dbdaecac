"""The Ray layer of ``bike tag``: decode tasks feed model actors; finished videos come back to the driver.

Thin orchestration around two plain stages (``jobs.tag.decode.decode_video``, run by the Ray task of
``jobs.tag.decodetask``, which imports no torch, and ``jobs.tag.scoring.Scorer``):

    work items ──► decode tasks (Ray streaming generators: ``decoders`` on CPUs + ``nvdec`` on NVDEC engines)
                       │ messages (small, fetched)  +  frame chunks (ObjectRefs, never fetched here)
                       ▼
                   queue of chunks ──► model actors (batched across videos, ≤ 2 calls in flight each)
                                           │ ClipResults
                                           ▼
                   one VideoResult per video, yielded when its last chunk is scored

Decodes run in two pools of slots side by side (jobs/tag/slots.py): CPU slots and NVDEC slots (the custom Ray
resource ``NVDEC``, one per engine); ``--decoder auto`` fills a free NVDEC slot first.

Memory stays flat however large the corpus: at most one video per decode slot is open, each generator pauses
after a couple of unconsumed chunks (``_generator_backpressure_num_objects``), the driver stops pulling
chunks when ``max_queue_clips`` wait for the model, and at most 2 model calls per actor are in flight.
A video whose decoding fails, or whose decode worker or model call dies, comes back as an error result.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import ray

from engine.model.model import NONFINITE

from .decode import CHUNK_CLIPS
from .decodetask import decode_task
from .raycluster import NVDEC, Resources
from .records import VideoResult
from .scoring import Scorer
from .slots import CPU, NVDEC as NVDEC_POOL, DecodeSlots, pool_sizes, slot_decoder

#: Model calls queued per actor (one running, one waiting, so the actor never idles between calls).
CALLS_PER_ACTOR = 2
#: Longest a decoded chunk waits for a full model batch before a partial batch is sent.
MAX_WAIT_S = 2.0


ModelActor = ray.remote(max_restarts=1, max_task_retries=1)(Scorer)


@dataclass
class _Video:
    video_id: str
    path: str
    info: object = None
    error: "str | None" = None
    warnings: list = field(default_factory=list)  # decode problems that did not make it an error
    streamed: "dict | None" = None              # an object's content id etc. from its decode (engine/sources/remote.py)
    shots: "dict | None" = None                 # the "shots" message of its decode (--windows shots)
    ended: bool = False                         # the "end" message arrived
    done: bool = False                          # the decode stream has ended
    outstanding: int = 0                        # chunks queued or being scored
    clips: list = field(default_factory=list)


def _short(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"


class Pipeline:
    """Decode + score videos on Ray. ``start()`` loads the model actors, ``run(items)`` streams results."""

    def __init__(self, model_kwargs: dict, labels, resources: Resources, window_s: "float | None" = 10.0,
                 model_batch: int = 32, timeout_s: "float | None" = None, chunk_clips: int = CHUNK_CLIPS,
                 decode_threads: "int | None" = None, decoder: "str | None" = None,
                 sampling: "str | None" = None, windows: str = "fixed", min_shot: float = 1.0):
        self.model_kwargs, self.labels, self.res = model_kwargs, labels, resources
        self.window_s, self.model_batch, self.timeout_s = window_s, max(1, model_batch), timeout_s
        self.chunk_clips = max(1, min(chunk_clips, self.model_batch))
        # threads per decode: the cores left to decoding shared by the decodes in flight (the in-process
        # decoder would otherwise start one thread per core in every decode)
        self.decode_threads = decode_threads or max(1, int(round(
            max(resources.cpus - resources.actors * resources.actor_cpus, 1) / max(resources.decoders, 1))))
        # resolved by the driver (jobs.tag.tag: --decoder, $BIKE_DECODER, auto) and passed to every decode task
        self.decoder, self.sampling = decoder, sampling
        # --windows shots: clip windows from shots (jobs/tag/decode.py); known_shots: video_id → shots already
        # stored (a second model reuses them instead of detecting again)
        self.windows, self.min_shot, self.known_shots = windows, min_shot, {}
        self.slots = DecodeSlots(pool_sizes(self.decoder, resources.decoders, resources.nvdec))
        #: finished decodes per (pool whose resource the task held, backend that ran): e.g. ("nvdec", "pyav")
        self.decodes: Counter = Counter()
        self.max_queue_clips = 4 * self.model_batch
        self.actors: list = []
        self.facts: "dict | None" = None
        self.frames_scored = 0

    # ---- start ---------------------------------------------------------------------------------------
    def start(self) -> dict:
        """Create the model actors and return the model's facts (``records.model_facts``). Errors loading
        the model (no weights, bad checkpoint, bad labels) are raised as themselves, not as Ray errors."""
        r = self.res
        kw = dict(self.model_kwargs)
        self.actors = [ModelActor.options(num_cpus=r.actor_cpus, num_gpus=r.actor_gpus).remote(
            kw, self.labels, threads=None if r.actor_gpus else r.model_threads) for _ in range(r.actors)]
        # while the model loads, run the decode task once per decoder on no file (it fails at once), so the
        # workers have imported the engine and loaded the task before the first video
        warm = [self._task_options(pool, slot).remote("", 8, None, 224, 256, 1, None, None,
                                                      slot_decoder(pool, slot, self.decoder))
                for pool, n in self.slots.sizes.items() for slot in range(n)]
        try:
            facts = ray.get([a.facts.remote() for a in self.actors])
            for gen in warm:
                ray.get(list(gen))
        except ray.exceptions.RayTaskError as e:
            self.stop()
            raise e.cause from None             # e.g. WeightsUnavailable: the user's message, no traceback
        except BaseException:
            self.stop()
            raise
        self.facts = facts[0]
        return self.facts

    def model_busy_s(self) -> float:
        """Seconds the model actors spent scoring, summed (0 when they cannot be asked)."""
        try:
            return float(sum(ray.get([a.busy.remote() for a in self.actors], timeout=30)))
        except Exception:  # noqa: BLE001 - a diagnostic only
            return 0.0

    def stop(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []

    # ---- run -----------------------------------------------------------------------------------------
    def _task_options(self, pool: str, slot: int):
        if pool == CPU:
            return decode_task.options(num_cpus=self.res.decode_cpus, _generator_backpressure_num_objects=4)
        return decode_task.options(num_cpus=self.res.nvdec_cpus, resources={NVDEC: 1},
                                   _generator_backpressure_num_objects=4)

    def _submit_decode(self, path: str, pool: str, slot: int, video_id: "str | None" = None):
        f = self.facts
        return self._task_options(pool, slot).remote(
            path, f["frames"], self.window_s, f["crop"], f["resize"], self.chunk_clips, self.timeout_s,
            self.decode_threads, slot_decoder(pool, slot, self.decoder), self.sampling, self.windows,
            self.min_shot, self.known_shots.get(video_id))

    def run(self, items):
        """``items``: iterable of ``(video_id, path, error)``; ``error`` set → an error result without
        decoding. Yields one :class:`VideoResult` per item, in completion order. Decodes still running
        when the caller stops (an error, Ctrl-C) are cancelled."""
        if self.facts is None:
            self.start()
        self.slots = DecodeSlots(self.slots.sizes)      # a run stopped early leaves no slot taken
        self._open: dict = {}
        try:
            yield from self._run(items, self._open)
        finally:
            for gen in list(self._open):
                try:
                    ray.cancel(gen, force=True)
                except Exception:  # noqa: BLE001 - best effort: the task may have just finished
                    pass

    def _run(self, items, gens: dict):
        items = iter(items)
        videos: dict = {}                # video_id → _Video
        # gens: ObjectRefGenerator → video_id of the decodes in flight (owned by run(), which cancels them)
        slot_of: dict = {}               # generator → (pool, slot) it holds
        want_frames: dict = {}           # generator → spans of the chunk whose frames come next
        queue: deque = deque()           # (video_id, spans, frames ref, time queued)
        queued = 0                       # clips in the queue
        calls: dict = {}                 # model ObjectRef → (actor index, [(video_id, spans)])
        load = [0] * len(self.actors)
        exhausted = False
        T = self.facts["frames"]

        def finish(v: _Video) -> VideoResult:
            del videos[v.video_id]
            if v.error is None and not all(c.finite for c in v.clips):
                v.error = NONFINITE                  # NaN/inf scores: an error row, never 'ok'
            if v.error is not None:
                r = VideoResult.failed(v.video_id, v.path, v.error, info=v.info)
                r.streamed = v.streamed
                return r
            r = VideoResult.from_info(v.video_id, v.path, v.info)
            r.warnings, r.streamed, r.shots = "; ".join(v.warnings) or None, v.streamed, v.shots
            r.clips = sorted(v.clips, key=lambda c: c.span.index)
            return r

        while True:
            # 1. open new videos while there is room
            while not exhausted and self.slots.busy() < self.slots.total:
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                vid, path, err = item
                if err is not None:
                    yield VideoResult.failed(vid, path, err)
                    continue
                videos[vid] = _Video(vid, path)
                pool, slot = self.slots.take()
                gen = self._submit_decode(path, pool, slot, vid)
                gens[gen], slot_of[gen] = vid, (pool, slot)

            # 2. feed the model full batches (small ones are up to 2x slower per frame on a CPU); a partial
            #    batch only when no more input is coming or its oldest chunk has waited MAX_WAIT_S
            while queue:
                free = [i for i, n in enumerate(load) if n < CALLS_PER_ACTOR]
                if not free:
                    break
                i = min(free, key=lambda j: load[j])
                if not (queued >= self.model_batch or (exhausted and not gens)
                        or time.monotonic() - queue[0][3] > MAX_WAIT_S):
                    break
                batch, n = [], 0
                while queue and (not batch or n + len(queue[0][1]) <= self.model_batch):
                    vid, spans, ref, _ = queue.popleft()
                    batch.append((vid, spans, ref))
                    n += len(spans)
                queued -= n
                ref = self.actors[i].score.remote([b[1] for b in batch], *[b[2] for b in batch])
                calls[ref] = (i, [(b[0], b[1]) for b in batch])
                load[i] += 1

            if exhausted and not gens and not calls and not queue:
                for v in list(videos.values()):      # nothing left in flight: everything has ended
                    yield finish(v)
                return

            # 3. wait for a message, a chunk or a model result
            waitables = list(calls) + (list(gens) if queued < self.max_queue_clips else [])
            if not waitables:
                continue
            ready, _ = ray.wait(waitables, num_returns=1, timeout=0.25 if queue else 5.0)
            for obj in ready:
                if obj in calls:
                    i, parts = calls.pop(obj)
                    load[i] -= 1
                    try:
                        results = ray.get(obj)
                    except ray.exceptions.RayError as e:
                        results = None
                        for vid, _ in parts:
                            if vid in videos and videos[vid].error is None:
                                videos[vid].error = f"model failed on this video: {_short(e)}"
                    for j, (vid, spans) in enumerate(parts):
                        v = videos.get(vid)
                        if v is None:
                            continue
                        v.outstanding -= 1
                        if results is not None:
                            v.clips.extend(results[j])
                            self.frames_scored += len(spans) * T
                        if v.done and v.outstanding == 0:
                            yield finish(v)
                    continue
                gen = obj
                vid = gens[gen]
                v = videos[vid]
                try:
                    ref = next(gen)
                except StopIteration:
                    del gens[gen]
                    self.slots.give(*slot_of.pop(gen))
                    want_frames.pop(gen, None)
                    v.done = True
                    if not v.ended:
                        v.error = v.error or "decoder stopped without finishing the video"
                    if v.outstanding == 0:
                        yield finish(v)
                    continue
                if gen in want_frames:                     # the frames of the chunk announced before
                    spans = want_frames.pop(gen)
                    queue.append((vid, spans, ref, time.monotonic()))
                    queued += len(spans)
                    v.outstanding += 1
                    continue
                try:
                    msg = ray.get(ref)
                except ray.exceptions.RayError as e:     # the decode worker died (crash, OOM kill)
                    msg = {"kind": "end", "error": f"decoder failed: {_short(e)}"}
                kind = msg["kind"]
                if kind == "head":
                    v.info = msg["info"]
                elif kind == "shots":
                    v.shots = msg
                elif kind == "chunk":
                    want_frames[gen] = msg["spans"]
                elif kind == "end":
                    if "held" in msg:                     # the pool the task says it ran in, and its backend
                        self.decodes[(NVDEC_POOL if NVDEC in msg["held"] else CPU, msg.get("decoder"))] += 1
                    v.ended = True
                    v.warnings = msg.get("warnings") or []
                    v.streamed = msg.get("streamed")
                    if msg.get("error"):
                        v.error = v.error or msg["error"]
