"""The text stages of ``bike tag --text subtitles,ocr,asr``: each channel reads every listed video once and
writes its timed text spans into the ``transcripts`` table (index/store/schema.py).

Each channel is a stage with declared resources (:data:`STAGES`: CPU threads, GPU wanted) and a plain
function of a video file (engine/transcripts/). Exactly once, per channel: a channel's batches are committed under
its own id in ``model_id`` (``text:subtitle``, ``text:ocr``, ``text:speech``), with every video it finished
in the commit record, like the BIKE model's batches. So

- a video is read by a channel once; a rerun skips it (``--force`` reads it again and replaces its spans);
- adding a channel to a tagged store later (``bike tag corpus --store S --text ocr``) runs only that
  channel: BIKE has nothing to do and is not started, and the channels already done are skipped;
- a video whose channel found nothing (no subtitles) is recorded as done with no rows.

A video a channel cannot read becomes an ``error`` status in that channel's record (``--retry-errors`` tries
again) and a one-line reason in the summary; its other channels and the other videos are unaffected.
Videos run ``workers`` at a time on the driver (threads: PyAV and onnxruntime release the GIL); batches
of ``batch`` videos are committed as they finish, so a kill loses at most the unwritten batch.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from engine.transcripts import SOURCES, TextError
from index.store.schema import TABLES

from jobs.errors import UsageError

#: Channels in the order they run.
CHANNELS = ("subtitles", "ocr", "asr")
ASR_BACKENDS = ("pocketsphinx", "whisper")


@dataclass(frozen=True)
class Stage:
    """A text channel as a stage: what it declares it needs (``cpus`` threads per video, whether it wants a
    GPU: whisper does where one exists) and its backend."""
    channel: str
    cpus: int
    gpu: bool
    cost: str                   # what it costs, for `bike tag --help` and docs/text.md


STAGES = {"subtitles": Stage("subtitles", 1, False, "no model: a container read per video"),
          "ocr": Stage("ocr", 1, False, "rapidocr (PP-OCR ONNX) on frames where the picture changed"),
          "asr": Stage("asr", 1, True, "speech recognition (pocketsphinx on CPU; faster-whisper, GPU when there)")}


def channel_id(channel: str) -> str:
    """The ``model_id`` of a channel's batches and rows: ``text:subtitle``, ``text:ocr``, ``text:speech``."""
    return f"text:{SOURCES[channel]}"


def parse_channels(spec: "str | None") -> "tuple[str, ...]":
    """``"subtitles,ocr"`` → ``("subtitles", "ocr")``; ``""`` or ``"none"``: no text channel."""
    if spec is None:
        return ("subtitles",)
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if names in ([], ["none"]):
        return ()
    alias = {"subtitle": "subtitles", "subs": "subtitles", "speech": "asr"}
    names = [alias.get(n, n) for n in names]
    bad = [n for n in names if n not in CHANNELS]
    if bad:
        raise UsageError(f"--text {spec}: unknown channel {', '.join(bad)} (channels: {', '.join(CHANNELS)}, "
                         "or none)")
    return tuple(c for c in CHANNELS if c in names)


@dataclass
class TextOptions:
    channels: "tuple[str, ...]" = ("subtitles",)
    asr: str = "pocketsphinx"                  # pocketsphinx | whisper
    whisper_model: str = "base.en"              # faster-whisper model name or local folder
    device: "str | None" = None                 # whisper: cuda | cpu (None: cuda when there)
    workers: int = 2                            # videos read at once per channel
    batch: int = 16                             # videos per committed batch
    force: bool = False
    retry_errors: bool = False


@dataclass
class ChannelSummary:
    channel: str
    done: int = 0
    skipped: int = 0
    error: int = 0
    spans: int = 0
    seconds: float = 0.0
    backend: str = ""
    errors: list = field(default_factory=list)        # [(path, reason)]
    warnings: list = field(default_factory=list)      # [(path, warning)]

    def lines(self) -> "list[str]":
        out = [f"bike tag: text {self.channel}: {self.done} videos read, {self.spans} spans, {self.error} error, "
               f"{self.skipped} skipped (already read) in {self.seconds:.1f} s"
               + (f" [{self.backend}]" if self.backend else "")]
        for path, why in self.errors[:5]:
            out.append(f"bike tag: text {self.channel}: error: {path}: {why}")
        for path, why in self.warnings[:5]:
            out.append(f"bike tag: text {self.channel}: warning: {path}: {why}")
        more = len(self.errors) + len(self.warnings) - len(self.errors[:5]) - len(self.warnings[:5])
        if more > 0:
            out.append(f"bike tag: text {self.channel}: ... {more} more errors/warnings")
        return out


def _reader(channel: str, opts: TextOptions):
    """``path → (rows [(start, end, text, confidence, backend, version)], warnings)`` for one channel; models
    are loaded here, once per run."""
    if channel == "subtitles":
        import av

        from engine.transcripts.subtitles import read_subtitles

        def read(path):
            tracks, warnings = read_subtitles(path)
            return [(c.start_s, c.end_s, c.text, c.confidence, t.backend, f"pyav {av.__version__}")
                    for t in tracks for c in t.cues], warnings
        return read, "subtitle tracks and sidecar files"
    if channel == "ocr":
        from engine.transcripts.ocr import OcrReader
        ocr = OcrReader()

        def read(path):
            spans, warnings = ocr.read_video(path)
            return [(c.start_s, c.end_s, c.text, c.confidence, ocr.backend, ocr.version) for c in spans], warnings
        return read, ocr.backend
    from engine.transcripts.asr import load_backend
    asr = load_backend(opts.asr, model=opts.whisper_model, device=opts.device)

    def read(path):
        cues, warnings = asr.transcribe_file(path)
        return [(c.start_s, c.end_s, c.text, c.confidence, asr.name, asr.version) for c in cues], warnings
    return read, asr.name


