"""``bike tag``: tag every video of a corpus into a store, exactly once per model, on Ray.

Steps (docs/tagging.md "Tag"):

1. read the label set and open the store (``Store.recover()`` cleans up after a killed run);
2. list the sources (``jobs.tag.sources``), choose the runner (``jobs.tag.runner.choose_runner``: in this process
   for a few local files, else Ray), start or join Ray (``jobs.tag.raycluster``), load the model actors;
   the model id is derived from the model fingerprint + label set + window + frame sampling
   (``index.store.ids.model_id``);
3. give each file its content id (``index.store.ids.identify``, hashed on the driver by a few threads; an
   unchanged file's id is remembered in the store, ``index.store.idcache``) and skip what the store already holds
   for this model id (unless ``force``); copies of one file are tagged once;
4. decode and score: the stages of ``jobs.tag.stages`` (decode, score) on Ray (``jobs.tag.rayrunner``) or in this
   process (``jobs.tag.runner``), the same stage objects either way; results become rows (``jobs.tag.records``);
5. the driver is the single writer (``jobs.tag.stages.WriteStage``, shared with ``bike relabel``): every ``batch``
   finished videos (or every ``flush_s`` seconds) become one all-or-nothing ``Store.write_batch`` — a SIGKILL
   at any moment loses at most the unwritten batch,
   and the rerun redoes exactly those videos;
6. update the vector index (``index.search.vectors.update_index``) unless ``index=False``.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from engine.model.config import DEFAULTS
from engine.model.labels import load_labels
from engine.sources.remote import PENDING, is_remote
from index.store import ids
from index.store.idcache import IdCache
from index.store import Store

from jobs.tag import raycluster
from jobs.errors import UsageError
from jobs.progress import Progress
from .records import model_row
from .runner import commit
from .stages import WriteStage
from .shotwindows import check_windows, plan_key, stored_shots
from .sources import list_sources


@dataclass
class TagOptions:
    sources: list
    store: str
    labels: str = DEFAULTS.labels
    model_kwargs: dict = field(default_factory=dict)       # engine.load_model arguments
    window_s: "float | None" = DEFAULTS.window_s           # None: each video is one clip
    windows: str = "fixed"                                 # fixed | shots (jobs/tag/shotwindows.py)
    min_shot: float = 1.0                                  # --windows shots: shorter shots join a neighbour
    address: "str | None" = None
    endpoint: "str | None" = None                          # S3-compatible endpoint (None: $AWS_ENDPOINT_URL / AWS)
    runner: str = "auto"                                   # local | ray | auto (jobs/tag/runner.py: choose_runner)
    batch: int = 16                                        # videos per committed store batch
    model_batch: int = 32                                  # clips per model call
    force: bool = False
    retry_errors: bool = False
    rehash: bool = False                                   # ignore remembered content ids (index.store.idcache)
    index: bool = True
    timeout_s: "float | None" = None                       # per-video decode limit (None: engine default)
    decoders: "int | None" = None
    decoder: "str | None" = None                           # engine.video backend (None: --decoder's context,
    #                                                        $BIKE_DECODER, auto); resolved once by run_tag and
    sampling: "str | None" = None                          # exact | keyframes; passed to every decode task
    flush_s: float = 60.0
    progress: "bool | None" = None                         # None: a bar on a terminal, log lines otherwise
    compact_at: int = 256                                  # compact past this many store batches (0: never)
    text: "object | None" = None                           # jobs.tag.textstage.TextOptions (None: subtitles only)


@dataclass
class TagSummary:
    store: str
    model_id: str = ""
    model: str = ""
    random_init: bool = False
    listed: int = 0
    ok: int = 0
    error: int = 0
    skipped_done: int = 0
    skipped_sources: Counter = field(default_factory=Counter)
    duplicates: int = 0
    ids_remembered: int = 0                               # content ids taken from the store's id cache
    ids_hashed: int = 0                                   # files read and hashed
    objects_read: int = 0                                 # objects fetched by decode tasks (engine/sources/remote.py)
    objects_bytes: int = 0                                # ... their sizes, summed
    fetched_bytes: int = 0                                # ... bytes fetched for them (ranged GETs)
    fetched_gets: int = 0                                 # ... GET requests
    frames: int = 0
    seconds: float = 0.0                                  # the whole job
    run_s: float = 0.0                                    # decoding + scoring + writing, after start-up
    batches: int = 0
    model_busy: float = 0.0                               # share of run_s the model actors were scoring
    errors: list = field(default_factory=list)            # [(path, reason)]
    index: str = ""
    index_failed: bool = False
    compacted: str = ""                                   # what the automatic compaction did (index/store/compact.py)
    decodes: str = ""                                     # videos decoded per slot pool and backend
    text: list = field(default_factory=list)              # text channels (jobs/tag/textstage.py): one line each
    runner: str = ""                                      # which runner decoded and scored (jobs/tag/runner.py)

    @property
    def skipped(self) -> int:
        """Listed files not tagged in this run: already stored, or a copy of another listed file (so that
        ok + error + skipped = listed when the run completes)."""
        return self.skipped_done + self.duplicates

    def lines(self) -> "list[str]":
        rate = f"{(self.ok + self.error) / self.run_s:.2f} videos/s, {self.frames / self.run_s:.1f} frames/s " \
            f"over {self.run_s:.1f} s after start-up" if self.run_s > 0 else "nothing to do"
        skipped = dict(self.skipped_sources)
        why = (f"{self.skipped_done} already in the store, {self.duplicates} same content as another listed file"
               if self.duplicates else "already in the store")
        out = [f"bike tag: {self.ok} ok, {self.error} error, {self.skipped} skipped ({why}) "
               f"of {self.listed} listed; {self.frames} frames in {self.seconds:.1f} s ({rate})",
               f"bike tag: content ids: {self.ids_hashed} files hashed, {self.ids_remembered} unchanged files "
               "known from earlier runs (--rehash hashes every file)",
               f"bike tag: model_id {self.model_id}: {self.model}"
               + ("  [RANDOM WEIGHTS: labels are meaningless]" if self.random_init else ""),
               f"bike tag: store {self.store} ({self.batches} batches written)"
               + (f"; the model was busy {self.model_busy:.0%} of the time"
                  + (" (decoding sets the pace)" if self.model_busy < 0.7 else "") if self.run_s > 0 else "")]
        if self.objects_read:
            out.append(f"bike tag: objects read by the decode tasks: {self.objects_read} ({_mb(self.objects_bytes)}); "
                       f"{_mb(self.fetched_bytes)} fetched in {self.fetched_gets} GET requests "
                       f"({self.fetched_bytes / max(self.objects_bytes, 1):.2f}x their size)")
        if skipped:
            out.append("bike tag: not tagged: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())))
        for path, reason in self.errors[:10]:
            out.append(f"bike tag: error: {path}: {reason}")
        if len(self.errors) > 10:
            out.append(f"bike tag: ... {len(self.errors) - 10} more errors: bike sql --store {self.store} "
                       "\"SELECT path, error FROM videos WHERE status = 'error'\"")
        if self.runner:
            out.append(f"bike tag: runner: {self.runner}")
        if self.decodes:
            out.append(f"bike tag: decodes: {self.decodes}")
        if self.compacted:
            out.append(f"bike tag: {self.compacted}")
        if self.index:
            out.append(f"bike tag: {self.index}")
        out.extend(self.text)
        return out


def _identified(paths, identify=ids.identify, workers: int = 4, ahead: int = 64):
    """Yield ``(path, video_id, read_error)`` in order, identifying up to ``ahead`` files in parallel."""
    with ThreadPoolExecutor(workers) as pool:
        it = iter(paths)
        pending = deque((p, pool.submit(identify, p)) for p in itertools.islice(it, ahead))
        while pending:
            path, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(identify, nxt)))
            yield (path, *fut.result())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _path_id(path: str) -> str:
    """The id of a video's "cannot read" row: of its absolute path, or of its URL (engine/sources/remote.py)."""
    return ids.path_id(path if is_remote(path) else os.path.abspath(path))


