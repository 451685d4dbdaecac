"""The store's tables: one Arrow schema per table, the single source of truth for column names and types.

A store is one directory; each table is a folder of Parquet shards (``STORE/<table>/<shard>.parquet``) and a
DuckDB view of the same name (``bike sql``). Every row carries the ``model_id`` that produced it, so several
models / label sets coexist in one store. ``clip_id`` = ``<video_id>/<clip index>`` names the same time
window across models (when they used the same ``--window``).

    videos      one row per (video, model): file facts, status 'ok' | 'error' and the reason; ``warnings``:
                decode problems of an 'ok' video (docs/decoding.md), NULL when clean or in older stores
    clips       one row per clip: time span, sampled frame times, per-frame embeddings after the header (T×D fp16)
    labels      top-k labels per clip: fused / video / attributes probabilities; each row's saliency is that
                label's saliency over the T frames, ``peak_s`` the frame time where it peaks (rank 0: top label)
    attributes  top-k attribute phrases per clip (docs/model.md §5) with their cosine
    embeddings  one vector per clip: the saliency-weighted embedding V of its top label (D float32)
    prints      one row per clip: a small visual print of each sampled frame (engine/model/fingerprint.py, T×192
                fp16), what ``bike dedup`` compares to find copies; absent for clips tagged before it existed
    transcripts one row per timed text span of a video (jobs/tag/textstage.py): subtitles, on-screen text (OCR) or
                speech (ASR); ``source`` subtitle | ocr | speech, ``backend`` what read it (a subtitle track,
                rapidocr, pocketsphinx, whisper), ``model_id`` the channel (``text:subtitle``...): its batches
                record which videos that channel has done, independent of the BIKE model
    shots       one row per shot of a video tagged with ``--windows shots``: its span, the detector and its
                version. Shots depend on the video only: a second model or label set reuses the stored ones
                (its own batches then hold no shots rows); ``model_id`` says which run stored them
    user_labels (derived, ``bike label``) a user's tag from example clips: one row per (tag, clip) with its score
                and whether the clip is tagged, plus the tag's definition (index/search/usertags.py)
    models      one row per model_id: what produced the rows (model, weights, frames, label set, lexicon,
                precision, branches);
                ``fingerprint`` is the JSON of ``BikeModel.fingerprint()`` (``bike relabel`` finds its source by it)
"""
from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

VIDEOS = pa.schema([
    ("video_id", pa.string()), ("model_id", pa.string()), ("path", pa.string()), ("size", pa.int64()),
    ("duration_s", pa.float64()), ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
    ("codec", pa.string()), ("num_clips", pa.int32()), ("status", pa.string()), ("error", pa.string()),
    ("tagged_at", TS),
    ("warnings", pa.string()),       # decode problems of an 'ok' video (concealed corruption...); NULL: clean
])

CLIPS = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("model_id", pa.string()), ("clip_index", pa.int32()),
    ("start_s", pa.float64()), ("end_s", pa.float64()), ("frame_times", pa.list_(pa.float32())),
    ("frame_embeddings", pa.list_(pa.list_(pa.float16()))),     # T × D, after the temporal header
])

LABELS = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("model_id", pa.string()), ("rank", pa.int16()),
    ("label", pa.string()), ("score", pa.float32()), ("video_score", pa.float32()),
    ("attribute_score", pa.float32()), ("saliency", pa.list_(pa.float32())), ("peak_s", pa.float64()),
])

ATTRIBUTES = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("model_id", pa.string()), ("rank", pa.int16()),
    ("attribute", pa.string()), ("score", pa.float32()),
])

EMBEDDINGS = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("model_id", pa.string()),
    ("embedding", pa.list_(pa.float32())),                        # D, saliency-weighted (top label)
])

PRINTS = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("model_id", pa.string()),
    ("frame_times", pa.list_(pa.float32())),
    ("prints", pa.list_(pa.list_(pa.float16()))),                 # T × 192 (engine/model/fingerprint.py)
])

TRANSCRIPTS = pa.schema([
    ("video_id", pa.string()), ("model_id", pa.string()),        # model_id: the channel, e.g. "text:ocr"
    ("start_s", pa.float64()), ("end_s", pa.float64()), ("text", pa.string()),
    ("source", pa.string()),            # subtitle | ocr | speech
    ("confidence", pa.float32()),       # the reader's confidence (NULL for subtitles)
    ("backend", pa.string()),           # "sidecar name.en.srt", "stream 2 mov_text", "rapidocr", "pocketsphinx"...
    ("version", pa.string()),           # the backend's version
    ("path", pa.string()),              # the video file as read
])

