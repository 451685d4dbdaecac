"""The model stage of ``bike tag``: batches of decoded clips (from any videos) → :class:`ClipResult` lists.

:class:`Scorer` is plain Python (tested without Ray); ``jobs.tag.stages.ScoreStage`` loads it in its ``setup()``, in a
Ray actor (``jobs.tag.rayrunner``) or in this process (``jobs.tag.runner``), so the model
is loaded once per actor (one per GPU when there are GPUs). A call takes several frame chunks, possibly of
different videos, scores them as one batch and hands back one result list per chunk.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from engine.model.config import DEFAULTS
from engine.model.fingerprint import frame_prints

from .records import clip_results, model_facts


class Scorer:
    """A loaded BIKE model and label set. ``model_kwargs`` are :func:`engine.load_model`'s arguments."""

    def __init__(self, model_kwargs: dict, labels, top_k: int = DEFAULTS.top_k, threads: "int | None" = None):
        import engine
        if threads:
            torch.set_num_threads(int(threads))
        self.top_k = top_k
        self.busy_s = 0.0                                   # time spent scoring (for the job's summary)
        self.error: "Exception | None" = None
        try:
            self.model = engine.load_model(**model_kwargs)
            self.labels = engine.load_labels(labels)
            self.model.label_features(self.labels)          # encode the label prompts once, up front
        except Exception as e:  # noqa: BLE001 - kept and raised by facts(): as a Ray actor, a failing
            self.error = e      # constructor would only surface as an opaque "actor died"

    def facts(self):
        """The model's facts (``records.model_facts``); raises the error that loading the model met."""
        if self.error is not None:
            raise self.error
        return model_facts(self.model)

    def score(self, spans_per_chunk, *chunks) -> list:
        """``chunks`` uint8 (n_i, T, S, S, 3) with their ``spans_per_chunk`` → [[ClipResult] per chunk]."""
        if not chunks:
            return []
        t0 = time.perf_counter()
        frames = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        raw = self.model.encode_frames(self.model.preprocess(frames))
        results = clip_results(self.model.score_features(raw, self.labels),
                               [s for spans in spans_per_chunk for s in spans], self.top_k)
        if frames.ndim == 5 and len(results) == frames.shape[0]:      # (n, T, S, S, 3): one view per clip
            for r, p in zip(results, frame_prints(frames)):
                r.prints = p
        out, i = [], 0
        for spans in spans_per_chunk:
            out.append(results[i:i + len(spans)])
            i += len(spans)
        self.busy_s += time.perf_counter() - t0
        return out

    def busy(self) -> float:
        """Seconds spent scoring since the actor started."""
        return self.busy_s