def _decoder_name(name) -> str:
    """Which backend the decodes use (``auto`` resolved on this host)."""
    from engine.video import get_decoder
    try:
        return get_decoder(name).name
    except (ValueError, RuntimeError) as e:
        return f"? ({e})"


def _slots_line(pipeline) -> str:
    """Decodes at once per pool, e.g. "4 cpu (pyav) + 7 nvdec" (the CPU backend as resolved on the driver; the
    summary's "decodes:" line says which backend each decode ran)."""
    from .slots import cpu_pool, slot_decoder
    sizes, cpu = pipeline.slots.sizes, cpu_pool()
    parts = [f"{sizes[cpu]} {cpu} ({_decoder_name(slot_decoder(cpu, 0, pipeline.decoder))})"] if sizes.get(cpu) else []
    return " + ".join(parts + [f"{n} {p}" for p, n in sizes.items() if p != cpu and n]) or "none"


def _decodes_line(decodes) -> str:
    """Videos decoded per pool and backend that ran, e.g. "12 on cpu slots (pyav), 30 on nvdec slots (nvdec)"."""
    return ", ".join(f"{n} on {pool} slots ({backend})" for (pool, backend), n in sorted(decodes.items()))


def _model_words(kw: dict) -> str:
    """The model the options name, in a few words, before it is loaded (its own describe() comes after)."""
    from .precheck import _weights_choice
    kind, value = _weights_choice(kw)
    name = kw.get("name") or (DEFAULTS.model if kind != "checkpoint" else "")
    what = {"checkpoint": f"checkpoint {value}", "file": f"weights {value}", "tag": f"--pretrained {value}",
            "random": "RANDOM WEIGHTS"}[kind]
    return f"{name}, {what}" if name else what


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``bike tag``, after the finished videos were committed: the message says how many and
    what to do (jobs/cli/entry.py prints it)."""


def update_vector_index(store: Store, model_id: str) -> "tuple[str, bool]":
    """Call the search side's ``index.search.vectors.update_index`` when it exists → (message, failed)."""
    try:
        from index.search.vectors import update_index
    except ImportError as e:
        return (f"vector index not built: index.search.vectors.update_index is not available in this install ({e})",
                False)
    try:
        report = update_index(store, model_id)
    except Exception as e:  # noqa: BLE001 - the tags are stored; say what failed and how to redo it
        return (f"vector index NOT updated: {type(e).__name__}: {e}; the tags are stored, rerun "
                f"`bike index --store {store.root}`", True)
    line = getattr(report, "line", None)
    return (f"vector {line()}" if callable(line) else f"vector index updated for model_id {model_id}"), False


