"""The stages of ``bike tag`` and ``bike relabel``: decode, score, write. Each declares the resources it needs.

A stage is a plain object with

    resources    a :class:`StageResources` (CPUs, GPUs, custom Ray resources, memory): what one running copy asks for
    setup()      run where the stage runs, once, before the first ``process`` (the model loads here: in the
                 Ray actor on Ray, in this process with the local runner)
    process(x)   one typed task (jobs/tag/tasks.py) → its output

Both runners (jobs/tag/runner.py: in this process; jobs/tag/rayrunner.py: Ray tasks and actors whose options are
``stage.resources.ray_options()``) run the same stage objects, so a local run and a Ray run give the same rows.

    DecodeStage          one video → Head, [Shots], (Chunk, frames)*, End        (CPU slots)
    NvdecDecodeStage     the same on an NVDEC engine: declares ``{"NVDEC": 1}``    (NVDEC slots)
    ScoreStage           ScoreBatch → [[ClipResult] per chunk]; setup() loads the model (jobs/tag/scoring.py)
    StoredScoreStage     [StoredVideo] → [VideoResult] (``bike relabel``: stored frame features, no decode)
    WriteStage           VideoResult → committed store batches (the single writer, on the driver)

A decode stage class is also the declaration of its pool of decode slots (jobs/tag/slots.py,
jobs/tag/raycluster.py read :data:`DECODE_STAGES`, never a pool's name): its ``pool`` name, the custom Ray
resource whose units are its slots (``resources.custom``; none: the CPU slots), its ``preference`` for
``--decoder auto``, the ``backend`` name of ``--decoder`` that uses only this pool, the decoder name a slot
runs (``slot_decoder``) and what a local Ray declares of it (``local_units``). A decoder on other hardware is one
such class, anywhere, passed to :func:`register_decode_stage` (tests/test_decode_pools.py does it in a test).

This module imports no torch and no Ray (a decode worker unpickles its stage from here).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

from engine.video.base import AUTO_CPU

from jobs.errors import UsageError

from .decode import decode_video
from .records import VideoResult, tables
from .tasks import DecodeSpec, DecodeTask, End, ScoreBatch, StoredVideo, typed

#: Memory a decode asks for (MiB): a decode worker holds ~150 MB after a video (tests/test_decodetask.py bounds
#: it at 300), plus the frame chunks it has not handed on yet.
DECODE_MEMORY_MB = 300


@dataclass(frozen=True)
class StageResources:
    """What one running copy of a stage needs. ``memory_mb`` None: not declared (not scheduled on)."""
    cpus: float = 1.0
    gpus: float = 0.0
    custom: "tuple[tuple[str, float], ...]" = ()    # custom Ray resources, e.g. (("NVDEC", 1),)
    memory_mb: "int | None" = None

    def ray_options(self) -> dict:
        """The Ray ``.options(...)`` these resources make."""
        opts: dict = {"num_cpus": self.cpus}
        if self.gpus:
            opts["num_gpus"] = self.gpus
        if self.custom:
            opts["resources"] = dict(self.custom)
        if self.memory_mb:
            opts["memory"] = int(self.memory_mb) * 2**20
        return opts


class Stage:
    """Base of the stages: declared ``resources``, ``setup()`` where it runs, ``process(task)``."""
    name = "stage"
    resources = StageResources()

    def setup(self) -> None:
        """Load what ``process`` needs; run once, in the process that runs the stage."""

    def process(self, task):
        raise NotImplementedError


# ---- decode -----------------------------------------------------------------------------------------------------
class DecodeStage(Stage):
    """Decode one video (``jobs.tag.decode.decode_video``; an ``s3://``/``https://`` object through
    ``engine.sources.remote.decode_remote``, fetched where the stage runs). ``process`` yields the typed
    messages of jobs/tag/tasks.py, each Chunk followed by its frames array. Runs in a CPU decode slot.

    The class attributes and classmethods declare its pool of slots (see the module docstring); a subclass
    for other hardware overrides them and declares one unit of its custom Ray resource in ``resources``."""
    name = "decode"
    #: The pool's name: the key of its slots, the summary's "N on <pool> slots", "decoders: ... + N <pool>".
    pool = "cpu"
    #: The ``--decoder`` name that uses only this pool (None: the CPU pool, which every CPU backend uses).
    backend: "str | None" = None
    #: ``--decoder auto`` takes a free slot of the pool with the highest preference first.
    preference = 0
    resources = StageResources(cpus=1.0, memory_mb=DECODE_MEMORY_MB)

    def __init__(self, spec: DecodeSpec, cpus: "float | None" = None):
        self.spec = spec
        if cpus is not None:                 # the cluster's share per decode (jobs.tag.raycluster.cluster_resources)
            self.resources = replace(type(self).resources, cpus=cpus)

    @classmethod
    def slot_resource(cls) -> "str | None":
        """The custom Ray resource whose units are this pool's slots (one per unit the cluster has,
        ``ray.cluster_resources()[name]``); None: CPU slots, as many as the CPU budget gives."""
        return cls.resources.custom[0][0] if cls.resources.custom else None

    @classmethod
    def slot_decoder(cls, slot: int, decoder: "str | None") -> str:
        """The decoder name a decode in slot ``slot`` runs under ``--decoder decoder`` (None: auto);
        engine.video.get_decoder resolves it on the worker. The CPU pool: the named CPU backend, else
        ``auto`` among the CPU backends."""
        return decoder if decoder not in (None, "auto") and decoder not in _pool_backends() else AUTO_CPU

    @classmethod
    def local_units(cls) -> int:
        """Units of ``slot_resource()`` the local Ray that bike starts declares on this host (0: none)."""
        return 0

    @classmethod
    def missing(cls) -> str:
        """The usage error of ``--decoder <backend>`` on a cluster without the pool's resource."""
        r = cls.slot_resource()
        return (f"--decoder {cls.backend}: the Ray cluster has no {r} resource (a cluster node declares it "
                f"with `ray start --resources='{{\"{r}\": N}}'`); use --decoder auto or pyav")

    def process(self, task: DecodeTask):
        from engine.sources import remote
        kwargs = self.spec.kwargs(task.decoder, task.shots)
        if remote.is_remote(task.path):      # object storage: fetched here, on the decoding node
            stream = remote.decode_remote(task.path, decode_video, **kwargs)
        else:
            stream = decode_video(task.path, **kwargs)
        for msg in stream:
            yield typed(msg) if type(msg) is dict else msg


