"""What crosses a stage boundary in ``bike tag`` / ``bike relabel``: typed dataclasses, no ``{"kind": ...}`` dicts.

Imports no torch and no Ray: a Ray decode worker unpickles these (jobs/tag/decodetask.py).

    DecodeSpec   the job's decoding options (typed fields of the job spec, the same on every node)
    DecodeTask   one video for a decode stage: its id, path, the backend its slot runs, shots already known
    Head, Shots, Chunk, End
                 what a decode stage yields for one video, in order (a Chunk is followed by its frames,
                 a uint8 array (n, T, S, S, 3), so a driver can forward the array without fetching it)
    ScoreBatch   frame chunks (of any videos) and their clip spans for a score stage
    StoredVideo  one stored video of ``bike relabel`` (no decode: its stored frame features and phrases)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .decode import CHUNK_CLIPS


@dataclass(frozen=True)
class DecodeSpec:
    """How every video of a job is decoded (``jobs.tag.decode.decode_video``'s arguments): resolved once on the
    driver (``--decoder``, ``--sampling``, the model's frames and crop) and carried by the decode stage."""
    frames: int = 8
    window_s: "float | None" = 10.0
    size: int = 224
    resize: int = 256
    chunk_clips: int = CHUNK_CLIPS
    timeout_s: "float | None" = None
    threads: "int | None" = None             # decoder threads per decode (None: the backend's choice)
    decoder: "str | None" = None             # backend for CPU slots (an NVDEC slot names its own)
    sampling: "str | None" = None
    windows: str = "fixed"                   # fixed | shots
    min_shot: float = 1.0
    nice: int = 0                            # a Ray decode worker lowers its priority by this much

    def kwargs(self, decoder: "str | None" = None, shots: "list | None" = None) -> dict:
        """``decode_video`` keyword arguments (``decoder``: the slot's backend, else the spec's)."""
        kw = dict(frames=self.frames, window_s=self.window_s, size=self.size, resize=self.resize,
                  chunk_clips=self.chunk_clips, timeout_s=self.timeout_s, threads=self.threads,
                  decoder=decoder or self.decoder, sampling=self.sampling)
        if self.windows != "fixed":
            kw.update(windows=self.windows, min_shot=self.min_shot, shots=shots)
        return kw


@dataclass(frozen=True)
class DecodeTask:
    video_id: str
    path: str
    decoder: "str | None" = None             # the backend of the slot it runs in (jobs.tag.slots.slot_decoder)
    shots: "list | None" = None              # --windows shots: shots the store already holds for it


@dataclass(frozen=True)
class Head:
    info: object                             # engine.video.VideoInfo, None when the probe failed
    error: "str | None" = None


@dataclass(frozen=True)
class Shots:
    shots: list                              # [(start_s, end_s)]
    detector: str
    version: str
    cost: dict = field(default_factory=dict)

    def record(self) -> dict:
        """As ``VideoResult.shots`` holds it (``jobs.tag.records.tables`` writes the ``shots`` rows)."""
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    spans: list                              # [ClipSpan] of the frames array that follows


@dataclass(frozen=True)
class End:
    clips: int = 0
    error: "str | None" = None
    decode_s: float = 0.0
    warnings: list = field(default_factory=list)
    decoder: "str | None" = None             # the backend that ran
    streamed: "dict | None" = None           # an object read by the decode: content id, size, ETag, bytes, GETs
    held: tuple = ()                         # ((resource, amount), ...) the Ray decode task held; () locally


def typed(msg: dict):
    """A decode message of ``jobs.tag.decode.decode_video`` (or ``engine.sources.remote.decode_remote``) as its
    dataclass."""
    kind = msg["kind"]
    if kind == "head":
        return Head(msg.get("info"), msg.get("error"))
    if kind == "shots":
        return Shots(msg["shots"], msg["detector"], msg["version"], msg.get("cost") or {})
    if kind == "chunk":
        return Chunk(msg["spans"])
    if kind == "end":
        return End(msg.get("clips") or 0, msg.get("error"), msg.get("decode_s") or 0.0, msg.get("warnings") or [],
                   msg.get("decoder"), msg.get("streamed"))
    raise ValueError(f"unknown decode message {kind!r}")


@dataclass
class ScoreBatch:
    spans: list                              # [[ClipSpan] per chunk]
    chunks: tuple = ()                       # uint8 (n_i, T, S, S, 3) per chunk (on Ray: passed beside it)


@dataclass
class StoredVideo:
    """A stored video of ``bike relabel``'s source model_id (``jobs.tag.relabel.source_videos``)."""
    video: dict                              # its ``videos`` row
    spans: list                              # [ClipSpan]
    features: list                           # [(T, D) float32] after the temporal header
    attributes: list                         # [[(phrase, cosine)]] in rank order
