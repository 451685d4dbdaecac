"""Tags from examples (``bike label``): a user's own label, scored for every stored clip from a few example clips.

    bike label "goal celebration" --store S --positive V1/3,V2/0,V7/5 [--negative V4/1] [--query "goal"]
    bike sql --store S "SELECT clip_id, score FROM user_labels WHERE label = 'goal celebration' AND tagged"

A tag is defined by its examples: positive clips (what it is), optional negative clips (what it is not) and an
optional text query. Every stored clip of the model is scored exactly as relevance feedback scores search
candidates (index/search/feedback.py), over the whole store instead of a candidate list: MaxSim of its stored frame
embeddings to its nearest positives minus ``NEGATIVE_WEIGHT`` times MaxSim to its nearest negatives,
standardised over the store's clips, plus the standardised concept-spotting score of the query weighted by
how far it agrees with the examples (when a query is given; only then is the model loaded, to encode the
text). Nothing is decoded.

**Rows** (the derived table ``user_labels``, one row per (label, clip)): ``score`` (the combination),
``rank`` (0 = the clip most like the examples, within this label), ``tagged`` (``score >= threshold``; the
positives always, the negatives never), ``example`` ('positive' | 'negative' | NULL) and the lineage:
``positives``, ``negatives``, ``query``, ``model_id``, ``created_at`` (when the tag was defined),
``scored_at`` (when the rows were computed) and ``clips`` (how many clips the store held then).

**Threshold.** With two or more positives: the lowest leave-one-out score of a positive (each positive scored
against the others only): a clip is tagged when it is at least as like the examples as the least typical
example is like the rest. With one positive: the top ``ONE_EXAMPLE_FRACTION`` of the store's clips.

**Storage.** One Parquet file per (model_id, label): ``STORE/_user_labels/<model_id>-<hash of the name>.parquet``,
written whole and replaced atomically (a derived file like ``_dedup/``, index.store.schema.DERIVED), so the
definition travels with its rows. **New batches**: ``bike label --refresh --store S`` rescores every stored
tag (same examples, same query, same ``created_at``) over all the clips the store holds now; ``bike tag`` does
not do it by itself. ``clips`` in the rows says how many clips a tag was scored over.
"""
from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from index.store.parquetio import read_parquet
from .feedback import Feedback, combine, example_scores
from index.store.schema import USER_LABELS, USER_LABELS_DIR
from index.store import Store, StoreError

#: With a single positive, the fraction of the store's clips tagged (no leave-one-out threshold exists).
ONE_EXAMPLE_FRACTION = 0.05
#: Clips scored at a time (frames of one chunk in memory as float32).
CHUNK = 4096
#: Longest tag name.
MAX_NAME = 200

SCHEMA = USER_LABELS


@dataclass
class Definition:
    """What a tag is: its name, examples, query and model (stored in every row of its file)."""
    label: str
    model_id: str
    positives: "list[str]"
    negatives: "list[str]"
    query: "str | None" = None
    created_at: "datetime | None" = None


@dataclass
class LabelReport:
    definition: Definition
    clips: int
    tagged: int
    threshold: float
    seconds: float
    key: str
    top: "list[tuple[str, float]]"          # the best clips: (clip_id, score)


def label_key(model_id: str, label: str) -> str:
    return f"{USER_LABELS_DIR}/{model_id}-{hashlib.sha1(label.encode()).hexdigest()[:16]}.parquet"


def check_name(label: str) -> str:
    name = " ".join((label or "").split())
    if not name:
        raise StoreError("the tag name is empty")
    if len(name) > MAX_NAME:
        raise StoreError(f"tag name too long ({len(name)} characters; at most {MAX_NAME})")
    return name