#: The decode stage of each slot pool, by pool name (jobs/tag/slots.py, jobs/tag/raycluster.py read it).
DECODE_STAGES: "dict[str, type[DecodeStage]]" = {}


def register_decode_stage(cls: "type[DecodeStage]") -> "type[DecodeStage]":
    """Add ``cls``'s pool of decode slots (usable as a class decorator). Register it in the driver's process
    before the runner is made; the decode workers only unpickle the stage (its module must import there)."""
    DECODE_STAGES[cls.pool] = cls
    return cls


def _pool_backends() -> set:
    """The ``--decoder`` names that belong to a pool with its own resource (not CPU backends)."""
    return {c.backend for c in DECODE_STAGES.values() if c.slot_resource() and c.backend}


@register_decode_stage
class NvdecDecodeStage(DecodeStage):
    """A decode on an NVDEC engine: one ``NVDEC`` resource and a little CPU (demux, colour conversion, resize);
    slot N's decoder is ``nvdec:N`` (GPU N mod the node's GPUs)."""
    pool = backend = "nvdec"
    preference = 10                          # --decoder auto fills an NVDEC slot first
    resources = StageResources(cpus=0.25, custom=(("NVDEC", 1),), memory_mb=DECODE_MEMORY_MB)

    @classmethod
    def slot_decoder(cls, slot: int, decoder: "str | None") -> str:
        return f"nvdec:{slot}"

    @classmethod
    def local_units(cls) -> int:
        return local_nvdec_engines()

    @classmethod
    def missing(cls) -> str:
        return ("--decoder nvdec: the Ray cluster has no NVDEC resource (no GPU whose NVDEC engines the nvdec "
                "backend can use was found; a cluster node declares its engines with "
                "`ray start --resources='{\"NVDEC\": 7}'`; docs/decoding.md); use --decoder auto or pyav")


register_decode_stage(DecodeStage)


def local_nvdec_engines() -> int:
    """NVDEC units the local Ray declares: 0 unless the nvdec backend can run here, else this host's engines
    (the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible). A bad ``$BIKE_NVDEC_ENGINES`` is a usage error."""
    from engine.video.base import available
    from engine.video import nvdec_engines
    if available().get("nvdec") is not None:
        return 0
    names = nvdec_engines.gpu_names()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        names = [names[int(i)] for i in ids if i.isdigit() and int(i) < len(names)] if all(
            i.isdigit() for i in ids) else names[:len(ids)]
    try:
        return nvdec_engines.count(names)
    except ValueError as e:
        raise UsageError(str(e)) from None


def decode_stages(spec: DecodeSpec, cpus: "dict | None" = None) -> dict:
    """pool → its decode stage for ``spec``, every registered pool (``cpus``: pool → the CPU request per
    decode as the cluster shares it, ``Resources.pool_cpus()``; a pool not in it: as declared)."""
    cpus = cpus or {}
    return {pool: cls(spec, cpus.get(pool)) for pool, cls in DECODE_STAGES.items()}


