"""What BIKE says about clips → rows of the store's tables (index/store/schema.py). Plain functions, no Ray.

Used by ``bike tag`` (scores of freshly decoded clips) and ``bike relabel`` (scores recomputed from stored
frame embeddings), so both write exactly the same rows for the same numbers:

    scores (engine.Scores) + clip spans  --clip_results-->  [ClipResult]          (one per clip)
    [VideoResult] (file facts + its ClipResults)  --tables-->  {table: pyarrow.Table}
    the loaded model + label set + window  --model_row-->  the ``models`` row

Per clip: the top-k labels (fused / video / attributes probabilities, each label's saliency over the T
frames and the frame time where it peaks), the top-k attribute phrases, the frame features after the
temporal header (float16, T×D) and the saliency-weighted embedding of the top label (float32, D).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from engine.model.config import DEFAULTS
from index.store.schema import TABLES, clip_id


@dataclass
class ClipSpan:
    """Where a clip sits in its video: window number, span (s) and the times of its T sampled frames."""
    index: int
    start_s: float
    end_s: float
    frame_times: list


@dataclass
class LabelRow:
    label: str
    score: float                    # fused probability
    video_score: float
    attribute_score: "float | None"
    saliency: list                  # this label's saliency over the T frames (sums to 1)
    peak_s: float                   # frame time at the saliency maximum


@dataclass
class ClipResult:
    span: ClipSpan
    labels: list                    # [LabelRow] best first
    attributes: list                # [(phrase, cosine)] best first
    frame_embeddings: np.ndarray    # (T, D) float16, after the temporal header
    embedding: np.ndarray           # (D,) float32, saliency-weighted embedding of the top label
    finite: bool = True             # every number above is finite (engine.model.model.Scores.finite)
    prints: "np.ndarray | None" = None   # (T, 192) float16 frame prints (engine/model/fingerprint.py); None: relabel


@dataclass
class VideoResult:
    """One video's outcome: file facts, 'ok' with its clips, or 'error' with the reason."""
    video_id: str
    path: str
    status: str = "ok"
    error: "str | None" = None
    size: "int | None" = None
    duration_s: "float | None" = None
    fps: "float | None" = None
    width: "int | None" = None
    height: "int | None" = None
    codec: "str | None" = None
    clips: list = field(default_factory=list)     # [ClipResult]
    warnings: "str | None" = None                 # decode problems of an 'ok' video (engine.video)
    streamed: "dict | None" = None                # an object read by its decode task: content id, size, ETag,
                                                  # GETs, bytes (engine/sources/remote.py); not stored
    shots: "dict | None" = None                   # shots detected by its decode (jobs/tag/decode.py "shots"
                                                  # message) → the ``shots`` table; None: none detected

    @classmethod
    def failed(cls, video_id: str, path: str, reason: str, info=None, size=None) -> "VideoResult":
        r = cls.from_info(video_id, path, info) if info is not None else cls(video_id, path, size=size)
        r.status, r.error, r.clips = "error", reason, []
        return r

    @classmethod
    def from_info(cls, video_id: str, path: str, info) -> "VideoResult":
        """From an ``engine.video.VideoInfo``."""
        return cls(video_id, path, size=info.size_bytes, duration_s=info.duration_s, fps=info.fps,
                   width=info.width, height=info.height, codec=info.codec)


