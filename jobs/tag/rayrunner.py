"""The Ray runner of ``bike tag``: the stages of jobs/tag/stages.py as Ray tasks and actors, one driver loop.

The same stage objects as the local runner (jobs/tag/runner.py), each run with the Ray options its declared
resources make (``StageResources.ray_options``):

    DecodeTasks ──► decode stages (Ray streaming tasks, jobs/tag/decodetask.py: each pool's registered stage,
                       │            ``DecodeStage`` on CPU slots, ``NvdecDecodeStage`` on NVDEC slots, ...)
                       │ typed messages (small, fetched)  +  frame chunks (ObjectRefs, never fetched here)
                       ▼
                   queue of chunks ──► score stage in model actors (``ScoreStage.setup()`` loads the model in
                                           │ the actor; batched across videos, ≤ 2 calls in flight each)
                                           ▼ ClipResults
                   one VideoResult per video (``runner.Assembly``), yielded when its last chunk is scored

Decodes run in pools of slots side by side, one per registered decode stage (jobs/tag/slots.py);
``--decoder auto`` fills a free slot of the preferred pool (NVDEC) first. The driver imports no torch and loads
no model: the model lives in the actors.

Memory stays flat however large the corpus: at most one video per decode slot is open, each generator pauses
after a couple of unconsumed chunks (``_generator_backpressure_num_objects``), the driver stops pulling
chunks when ``max_queue_clips`` wait for the model, and at most 2 model calls per actor are in flight.
A video whose decoding fails, or whose decode worker or model call dies, comes back as an error result.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import replace

import ray

from .decodetask import decode_task
from .raycluster import Resources
from .runner import Assembly, model_spec
from .slots import DecodeSlots, held_pool, pool_sizes, slot_decoder
from .stages import ScoreStage, decode_stages
from .tasks import Chunk, DecodeSpec, DecodeTask, End, ScoreBatch

#: Model calls queued per actor (one running, one waiting, so the actor never idles between calls).
CALLS_PER_ACTOR = 2
#: Longest a decoded chunk waits for a full model batch before a partial batch is sent.
MAX_WAIT_S = 2.0
#: Unconsumed messages a decode task may run ahead of the driver.
DECODE_BACKPRESSURE = 4


class StageActor:
    """A stage in a Ray actor: ``setup()`` where the actor runs (the model loads there), then ``process``."""

    def __init__(self, stage):
        self.stage = stage
        stage.setup()

    def facts(self) -> dict:
        return self.stage.facts()

    def process(self, batch: ScoreBatch, *chunks):
        """``chunks``: the frames of ``batch``, passed beside it so that Ray hands them over without a copy
        through the driver."""
        if chunks:
            batch = ScoreBatch(batch.spans, chunks)
        return self.stage.process(batch)

    def busy(self) -> float:
        return self.stage.busy()


RemoteStageActor = ray.remote(max_restarts=1, max_task_retries=1)(StageActor)


def stage_options(stage, **extra) -> dict:
    """The Ray options of a stage: its declared resources, and ``extra`` (e.g. backpressure)."""
    return {**stage.resources.ray_options(), **extra}


def _short(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"


class RayRunner:
    """Decode + score videos on Ray. ``start()`` sets the score stage up in its actors, ``run(items)`` streams
    results. ``score``: the :class:`ScoreStage` (one actor each per ``resources.actors``); ``spec``: how videos
    are decoded (the model's frames and crop are filled in once it is loaded)."""
    name = "ray"

    def __init__(self, score: ScoreStage, spec: DecodeSpec, resources: Resources, model_batch: int = 32):
        self.score, self.res = score, resources
        self.model_batch = max(1, model_batch)
        # threads per decode: the cores left to decoding shared by the decodes in flight (the in-process
        # decoder would otherwise start one thread per core in every decode)
        threads = spec.threads or max(1, int(round(
            max(resources.cpus - resources.actors * resources.actor_cpus, 1) / max(resources.decoders, 1))))
        self.spec = replace(spec, threads=threads)
        self.decoder = spec.decoder
        # --windows shots: video_id → shots already stored (a second model reuses them instead of detecting again)
        self.known_shots: dict = {}
        self.slots = DecodeSlots(pool_sizes(self.decoder, resources.slots()))
        self.stages: dict = {}                   # pool → its decode stage (once the model's facts are known)
        #: finished decodes per (pool whose resource the task held, backend that ran): e.g. ("nvdec", "pyav")
        self.decodes: Counter = Counter()
        self.max_queue_clips = 4 * self.model_batch
        self.actors: list = []
        self.facts = None                        # jobs.tag.records.ModelFacts, once started
        self.frames_scored = 0

    # ---- start ---------------------------------------------------------------------------------------
    def start(self):
        """Create the model actors and return the model's facts (``records.model_facts``). Errors loading
        the model (no weights, bad checkpoint, bad labels) are raised as themselves, not as Ray errors."""
        self.actors = [RemoteStageActor.options(**stage_options(self.score)).remote(self.score)
                       for _ in range(self.res.actors)]
        # while the model loads, run each decode stage once per slot on no file (it fails at once), so the
        # workers have imported the engine and unpickled the stage before the first video
        warm_stages = decode_stages(replace(self.spec, frames=8, size=224, resize=256, chunk_clips=1),
                                    self.res.pool_cpus())
        warm = [self._submit(warm_stages[pool], DecodeTask("", "", slot_decoder(pool, slot, self.decoder)))
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
        self.stages = decode_stages(model_spec(self.spec, self.facts, self.model_batch),
                                    self.res.pool_cpus())
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
    @staticmethod
    def _submit(stage, task: DecodeTask):
        return decode_task.options(**stage_options(
            stage, _generator_backpressure_num_objects=DECODE_BACKPRESSURE)).remote(stage, task)

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
        from .records import VideoResult
        items = iter(items)
        videos: dict = {}                # video_id → Assembly
        # gens: ObjectRefGenerator → video_id of the decodes in flight (owned by run(), which cancels them)
        slot_of: dict = {}               # generator → (pool, slot) it holds
        want_frames: dict = {}           # generator → spans of the chunk whose frames come next
        queue: deque = deque()           # (video_id, spans, frames ref, time queued)
        queued = 0                       # clips in the queue
        calls: dict = {}                 # model ObjectRef → (actor index, [(video_id, spans)])
        load = [0] * len(self.actors)
        exhausted = False
        T = self.facts.frames

        def finish(v: Assembly):
            del videos[v.video_id]
            return v.result()

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
                videos[vid] = Assembly(vid, path)
                pool, slot = self.slots.take()
                gen = self._submit(self.stages[pool], DecodeTask(vid, path, slot_decoder(pool, slot, self.decoder),
                                                                 self.known_shots.get(vid)))
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
                ref = self.actors[i].process.remote(ScoreBatch([b[1] for b in batch]), *[b[2] for b in batch])
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
                    msg = End(error=f"decoder failed: {_short(e)}")
                if isinstance(msg, Chunk):
                    want_frames[gen] = msg.spans
                    continue
                if isinstance(msg, End) and msg.held:      # the pool the task says it ran in, and its backend
                    self.decodes[(held_pool(msg.held), msg.decoder)] += 1
                v.on(msg)
