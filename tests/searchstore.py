"""Small real stores for the index/search tests, written with ``Store.write_batch`` from hand-made frame features.

``add_video(store, model, labels, name, clips)`` scores the given per-frame features with the real model
(``BikeModel.score_features``: concept spotting + attributes, as ``bike tag`` does after decoding) and writes
one committed batch with rows for every table. ``clips`` is a list of (T, D) arrays, one per 10-s window.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import torch

from index.store.ids import model_id as make_model_id
from index.store.schema import TABLES, clip_id

WINDOW_S = 10.0


def model_id_of(model, labels) -> str:
    return make_model_id(model.fingerprint(), labels.digest, WINDOW_S)


def models_row(model, labels) -> pa.Table:
    m = model.meta
    row = {"model_id": model_id_of(model, labels), "name": m["name"], "pretrained": m.get("pretrained"),
           "checkpoint": m.get("checkpoint"), "weights_sha": m.get("weights_sha"), "random_init": model.random_init,
           "frames": model.frames, "window_s": WINDOW_S, "label_set": labels.name, "label_digest": labels.digest,
           "labels": list(labels.names), "lexicon": model.lexicon.name,
           "fingerprint": json.dumps(model.fingerprint(), sort_keys=True), "created_at": datetime.now(timezone.utc)}
    return pa.Table.from_pylist([{k: v for k, v in row.items() if k in TABLES["models"].names}],
                                schema=TABLES["models"])


def add_video(store, model, labels, video_id: str, clips, path: "str | None" = None, duration_s=None,
              replace: bool = False, size: int = 1000) -> str:
    """Write one video (one batch). Returns the model_id. ``size``: the file size recorded for it."""
    mid = model_id_of(model, labels)
    feats = torch.as_tensor(np.stack(clips), dtype=torch.float32)                # (B, T, D)
    b, t, _ = feats.shape
    scores = model.score_features(feats, labels)
    top = scores.fused.topk(min(5, len(labels)), dim=1).indices
    emb = scores.spotting.embedding(top[:, 0]).numpy()
    rows = {k: [] for k in ("clips", "labels", "attributes", "embeddings")}
    for i in range(b):
        cid = clip_id(video_id, i)
        start = i * WINDOW_S
        times = [start + WINDOW_S * j / t for j in range(t)]
        rows["clips"].append({"clip_id": cid, "video_id": video_id, "model_id": mid, "clip_index": i,
                              "start_s": start, "end_s": start + WINDOW_S, "frame_times": times,
                              "frame_embeddings": scores.features[i].numpy().astype(np.float16).tolist()})
        for rank, c in enumerate(top[i].tolist()):
            sal = scores.spotting.saliency[i, c].tolist()
            rows["labels"].append({"clip_id": cid, "video_id": video_id, "model_id": mid, "rank": rank,
                                   "label": labels.names[c], "score": float(scores.fused[i, c]),
                                   "video_score": float(scores.video[i, c]), "attribute_score": None,
                                   "saliency": sal, "peak_s": times[int(np.argmax(sal))]})
        for rank, (phrase, s) in enumerate(scores.attributes[i]):
            rows["attributes"].append({"clip_id": cid, "video_id": video_id, "model_id": mid, "rank": rank,
                                       "attribute": phrase, "score": float(s)})
        rows["embeddings"].append({"clip_id": cid, "video_id": video_id, "model_id": mid,
                                   "embedding": emb[i].tolist()})
    tables = {name: pa.Table.from_pylist(r, schema=TABLES[name]) for name, r in rows.items()}
    if not store.read("models", ["model_id"], model_id=mid).num_rows:
        # its own batch, with no videos: Store._supersede (replace=True) cannot handle a models shard in a
        # batch that also holds the replaced video (it filters every table by video_id)
        store.write_batch({"models": models_row(model, labels)}, mid, {})
    tables["videos"] = pa.Table.from_pylist([{
        "video_id": video_id, "model_id": mid, "path": path or f"/videos/{video_id}.mp4", "size": size,
        "duration_s": duration_s if duration_s is not None else WINDOW_S * b, "fps": 25.0, "width": 64,
        "height": 48, "codec": "h264", "num_clips": b, "status": "ok", "error": None,
        "tagged_at": datetime.now(timezone.utc)}], schema=TABLES["videos"])
    store.write_batch(tables, mid, {video_id: "ok"}, replace=replace)
    return mid


def random_clips(rng, n: int, t: int, d: int) -> "list[np.ndarray]":
    """n clips of t frames: a per-clip direction plus per-frame variation (frames of a clip differ)."""
    base = rng.standard_normal((n, 1, d))
    return [np.asarray(base[i] + 0.7 * rng.standard_normal((t, d)), np.float32) for i in range(n)]