def frame_sampling(sampling: "str | None") -> str:
    """The frame sampling a run uses: the option, else ``$BIKE_SAMPLING``, else ``exact`` (as
    ``engine.video.iter_clips`` resolves it); resolved once on the driver, so the model_id says what every
    decode task (each given this value) sampled."""
    from engine.video.base import default_sampling
    from engine.video.plan import SAMPLINGS
    chosen = sampling or default_sampling()
    if chosen not in SAMPLINGS:
        raise UsageError(f"--sampling {chosen}: choose one of {', '.join(SAMPLINGS)}")
    return chosen


def run_tag(opts: TagOptions, log=None) -> TagSummary:
    """Run a tagging job; see the module doc. Raises user errors (exit 2) before any work starts.
    ``opts.endpoint`` points ``s3://`` at its server for the job's duration only (restored after)."""
    from engine.sources.remote import using_endpoint
    with using_endpoint(opts.endpoint):
        return _run_tag(opts, log)


def _run_tag(opts: TagOptions, log=None) -> TagSummary:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.monotonic()
    labels = load_labels(opts.labels)
    if opts.batch < 1 or opts.model_batch < 1:
        raise UsageError("--batch and --model-batch must be at least 1")
    if opts.window_s is not None and opts.window_s <= 0:
        raise UsageError(f"--window {opts.window_s}: give a window length > 0 seconds (or 0 for whole videos)")
    from engine.video.base import default_decoder
    # the decoding choice, resolved once here: a typed field every decode task is given (a worker of a joined
    # cluster sees neither this process's environment nor its --decoder)
    opts = replace(opts, sampling=frame_sampling(opts.sampling), decoder=opts.decoder or default_decoder())
    sources = list_sources(opts.sources)
    if not sources.videos:                               # before the store: nothing to write, nothing created
        raise UsageError(f"no video files in {' '.join(map(str, opts.sources))} (skipped: "
                         f"{sources.describe_skipped()}); give video files, folders, globs or a list file")
    check_windows(opts)
    from .precheck import check_weights
    created = not is_remote(opts.store) and not os.path.exists(os.path.expanduser(str(opts.store)))
    if created and not opts.address:
        check_weights(opts.model_kwargs)                 # no store is created for weights that cannot be had
    try:
        store = Store(opts.store, create=True)
        with store.lock():
            summary = _run_locked(opts, store, sources, labels, log, t0)
            _run_text(opts, store, summary, log)
            return summary
    except BaseException:
        if created:                                      # a failed first run leaves no empty store behind
            _remove_if_unwritten(os.path.expanduser(str(opts.store)))
        raise