def clip_results(scores, spans, top_k: int = DEFAULTS.top_k) -> "list[ClipResult]":
    """Turn ``engine.Scores`` of B clips (in the order of ``spans``) into :class:`ClipResult`\\ s."""
    if len(spans) != scores.fused.shape[0]:
        raise ValueError(f"{len(spans)} clip spans for {scores.fused.shape[0]} scored clips")
    if not spans:
        return []
    k = min(top_k, scores.fused.shape[1])
    top = scores.fused.topk(k, dim=1).indices                          # (B, k)
    top_np = top.numpy()
    fused, video = scores.fused.numpy(), scores.video.numpy()
    attr = None if scores.attribute is None else scores.attribute.numpy()
    sal = scores.spotting.saliency.numpy()                              # (B, C, T)
    emb = scores.spotting.embedding(top[:, 0]).float().numpy()          # (B, D)
    feats = scores.features.float().numpy().astype(np.float16)                 # (B, T, D)
    finite = scores.finite()
    out = []
    for b, span in enumerate(spans):
        times = [float(t) for t in span.frame_times]
        rows = []
        for c in top_np[b]:
            s = sal[b, c]
            rows.append(LabelRow(scores.labels.names[c], float(fused[b, c]), float(video[b, c]),
                                 None if attr is None else float(attr[b, c]), [float(x) for x in s],
                                 times[int(np.argmax(s))] if times else float(span.start_s)))
        atts = [(str(p), float(v)) for p, v in (scores.attributes[b] if scores.attributes else [])]
        out.append(ClipResult(span, rows, atts, feats[b], emb[b].astype(np.float32), finite[b]))
    return out


@dataclass(frozen=True)
class ModelFacts:
    """What the ``models`` row, the model id and the decode spec need from a loaded ``BikeModel`` (small,
    picklable: a score stage's actor sends it to the driver)."""
    meta: dict
    fingerprint: dict
    describe: str
    lexicon: str
    frames: int
    crop: int
    resize: int
    random_init: bool
    precision: str = "fp32"
    branches: str = "fused"


def model_facts(model) -> ModelFacts:
    """The :class:`ModelFacts` of a loaded ``BikeModel``."""
    return ModelFacts(meta=dict(model.meta), fingerprint=model.fingerprint(), describe=model.describe(),
                      lexicon=model.lexicon.name, frames=model.frames, crop=model.crop, resize=model.resize,
                      random_init=model.random_init, precision=model.precision.name, branches=model.branches)


def model_row(model_id: str, facts: ModelFacts, labels, window_s: float, now: "datetime | None" = None) -> pa.Table:
    """The ``models`` row of ``model_id`` (``facts`` from :func:`model_facts`, ``labels`` a LabelSet)."""
    m = facts.meta
    row = {"model_id": model_id, "name": m.get("name"), "pretrained": m.get("pretrained"),
           "checkpoint": m.get("checkpoint"), "weights_sha": m.get("weights_sha"),
           "random_init": bool(m.get("random_init")), "frames": int(facts.frames),
           "window_s": float(window_s), "label_set": labels.name, "label_digest": labels.digest,
           "labels": list(labels.names), "lexicon": facts.lexicon,
           "fingerprint": json.dumps(facts.fingerprint, sort_keys=True),
           "created_at": now or datetime.now(timezone.utc),
           "precision": facts.precision, "branches": facts.branches}
    return pa.Table.from_pylist([row], schema=TABLES["models"])


def _nested(arrays, inner_type) -> pa.Array:
    """list<list<inner>> from 2-D numpy arrays, without going through Python floats."""
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    inner_len = [a.shape[1] for a in arrays for _ in range(a.shape[0])]
    inner_off = np.concatenate([[0], np.cumsum(inner_len)]).astype(np.int32)
    outer_off = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])]).astype(np.int32)
    values = pa.array(flat.astype(inner_type.to_pandas_dtype()), type=inner_type)
    return pa.ListArray.from_arrays(outer_off, pa.ListArray.from_arrays(inner_off, values))