def _frames(column) -> np.ndarray:
    """list<list<float16>> column of n clips (same T×D) → float32 (n, T, D)."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0, 0), np.float32)
    vals = arr.flatten().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    t = len(arr[0])
    return vals.reshape(n, t, -1)


def stored_clips(store: Store, model_id: str):
    """Yield (clip_ids, video_ids, frames (n, T, D) float32) per committed shard of ``model_id``'s clips, in at
    most CHUNK clips at a time; a clip a later batch rewrote (``bike tag --force``) is yielded from its latest
    shard only."""
    latest: dict = {}
    recs = [c for c in store.commits() if c["model_id"] == model_id and c["tables"].get("clips")]
    for c in recs:
        t = store.read_shard("clips", c, columns=["clip_id", "model_id"])
        if t is None:
            continue
        for cid in t.filter(pc.equal(t["model_id"], model_id))["clip_id"].to_pylist():
            latest[cid] = c["batch"]
    for c in recs:
        t = store.read_shard("clips", c, columns=["clip_id", "video_id", "model_id", "frame_embeddings"])
        if t is None:
            continue
        t = t.filter(pc.equal(t["model_id"], model_id))
        keep = [latest.get(cid) == c["batch"] for cid in t["clip_id"].to_pylist()]
        t = t.filter(pa.array(keep, pa.bool_())) if not all(keep) else t
        for i in range(0, t.num_rows, CHUNK):
            part = t.slice(i, CHUNK)
            if part.num_rows:
                yield part["clip_id"].to_pylist(), part["video_id"].to_pylist(), _frames(part["frame_embeddings"])


def _group_by_shape(frames_list):
    groups: dict = {}
    for i, f in enumerate(frames_list):
        groups.setdefault(f.shape, []).append(i)
    return groups


def score_label(searcher, d: Definition) -> "tuple[list, list, np.ndarray, np.ndarray, np.ndarray | None, float]":
    """Score every stored clip of ``searcher``'s model for definition ``d``
    → (clip_ids, video_ids, score, feedback score, query score or None, threshold)."""
    import torch
    fb = searcher.feedback(d.positives, d.negatives)
    if not fb.positives:
        raise StoreError("a tag needs at least one positive clip (--positive CLIP_ID)")
    q = searcher.text_query(d.query) if d.query else None
    ids, vids, fbs, qs = [], [], [], []
    for cids, vs, frames in stored_clips(searcher.store, searcher.model_id):
        ids += cids
        vids += vs
        fbs.append(fb.scores(frames))
        if q is not None:
            qs.append(np.asarray(q.rerank(torch.from_numpy(frames)).scores, np.float64))
    fbs_a = np.concatenate(fbs) if fbs else np.zeros(0)
    qs_a = (np.concatenate(qs) if qs else np.zeros(0)) if q is not None else None
    score = combine(fbs_a, qs_a)
    return ids, vids, score, fbs_a, qs_a, _threshold(fb, ids, fbs_a, qs_a, score)


def _threshold(fb: Feedback, ids, fbs, qs, score) -> float:
    """See the module docstring ("Threshold")."""
    if not len(score):
        return float("inf")
    if len(fb.positives) < 2:
        return float(np.quantile(score, 1 - ONE_EXAMPLE_FRACTION))
    where = {c: i for i, c in enumerate(ids)}
    mu, sd = float(fbs.mean()), float(fbs.std()) or 1.0
    if qs is not None:
        from .feedback import query_weight
        qmu, qsd, qw = float(qs.mean()), float(qs.std()) or 1.0, query_weight(fbs, qs)
    loo = []
    for j, c in enumerate(fb.positives):
        others = fb.positive_frames[:j] + fb.positive_frames[j + 1:]
        raw = float(example_scores(fb.positive_frames[j][None], others, fb.negative_frames)[0])
        s = (raw - mu) / sd
        if qs is not None and c in where:
            s += qw * (float(qs[where[c]]) - qmu) / qsd
        loo.append(s)
    return float(min(loo))


def write_label(searcher, d: Definition) -> LabelReport:
    """Score ``d`` over the store (:func:`score_label`) and replace its file. The caller holds the store lock."""
    t0 = time.perf_counter()
    d.label = check_name(d.label)
    d.model_id = searcher.model_id
    ids, vids, score, fbs, qs, threshold = score_label(searcher, d)
    pos, neg = set(d.positives), set(d.negatives)
    order = np.argsort(-score, kind="stable")
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    tagged = [(c in pos) or (c not in neg and s >= threshold) for c, s in zip(ids, score.tolist())]
    now = datetime.now(timezone.utc)
    created = d.created_at or now
    n = len(ids)
    table = pa.table({
        "label": pa.array([d.label] * n, pa.string()), "clip_id": pa.array(ids, pa.string()),
        "video_id": pa.array(vids, pa.string()), "model_id": pa.array([d.model_id] * n, pa.string()),
        "score": pa.array(score.astype(np.float32)), "rank": pa.array(rank),
        "tagged": pa.array(tagged, pa.bool_()),
        "example": pa.array(["positive" if c in pos else "negative" if c in neg else None for c in ids],
                            pa.string()),
        "feedback_score": pa.array(fbs.astype(np.float32)),
        "query_score": pa.array(qs.astype(np.float32)) if qs is not None else pa.nulls(n, pa.float32()),
        "threshold": pa.array([threshold] * n, pa.float32()),
        "positives": pa.array([list(d.positives)] * n, pa.list_(pa.string())),
        "negatives": pa.array([list(d.negatives)] * n, pa.list_(pa.string())),
        "query": pa.array([d.query] * n, pa.string()),
        "created_at": pa.array([created] * n, SCHEMA.field("created_at").type),
        "scored_at": pa.array([now] * n, SCHEMA.field("scored_at").type),
        "clips": pa.array([n] * n, pa.int32()),
    }).cast(SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = label_key(d.model_id, d.label)
    searcher.store.fs.write(key, buf.getvalue())
    d.created_at = created
    top = [(ids[i], float(score[i])) for i in order[:10]]
    return LabelReport(d, n, int(sum(tagged)), threshold, time.perf_counter() - t0, key, top)


def definitions(store: Store, model_id: "str | None" = None) -> "list[Definition]":
    """The tags stored in ``store`` (of ``model_id``, default all), read from the first row of each file."""
    out = []
    for key in store._derived_keys("user_labels"):
        try:
            t = read_parquet(store.fs.read(key),
                             columns=["label", "model_id", "positives", "negatives", "query", "created_at"])
        except Exception as e:  # noqa: BLE001 - a damaged derived file: say which, the user can delete it
            raise StoreError(f"{store.root}: {key} is damaged ({type(e).__name__}); delete it and define the "
                             f"tag again with `bike label`") from None
        if t is None or not t.num_rows:
            continue
        r = t.slice(0, 1).to_pylist()[0]
        if model_id is None or r["model_id"] == model_id:
            out.append(Definition(r["label"], r["model_id"], list(r["positives"] or []),
                                  list(r["negatives"] or []), r["query"], r["created_at"]))
    return out