def _remove_if_unwritten(root: str) -> None:
    """Remove the store directory a failed run created when it holds nothing but empty folders and its lock
    file (checked under the writer lock, so a job that has just started writing there keeps it)."""
    import shutil
    from pathlib import Path

    from index.store import StoreError, WriterLock
    path = Path(root)
    if not path.is_dir():
        return
    try:
        with WriterLock(path / ".writer.lock"):
            if any(f.name != ".writer.lock" or not f.is_file() for f in path.rglob("*") if not f.is_dir()):
                return
            shutil.rmtree(path, ignore_errors=True)
    except (StoreError, OSError):
        pass


def _run_text(opts: TagOptions, store: Store, summary: TagSummary, log) -> None:
    """The text channels (jobs/tag/textstage.py) over the listed videos (objects too, once BIKE knows their
    content ids), after BIKE; then the text index."""
    from .textstage import TextOptions, local_videos, run_text_stage
    text = opts.text if opts.text is not None else TextOptions(force=opts.force, retry_errors=opts.retry_errors)
    if not text.channels:
        return
    t0 = time.monotonic()
    sources = list_sources(opts.sources)
    videos = local_videos(store, sources.videos, rehash=False, objects=sources.objects)
    channels = run_text_stage(store, videos, text, log)
    summary.text = [line for c in channels for line in c.lines()]
    wrote = any(c.done or c.error for c in channels)
    if opts.compact_at and wrote:        # text batches count too (a text-only run writes no BIKE batch)
        from index.store.compact import compact, needs_compaction
        if needs_compaction(store, opts.compact_at):
            line = compact(store, locked=True).line()
            summary.compacted = f"{summary.compacted}; {line}" if summary.compacted else line
    if opts.index and wrote:
        from index.search.textindex import update_text_index
        try:
            summary.text.append("bike tag: " + update_text_index(store).line())
        except Exception as e:  # noqa: BLE001 - the transcripts are stored; say how to redo the index
            summary.text.append(f"bike tag: text index NOT updated: {type(e).__name__}: {e}; rerun "
                                f"`bike index --store {store.root}`")
    summary.seconds += time.monotonic() - t0


def _nothing_to_do(opts: TagOptions, store: Store, labels, sources, summary: TagSummary) -> bool:
    """True (and ``summary`` filled) when every listed video is already stored for this model: answered
    from the store alone, without Ray or the model (jobs/tag/precheck.py)."""
    from .precheck import describe_row, known_model_id
    if opts.force:
        return False
    known = known_model_id(store, opts.model_kwargs, labels, opts.window_s or 0.0, sampling=opts.sampling,
                           windows=plan_key(opts))
    if known is None:
        return False
    model_id, row = known
    done = store.done_videos(model_id)
    id_cache = IdCache(store, trust=not opts.rehash)
    seen: set = set()
    duplicates = 0
    for path, vid, _err in _identified(sources.videos, id_cache.identify):
        status = done.get(vid)
        if vid not in seen and (status is None or (opts.retry_errors and status == "error")):
            return False                # work to do: the normal path counts every file (nothing counted here)
        duplicates += vid in seen
        seen.add(vid)
    summary.skipped_done, summary.duplicates = len(seen), duplicates
    summary.ids_remembered, summary.ids_hashed = id_cache.hits, id_cache.hashed
    try:
        id_cache.save()
    except Exception:  # noqa: BLE001 - a speed-up only (disk, object storage)
        pass
    summary.model_id, summary.model, summary.random_init = model_id, describe_row(row), bool(row["random_init"])
    return True


def decode_spec(opts: TagOptions) -> "DecodeSpec":
    """The job's decoding options as the typed spec every decode stage carries (the model's frames and crop are
    filled in by the runner once the model is loaded)."""
    from .decode import CHUNK_CLIPS
    from engine.settings import Settings
    from .tasks import DecodeSpec
    return DecodeSpec(window_s=opts.window_s, chunk_clips=max(1, min(CHUNK_CLIPS, opts.model_batch)),
                      timeout_s=opts.timeout_s, decoder=opts.decoder, sampling=opts.sampling, windows=opts.windows,
                      min_shot=opts.min_shot, nice=Settings.from_env().decode_nice)