SHOTS = pa.schema([                                           # bike tag --windows shots (engine/video/shots.py)
    ("video_id", pa.string()), ("shot", pa.int32()), ("start_s", pa.float64()), ("end_s", pa.float64()),
    ("detector", pa.string()), ("version", pa.string()),
    ("model_id", pa.string()),         # the tagging run that stored them (the store's unit); not a dependency
])

MODELS = pa.schema([
    ("model_id", pa.string()), ("name", pa.string()), ("pretrained", pa.string()), ("checkpoint", pa.string()),
    ("weights_sha", pa.string()), ("random_init", pa.bool_()), ("frames", pa.int16()),
    ("window_s", pa.float64()), ("label_set", pa.string()), ("label_digest", pa.string()),
    ("labels", pa.list_(pa.string())), ("lexicon", pa.string()), ("fingerprint", pa.string()),
    ("created_at", TS),
    ("precision", pa.string()),       # fp32 | bf16 | fp16 (NULL in stores written before it existed: fp32)
    ("branches", pa.string()),        # video | attributes | fused: which branches produced labels.score
])

#: Table name → schema, in the order a batch is written (``videos`` last: it marks videos as done).
TABLES: dict[str, pa.Schema] = {
    "models": MODELS, "clips": CLIPS, "labels": LABELS, "attributes": ATTRIBUTES, "embeddings": EMBEDDINGS,
    "prints": PRINTS, "transcripts": TRANSCRIPTS, "shots": SHOTS, "videos": VIDEOS,
}


#: Derived tables: recomputed whole by a command from the committed rows (not batches), one Parquet file per
#: model_id in their folder; ``bike sql`` shows them as views like the others.
DEDUP_DIR = "_dedup"
DUPLICATES = pa.schema([                                           # bike dedup (index/search/dedup.py)
    ("kind", pa.string()),              # 'video' | 'clip'
    ("a", pa.string()),                 # video_id (kind video) or clip_id (kind clip); a < b
    ("b", pa.string()),
    ("similarity", pa.float32()),       # median best-match cosine of frame prints (1.0: the same pictures)
    ("offset_s", pa.float32()),         # b's time - a's time for the same picture (a trimmed copy's cut)
    ("model_id", pa.string()),
    ("threshold", pa.float32()),        # the --threshold of the run that found it
    ("found_at", TS),
])
USER_LABELS_DIR = "_user_labels"
USER_LABELS = pa.schema([                                          # bike label (index/search/usertags.py)
    ("label", pa.string()),             # the tag's name
    ("clip_id", pa.string()), ("video_id", pa.string()), ("model_id", pa.string()),
    ("score", pa.float32()),            # z(feedback_score) + w z(query_score) over the store's clips (index/search/feedback.py)
    ("rank", pa.int32()),               # 0 = the clip most like the examples, within this label
    ("tagged", pa.bool_()),             # score >= threshold (the positives always, the negatives never)
    ("example", pa.string()),           # 'positive' | 'negative' | NULL: how the definition used this clip
    ("feedback_score", pa.float32()),   # MaxSim to the nearest positives - 0.5 MaxSim to the nearest negatives
    ("query_score", pa.float32()),      # concept spotting of the query (NULL without one)
    ("threshold", pa.float32()),
    ("positives", pa.list_(pa.string())), ("negatives", pa.list_(pa.string())),   # lineage: the definition
    ("query", pa.string()),
    ("created_at", TS),                 # when the tag was defined
    ("scored_at", TS),                  # when these rows were computed (bike label / bike label --refresh)
    ("clips", pa.int32()),              # clips of the model the store held then
])
DERIVED: dict[str, tuple[str, pa.Schema]] = {"duplicates": (DEDUP_DIR, DUPLICATES),
                                             "user_labels": (USER_LABELS_DIR, USER_LABELS)}


def clip_id(video_id: str, index: int) -> str:
    return f"{video_id}/{index}"


def empty(table: str) -> pa.Table:
    return TABLES[table].empty_table()