def _flat_list(arrays, value_type) -> pa.Array:
    """list<value> from 1-D numpy arrays."""
    flat = np.concatenate([np.asarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    off = np.concatenate([[0], np.cumsum([np.asarray(a).size for a in arrays])]).astype(np.int32)
    return pa.ListArray.from_arrays(off, pa.array(flat.astype(value_type.to_pandas_dtype()), type=value_type))


def tables(model_id: str, videos, now: "datetime | None" = None) -> "dict[str, pa.Table]":
    """Rows of every table for a list of :class:`VideoResult` (``models`` not included: see
    :func:`model_row`)."""
    now = now or datetime.now(timezone.utc)
    v_rows, c_cols, l_rows, a_rows, e_ids, e_vecs = [], [], [], [], [], []
    clip_emb, p_rows, p_mats, s_rows = [], [], [], []
    for v in videos:
        found = getattr(v, "shots", None)
        if found and v.status == "ok":
            s_rows.extend({"video_id": v.video_id, "shot": i, "start_s": float(a), "end_s": float(b),
                           "detector": found["detector"], "version": found["version"], "model_id": model_id}
                          for i, (a, b) in enumerate(found["shots"]))
        v_rows.append({"video_id": v.video_id, "model_id": model_id, "path": v.path, "size": v.size,
                       "duration_s": v.duration_s, "fps": v.fps, "width": v.width, "height": v.height,
                       "codec": v.codec, "num_clips": len(v.clips), "status": v.status, "error": v.error,
                       "tagged_at": now, "warnings": getattr(v, "warnings", None)})
        for c in v.clips:
            cid = clip_id(v.video_id, c.span.index)
            c_cols.append((cid, v.video_id, c.span.index, float(c.span.start_s), float(c.span.end_s),
                           [float(t) for t in c.span.frame_times]))
            clip_emb.append(np.asarray(c.frame_embeddings, np.float16))
            if getattr(c, "prints", None) is not None:
                p_rows.append((cid, v.video_id, [float(t) for t in c.span.frame_times]))
                p_mats.append(np.asarray(c.prints, np.float16))
            for rank, lr in enumerate(c.labels):
                l_rows.append({"clip_id": cid, "video_id": v.video_id, "model_id": model_id, "rank": rank,
                               "label": lr.label, "score": lr.score, "video_score": lr.video_score,
                               "attribute_score": lr.attribute_score, "saliency": lr.saliency,
                               "peak_s": lr.peak_s})
            for rank, (phrase, score) in enumerate(c.attributes):
                a_rows.append({"clip_id": cid, "video_id": v.video_id, "model_id": model_id, "rank": rank,
                               "attribute": phrase, "score": score})
            e_ids.append((cid, v.video_id))
            e_vecs.append(np.asarray(c.embedding, np.float32))
    n = len(c_cols)
    clips = pa.Table.from_arrays([
        pa.array([c[0] for c in c_cols], pa.string()), pa.array([c[1] for c in c_cols], pa.string()),
        pa.array([model_id] * n, pa.string()), pa.array([c[2] for c in c_cols], pa.int32()),
        pa.array([c[3] for c in c_cols], pa.float64()), pa.array([c[4] for c in c_cols], pa.float64()),
        pa.array([c[5] for c in c_cols], pa.list_(pa.float32())),
        _nested(clip_emb, pa.float16()),
    ], schema=TABLES["clips"])
    embeddings = pa.Table.from_arrays([
        pa.array([e[0] for e in e_ids], pa.string()), pa.array([e[1] for e in e_ids], pa.string()),
        pa.array([model_id] * len(e_ids), pa.string()), _flat_list(e_vecs, pa.float32()),
    ], schema=TABLES["embeddings"])
    prints = pa.Table.from_arrays([
        pa.array([r[0] for r in p_rows], pa.string()), pa.array([r[1] for r in p_rows], pa.string()),
        pa.array([model_id] * len(p_rows), pa.string()), pa.array([r[2] for r in p_rows], pa.list_(pa.float32())),
        _nested(p_mats, pa.float16()),
    ], schema=TABLES["prints"])
    return {
        "clips": clips, "prints": prints, "shots": pa.Table.from_pylist(s_rows, schema=TABLES["shots"]),
        "labels": pa.Table.from_pylist(l_rows, schema=TABLES["labels"]),
        "attributes": pa.Table.from_pylist(a_rows, schema=TABLES["attributes"]),
        "embeddings": embeddings,
        "videos": pa.Table.from_pylist(v_rows, schema=TABLES["videos"]),
    }