# ---- score ------------------------------------------------------------------------------------------------------
class ScoreStage(Stage):
    """Score frame chunks of any videos with the BIKE model (``jobs.tag.scoring.Scorer``). ``setup`` loads the
    model where the stage runs; a loading error (no weights, bad checkpoint) is raised by :meth:`facts`."""
    name = "score"

    def __init__(self, model_kwargs: dict, labels, cpus: float = 1.0, gpus: float = 0.0,
                 threads: "int | None" = None):
        self.model_kwargs, self.labels, self.threads = dict(model_kwargs), labels, threads
        self.resources = StageResources(cpus=cpus, gpus=gpus)
        self.scorer = None

    def __getstate__(self):                  # a stage travels to its actor without a loaded model
        return {**self.__dict__, "scorer": None}

    def setup(self) -> None:
        from .scoring import Scorer          # imports torch: only where the model runs
        self.scorer = Scorer(self.model_kwargs, self.labels, threads=None if self.resources.gpus else self.threads)

    def facts(self):
        """The model's ``jobs.tag.records.ModelFacts``; raises the error that loading it met."""
        return self.scorer.facts()

    def process(self, batch: ScoreBatch) -> list:
        return self.scorer.score(batch.spans, *batch.chunks)

    def busy(self) -> float:
        """Seconds spent scoring."""
        return self.scorer.busy() if self.scorer is not None else 0.0


class StoredScoreStage(Stage):
    """``bike relabel``'s score stage: stored frame features (after the temporal header) and attribute phrases
    of a batch of videos → their VideoResults under new labels (``jobs.tag.relabel.score_stored``). ``model``
    is loaded by the relabel driver (it chooses the source from the model's fingerprint first)."""
    name = "score-stored"

    def __init__(self, model, labels, clips_per_call: int = 256):
        self.model, self.labels, self.clips_per_call = model, labels, clips_per_call
        self.resources = StageResources(cpus=1.0)
        self.busy_s = 0.0
        self.clips = 0

    def setup(self) -> None:
        self.model.label_features(self.labels)       # encode the new prompts once, before timing

    def process(self, batch: "list[StoredVideo]") -> "list[VideoResult]":
        from .relabel import score_stored
        feats = [f for it in batch for f in it.features]
        atts = [a for it in batch for a in it.attributes]
        spans = [s for it in batch for s in it.spans]
        t = time.perf_counter()
        results: list = []
        n = self.clips_per_call
        for i in range(0, len(spans), n):
            results += score_stored(self.model, self.labels, feats[i:i + n], atts[i:i + n], spans[i:i + n])
        self.busy_s += time.perf_counter() - t
        self.clips += len(spans)
        out, j = [], 0
        for it in batch:
            v = _stored_result(it.video)
            v.clips = results[j:j + len(it.spans)]
            j += len(it.spans)
            out.append(v)
        return out

    def busy(self) -> float:
        return self.busy_s


def _stored_result(row: dict) -> VideoResult:
    keep = ("video_id", "path", "status", "error", "size", "duration_s", "fps", "width", "height", "codec")
    return VideoResult(**{k: row[k] for k in keep})


# ---- write ------------------------------------------------------------------------------------------------------
class WriteStage(Stage):
    """The commit, on the driver (the store's single writer): finished videos are buffered and every ``batch``
    videos (or ``flush_s`` seconds) become one all-or-nothing ``Store.write_batch`` (shards first, the commit
    record last, under the writer lease on S3). A kill loses at most the unwritten batch; a rerun redoes exactly
    those videos. ``models_row``: the ``models`` row to write with the first batch (None: already stored);
    ``redo``: ids whose stored rows are replaced; ``stale``: id → the path id of its old "cannot read" row."""
    name = "write"
    resources = StageResources(cpus=0.0)

    def __init__(self, store, model_id: str, models_row: "dict | None" = None, batch: int = 16,
                 flush_s: float = float("inf"), redo: "set | None" = None, stale: "dict | None" = None,
                 replace_all: bool = False):
        self.store, self.model_id, self.models_row = store, model_id, models_row
        self.batch, self.flush_s = max(1, batch), flush_s
        self.redo, self.stale, self.replace_all = redo if redo is not None else set(), stale or {}, replace_all
        self.buffer: list = []
        self.batches = 0                     # store batches committed
        self.committed = 0                   # videos committed
        self._last = time.monotonic()

    def process(self, results: "list[VideoResult]") -> int:
        """Buffer ``results``; commit when the batch is full or ``flush_s`` has passed. → videos committed now."""
        self.buffer.extend(results)
        if len(self.buffer) >= self.batch or time.monotonic() - self._last >= self.flush_s:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Commit the buffered videos (one store batch); → how many."""
        if not self.buffer:
            return 0
        rows = tables(self.model_id, self.buffer)
        if self.models_row is not None:
            rows = {"models": self.models_row, **rows}
        statuses = {v.video_id: v.status for v in self.buffer}
        self.store.write_batch(rows, self.model_id, statuses,
                               replace=self.replace_all or bool(self.redo & set(statuses)),
                               drop=[self.stale[v] for v in statuses if v in self.stale])
        self.models_row = None
        self.batches += 1
        self.committed += len(statuses)
        self.buffer.clear()
        self._last = time.monotonic()
        return len(statuses)


def end_held(end: End, held: dict) -> End:
    """``end`` with the Ray resources its decode task held (the pool it ran in): ((name, amount), ...)."""
    return replace(end, held=tuple(sorted((str(k), float(v)) for k, v in held.items())))