def _make_runner(runner: str, opts: TagOptions, labels, log, summary: TagSummary):
    """The runner (jobs/tag/runner.py, jobs/tag/rayrunner.py) over a score stage and the decode spec →
    (runner, the line that says where it runs)."""
    from .stages import ScoreStage
    spec = decode_spec(opts)
    if runner == "ray":
        res = raycluster.cluster_resources(opts.decoders)
        from .rayrunner import RayRunner                  # imports ray; keep `bike --help` fast
        log(f"bike tag: loading the model ({_model_words(opts.model_kwargs)}) in {res.actors} Ray actor(s)...")
        score = ScoreStage(opts.model_kwargs, labels, cpus=res.actor_cpus, gpus=res.actor_gpus,
                           threads=res.model_threads)
        pipeline = RayRunner(score, spec, res, model_batch=opts.model_batch)
        return pipeline, (f"Ray: {res.cpus:g} CPUs, {res.gpus:g} GPUs, {res.actors} model actor(s); "
                          f"decoders: {_slots_line(pipeline)}")
    from .runner import LocalRunner
    log(f"bike tag: loading the model ({_model_words(opts.model_kwargs)}) in this process...")
    pipeline = LocalRunner(ScoreStage(opts.model_kwargs, labels), spec, model_batch=opts.model_batch)
    return pipeline, f"runner {summary.runner}; decoder: {_slots_line(pipeline)}"