def _source(path: str):
    """What a channel reads: a local path, or for an object (s3://, https://) a ``engine.sources.ranged.RemoteSource``
    (ranged GETs, bounded block cache, stall limit; the decoders read it as a seekable file)."""
    from engine.sources.remote import is_remote
    if not is_remote(path):
        return path
    from engine.sources.ranged import RemoteSource
    return RemoteSource(path)


def _rows(channel: str, items) -> pa.Table:
    """``[(video_id, path, [rows])]`` → transcripts rows."""
    mid, source = channel_id(channel), SOURCES[channel]
    cols = {n: [] for n in TABLES["transcripts"].names}
    for vid, path, rows in items:
        for start, end, text, conf, backend, version in rows:
            for k, v in (("video_id", vid), ("model_id", mid), ("start_s", float(start)), ("end_s", float(end)),
                         ("text", text), ("source", source), ("confidence", conf), ("backend", backend),
                         ("version", version), ("path", path)):
                cols[k].append(v)
    return pa.Table.from_pydict(cols, schema=TABLES["transcripts"])


def run_text_stage(store, videos, opts: TextOptions, log=None) -> "list[ChannelSummary]":
    """Run each channel of ``opts`` over ``videos`` (``[(path, video_id)]``: local files or object URLs) into
    ``store``. The caller holds the store's writer lock."""
    log = log or (lambda msg: None)
    out = []
    for channel in opts.channels:
        mid = channel_id(channel)
        done = store.done_videos(mid)
        summary = ChannelSummary(channel)
        todo, redo, seen = [], set(), set()
        for path, vid in videos:
            if vid in seen:
                continue
            seen.add(vid)
            status = done.get(vid)
            if status is not None and not opts.force and not (opts.retry_errors and status == "error"):
                summary.skipped += 1
                continue
            if status is not None:
                redo.add(vid)
            todo.append((path, vid))
        out.append(summary)
        if not todo:
            continue
        t0 = time.monotonic()
        try:
            read, summary.backend = _reader(channel, opts)
        except (TextError, ImportError) as e:
            raise UsageError(f"--text {channel}: {e}") from None
        log(f"bike tag: text {channel}: reading {len(todo)} videos ({STAGES[channel].cost})")

        def one(item):
            path, vid = item
            try:
                src = _source(path)
                rows, warnings = read(src)
                if getattr(src, "failure", None):    # an object whose bytes could not all be read: not done
                    raise TextError(f"reading stopped: {src.failure}")
                return vid, path, "ok", rows, warnings, None
            except TextError as e:
                return vid, path, "error", [], [], str(e)
            except Exception as e:  # noqa: BLE001 - one video's failure must not stop the others
                return vid, path, "error", [], [], f"{type(e).__name__}: {str(e)[:200]}"

        buffer: list = []

        def flush():
            if not buffer:
                return
            statuses = {vid: status for vid, _p, status, *_ in buffer}
            table = _rows(channel, [(vid, p, rows) for vid, p, _s, rows, *_ in buffer])
            store.write_batch({"transcripts": table}, mid, statuses, replace=bool(redo & set(statuses)))
            buffer.clear()

        workers = max(1, opts.workers)
        with ThreadPoolExecutor(workers) as pool:
            try:
                for res in pool.map(one, todo):
                    vid, path, status, rows, warnings, err = res
                    buffer.append(res)
                    summary.spans += len(rows)
                    summary.warnings.extend((path, w) for w in warnings)
                    if status == "ok":
                        summary.done += 1
                    else:
                        summary.error += 1
                        summary.errors.append((path, err))
                    if len(buffer) >= opts.batch:
                        flush()
                flush()
            except BaseException:
                try:
                    flush()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
                raise
        summary.seconds = time.monotonic() - t0
    return out


def local_videos(store, paths, rehash: bool = False, objects: "dict | None" = None) -> "list[tuple[str, str]]":
    """``[(path, video_id)]`` of the readable videos among ``paths`` (content ids from the store's id caches,
    as ``bike tag`` computed them). Objects (s3://, https://; ``objects``: their listing, URL →
    RemoteObject) are kept when their content id is remembered for their current ETag (their decode task
    hashed them in a ``bike tag`` run): the text channels read them with ranged GETs. An object whose id is
    not known yet is left out (it was not read by BIKE: a failed or skipped object)."""
    from index.store.idcache import IdCache

    from engine.sources.remote import PENDING, is_remote
    from index.store.remoteids import RemoteIds
    cache = IdCache(store, trust=not rehash)
    remote_ids = None
    out = []
    for p in paths:
        if is_remote(p):
            remote_ids = remote_ids or RemoteIds(store, trust=True, listed=objects)
            vid, err = remote_ids.identify(p)
            if err is None and not vid.startswith(PENDING):
                out.append((p, vid))
            continue
        if not os.path.isfile(p):
            continue
        vid, err = cache.identify(p)
        if err is None:
            out.append((p, vid))
    try:
        cache.save()
    except Exception:  # noqa: BLE001 - a speed-up only
        pass
    return out
