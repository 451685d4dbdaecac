"""Relevance feedback: re-rank with clips the user marked 👍 (positives) and 👎 (negatives).

A user who sees a result list can say "more like these, fewer like those". The examples are clips of the
store, so their per-frame embeddings are already stored (``clips.frame_embeddings``): nothing is decoded and
the model is not called. Two steps, both from the stored embeddings:

1. **Candidates (Rocchio).** Beside the query's own FAISS search, the index is searched with the Rocchio
   vector ``unit(mean(positives) - NEGATIVE_WEIGHT · mean(negatives))`` of the examples' clip vectors (the
   normalised mean of their frames, the space of the index), so the neighbours of the positives are
   re-ranked even when the query text finds none of them (random weights, or a query that names the
   wrong thing).
2. **Score.** Each candidate's *example score* is its MaxSim (index/rerank.py: for each example frame the
   best cosine among the candidate's frames, averaged) against the positives, minus ``NEGATIVE_WEIGHT``
   times the same against the negatives (:func:`example_scores`). When there is a query (text, ``clip=`` or
   ``like=``), its own re-rank score (concept spotting for text) is kept: both are standardised over the
   candidates (z-scores, so neither's scale decides) and combined as
   ``z(example score) + QUERY_WEIGHT · z(query score)`` (:func:`combine`). The examples weigh more than the
   query: they are the user's own judgement, and with random weights the text score is noise.

The results' ``score`` is that combination; the query's own score is kept in ``query_score`` and the example
score in ``feedback_score`` (index/search.py ``SearchResult``). ``bike label`` (index/usertags.py) scores
every stored clip the same way to make a tag from examples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rerank import example_vector, rerank_example

#: Weight of the negatives against the positives (Rocchio's gamma / beta).
NEGATIVE_WEIGHT = 0.5
#: Weight of the query's own (standardised) score against the examples' (standardised) score.
QUERY_WEIGHT = 0.5
#: Most feedback clips one search or label takes (positives and negatives together).
MAX_EXAMPLES = 200


class FeedbackError(ValueError):
    """Feedback clips that cannot be used (unknown ids, too many, a clip both positive and negative)."""


def parse_ids(value) -> "tuple[str, ...]":
    """``"a/0,b/1"`` or ``["a/0", "b/1,c/2"]`` or None → ("a/0", "b/1", ...) (blanks dropped, order kept, no repeats)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    out = [p.strip() for item in items for p in str(item).split(",")]
    return tuple(dict.fromkeys(p for p in out if p))


@dataclass
class Feedback:
    """The examples of one search or label: their ids and stored frame embeddings (float32, (T, D) each)."""
    positives: "tuple[str, ...]"
    negatives: "tuple[str, ...]"
    positive_frames: "list[np.ndarray]"
    negative_frames: "list[np.ndarray]"

    def __bool__(self) -> bool:
        return bool(self.positives or self.negatives)

    @classmethod
    def load(cls, positives, negatives, frames_of, what: str = "") -> "Feedback":
        """``frames_of(ids)`` → {clip_id: (T, D) array} for the ids the store holds. An id it lacks, a clip given
        as both positive and negative, or more than MAX_EXAMPLES clips is a :class:`FeedbackError`."""
        pos, neg = parse_ids(positives), parse_ids(negatives)
        both = sorted(set(pos) & set(neg))
        if both:
            raise FeedbackError(f"clip {both[0]} is given as both positive and negative")
        if len(pos) + len(neg) > MAX_EXAMPLES:
            raise FeedbackError(f"{len(pos) + len(neg)} feedback clips: at most {MAX_EXAMPLES}")
        got = frames_of(list(pos + neg)) if pos or neg else {}
        for kind, ids in (("positive", pos), ("negative", neg)):
            for c in ids:
                if c not in got:
                    raise FeedbackError(f"{kind} clip {c!r}: no such clip{what} (clip ids look like <video_id>/<n>)")
        as32 = lambda c: np.asarray(got[c], np.float32)  # noqa: E731
        return cls(pos, neg, [as32(c) for c in pos], [as32(c) for c in neg])

    def vector(self) -> "np.ndarray | None":
        """The Rocchio vector of the examples in the index's space (None without positives)."""
        if not self.positive_frames:
            return None
        v = np.mean([example_vector(f) for f in self.positive_frames], axis=0)
        if self.negative_frames:
            v = v - NEGATIVE_WEIGHT * np.mean([example_vector(f) for f in self.negative_frames], axis=0)
        n = float(np.linalg.norm(v))
        return (v / n if n > 0 else v).astype(np.float32)

    def scores(self, frames) -> np.ndarray:
        """Example score of N candidates ``frames`` (N, T, D): MaxSim to the positives (every positive frame
        against the candidate's frames, averaged) − NEGATIVE_WEIGHT · MaxSim to the negatives."""
        return example_scores(frames, self.positive_frames, self.negative_frames)


def _maxsim(frames, examples: "list[np.ndarray]") -> "np.ndarray | None":
    if not examples:
        return None
    n = len(frames)
    if all(e.shape == examples[0].shape for e in examples):
        return rerank_example(frames, np.concatenate(examples)).scores.astype(np.float64) if n else np.zeros(0)
    # examples of different lengths: average per example so each counts once
    return np.mean([rerank_example(frames, e).scores for e in examples], axis=0).astype(np.float64)


def example_scores(frames, positives: "list[np.ndarray]", negatives: "list[np.ndarray]") -> np.ndarray:
    """See :meth:`Feedback.scores`."""
    out = np.zeros(len(frames), np.float64)
    pos, neg = _maxsim(frames, positives), _maxsim(frames, negatives)
    if pos is not None:
        out += pos
    if neg is not None:
        out -= NEGATIVE_WEIGHT * neg
    return out


def zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return x
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def combine(example: np.ndarray, query: "np.ndarray | None") -> np.ndarray:
    """The final score: ``z(example) + QUERY_WEIGHT · z(query)`` (the example score alone without a query)."""
    if query is None:
        return zscore(example)
    return zscore(example) + QUERY_WEIGHT * zscore(query)