def _run_locked(opts: TagOptions, store: Store, sources, labels, log, t0: float) -> TagSummary:
    cleaned = store.recover()
    if cleaned["uncommitted"] or cleaned["tmp"] or cleaned["replacements"]:
        log(f"bike tag: recovered the store after an interrupted run: removed {cleaned['uncommitted']} "
            f"uncommitted shards and {cleaned['tmp']} temporary files, finished {cleaned['replacements']} "
            "replacements")
    summary = TagSummary(store=str(store.root), listed=len(sources.videos), skipped_sources=sources.skipped)

    if _nothing_to_do(opts, store, labels, sources, summary):
        summary.seconds = time.monotonic() - t0
        if opts.index:
            summary.index, summary.index_failed = update_vector_index(store, summary.model_id)
        return summary
    if not opts.address:                                  # on a cluster the weights may live on the workers
        from .precheck import check_weights
        check_weights(opts.model_kwargs)                  # before Ray: a missing file is said in a second
    from .runner import choose_runner
    runner, why = choose_runner(opts.runner, opts.address, len(sources.videos), len(sources.objects))
    summary.runner = (f"local (in this process, no Ray; {why})" if runner == "local" else f"ray ({why})")
    started = raycluster.connect(opts.address) if runner == "ray" else False
    pipeline = None
    try:
        pipeline, where = _make_runner(runner, opts, labels, log, summary)
        facts = pipeline.start()
        model_id = ids.model_id(facts.fingerprint, labels.digest, opts.window_s or 0.0, opts.sampling,
                                windows=plan_key(opts))
        if opts.windows == "shots" and not opts.force:
            pipeline.known_shots = stored_shots(store)
        summary.model_id, summary.model, summary.random_init = model_id, facts.describe, facts.random_init
        log(f"bike tag: model {facts.describe}; labels {labels.name} ({len(labels)}); window "
            f"{opts.window_s or 'whole video'}; sampling {opts.sampling}; model_id {model_id}")
        log(f"bike tag: {len(sources.videos)} videos listed; {where}")
        done = store.done_videos(model_id)
        need_models_row = model_id not in set(store.read("models", ["model_id"])["model_id"].to_pylist())
        write = WriteStage(store, model_id, model_row(model_id, facts, labels, opts.window_s or 0.0)
                           if need_models_row else None, batch=opts.batch, flush_s=opts.flush_s)
        redo, stale = write.redo, write.stale   # content id → the path id of its path's earlier "cannot read" row
        progress = Progress(len(sources.videos), "tag", bar=opts.progress)
        progress.follow(lambda: pipeline.frames_scored)       # a long video moves the frame count
        id_cache = IdCache(store, trust=not opts.rehash)
        remote_ids = None
        if sources.objects:                                 # object-storage sources (engine/sources/remote.py)
            from index.store.remoteids import RemoteIds
            remote_ids = RemoteIds(store, trust=not opts.rehash, listed=sources.objects)

        def identify(path):
            return remote_ids.identify(path) if remote_ids is not None and is_remote(path) else id_cache.identify(path)

        seen: set = set()               # content ids handed to the pipeline (or resolved from its results)

        def admit(vid: str, path: str, err: "str | None" = None) -> bool:
            """Whether the content ``vid`` (found at ``path``) is tagged in this run: not a copy of one already
            handed on, not already stored for this model (unless --force / --retry-errors). Counts what it
            skips; notes what it re-does and the stale "cannot read" row of its path."""
            if vid in seen:
                summary.duplicates += 1
                return False
            seen.add(vid)
            status = done.get(vid)
            if status is not None and not opts.force and not (opts.retry_errors and status == "error"):
                summary.skipped_done += 1
                return False
            if status is not None:
                redo.add(vid)
            if err is None:
                pid = _path_id(path)
                if pid in done:
                    stale[vid] = pid
            return True

        def work():
            for path, vid, err in _identified(sources.videos, identify):
                if not admit(vid, path, err):
                    progress.skip()
                    continue
                yield vid, path, err

        def resolve(result):
            """A new object's result carries the content id its decode task computed (read once,
            engine/sources/remote.py): the result under that id, or None when that content is already stored for this
            model or came back earlier in this run (a copy under another URL: tagged once)."""
            streamed = getattr(result, "streamed", None) or {}
            vid = streamed.get("content_id")
            if vid is None:                 # its bytes could not all be read: an error row under its URL
                result.video_id = _path_id(result.path)
                return result
            remote_ids.remember(result.path, streamed.get("size"), streamed.get("etag"), vid)
            if not admit(vid, result.path):
                return None
            result.video_id = vid
            return result

        T = facts.frames

        def count(result):
            """Counts and progress of one finished video (→ the result to commit, None: not committed)."""
            if result.streamed:                     # an object its decode task read (engine/sources/remote.py)
                summary.objects_read += 1
                summary.objects_bytes += result.streamed.get("size") or 0
                summary.fetched_bytes += result.streamed.get("bytes") or 0
                summary.fetched_gets += result.streamed.get("gets") or 0
            if result.video_id.startswith(PENDING):
                result = resolve(result)
                if result is None:
                    progress.skip()
                    return None
            frames = len(result.clips) * T
            summary.frames += frames
            if result.status == "ok":
                summary.ok += 1
            else:
                summary.error += 1
                summary.errors.append((result.path, result.error))
            progress.update(result.status == "ok", frames)
            return result

        t_run = time.monotonic()
        try:
            commit(pipeline.run(work()), write, count)
        except KeyboardInterrupt as e:
            if not isinstance(e, Interrupted):
                raise Interrupted(
                    f"{write.committed} video(s) committed to {store.root} in this run; rerun the same command to "
                    "continue (what the store holds is skipped)") from None
            raise
        finally:
            progress.close()
            summary.ids_remembered, summary.ids_hashed = id_cache.hits, id_cache.hashed
            for cache in (id_cache, remote_ids):
                if cache is None:
                    continue
                if cache is remote_ids:
                    summary.ids_remembered += cache.hits
                    summary.ids_hashed += cache.hashed
                try:
                    cache.save()
                except Exception as e:  # noqa: BLE001 - a speed-up only: say so, never fail the job for it
                    log(f"bike tag: warning: could not save the content-id cache {cache.path}: {e}")
            summary.run_s = time.monotonic() - t_run
            summary.batches = write.batches
            summary.decodes = _decodes_line(pipeline.decodes)
            summary.model_busy = pipeline.model_busy_s() / max(summary.run_s * len(pipeline.actors), 1e-9)
    finally:
        if pipeline is not None:
            pipeline.stop()
        raycluster.shutdown(started)
    if opts.compact_at and summary.batches:
        from index.store.compact import compact, needs_compaction
        if needs_compaction(store, opts.compact_at):          # still under the writer lock (run_tag)
            summary.compacted = compact(store, locked=True).line()
    summary.seconds = time.monotonic() - t0
    # also when nothing new was tagged: an earlier run may have been killed between its last commit and
    # this step (update_index says "up to date" when there is nothing to add)
    if opts.index and any(c["model_id"] == model_id and c["tables"].get("embeddings") for c in store.commits()):
        summary.index, summary.index_failed = update_vector_index(store, model_id)
    elif opts.index:
        summary.index = "vector index unchanged (no clips of this model to index)"
    return summary
