"""Relevance feedback: re-rank with clips the user marked 👍 (positives) and 👎 (negatives).

A user who sees a result list can say "more like these, fewer like those". The examples are clips of the
store, so their per-frame embeddings are already stored (``clips.frame_embeddings``): nothing is decoded and
the model is not called. Two steps, both from the stored embeddings:

1. **Candidates (Rocchio).** Beside the query's own FAISS search, the index is searched with the Rocchio
   vector ``unit(mean(positives) - NEGATIVE_WEIGHT · mean(negatives))`` of the examples' clip vectors (the
   normalised mean of their frames, the space of the index), so the neighbours of the positives are
   re-ranked even when the query text finds none of them (random weights, or a query that names the
   wrong thing).
2. **Score.** Each candidate's *example score* is its MaxSim (index/search/rerank.py: for each example frame the
   best cosine among the candidate's frames, averaged) against each positive, averaged over its
   ``nearest(P)`` = ceil(P / 4) most similar positives (a kind varies: a clip must be like some of the
   examples, not like their average), minus ``NEGATIVE_WEIGHT`` times the same against the negatives
   (:func:`example_scores`). When there is a query (text, ``clip=`` or ``like=``), its own re-rank score
   (concept spotting for text) is kept: both are standardised over the candidates (z-scores, so neither's
   scale decides) and combined as ``z(example score) + w · z(query score)`` (:func:`combine`), where
   ``w`` = QUERY_WEIGHT times the correlation of the two scores over the candidates, clipped at 0
   (:func:`query_weight`): the examples are the user's own judgement; a query that ranks like them adds its
   detail, one that does not (random weights: the text score is noise) drops out.

The results' ``score`` is that combination; the query's own score is kept in ``query_score`` and the example
score in ``feedback_score`` (index/search/search.py ``SearchResult``). ``bike label`` (index/search/usertags.py) scores
every stored clip the same way to make a tag from examples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rerank import example_vector

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
        """Example score of N candidates ``frames`` (N, T, D): MaxSim to the nearest positives −
        NEGATIVE_WEIGHT · MaxSim to the nearest negatives (module docstring)."""
        return example_scores(frames, self.positive_frames, self.negative_frames)


def _maxsim(frames, examples: "list[np.ndarray]") -> "np.ndarray | None":
    """Per candidate: the mean of its ``nearest(len(examples))`` best MaxSims against the examples."""
    if not examples:
        return None
    if not len(frames):
        return np.zeros(0)
    sims = _per_example(frames, examples)                                          # (P, N)
    m = nearest(len(examples))
    if m >= len(examples):
        return sims.mean(axis=0)
    return np.sort(sims, axis=0)[-m:].mean(axis=0)


def _per_example(frames, examples: "list[np.ndarray]") -> np.ndarray:
    """MaxSim of N candidates against each of P examples → (P, N): all example frames against all candidate
    frames in one product per chunk (no saliency: only the scores are needed)."""
    import torch
    from engine.model.spotting import l2norm
    from .rerank import CHUNK, _as_frames, _threads_for
    h = _as_frames(frames)
    e = l2norm(torch.as_tensor(np.concatenate(examples), dtype=torch.float32).reshape(-1, h.shape[-1]))
    bounds = np.cumsum([0] + [len(x) for x in examples])
    out = []
    with _threads_for(h.shape[0], h.device), torch.no_grad():
        e = e.to(h.device)
        for i in range(0, h.shape[0], CHUNK):
            best = torch.einsum("wd,ntd->nwt", e, l2norm(h[i:i + CHUNK])).max(dim=2).values       # (n, ΣTe)
            out.append(torch.stack([best[:, a:b].mean(dim=1) for a, b in zip(bounds[:-1], bounds[1:])]))
    return torch.cat(out, dim=1).cpu().numpy().astype(np.float64)


def nearest(p: int) -> int:
    """How many of ``p`` examples a candidate is compared with: its ceil(p / 4) most similar ones. A kind
    varies (colours, sizes, places): a clip needs to be like SOME of the positives, not like their average."""
    return max(1, -(-p // 4))


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


def query_weight(example: np.ndarray, query: np.ndarray) -> float:
    """QUERY_WEIGHT times how far the query agrees with the examples over these clips (the correlation of the
    two scores, clipped at 0): a query that ranks clips the way the examples do adds its detail; one that
    does not (random weights, or words naming something else) is left out instead of adding noise."""
    ze, zq = zscore(example), zscore(query)
    if len(ze) < 3:
        return QUERY_WEIGHT
    return QUERY_WEIGHT * max(0.0, float(np.mean(ze * zq)))


def combine(example: np.ndarray, query: "np.ndarray | None") -> np.ndarray:
    """The final score: ``z(example) + query_weight · z(query)`` (the example score alone without a query)."""
    if query is None:
        return zscore(example)
    return zscore(example) + query_weight(example, query) * zscore(query)
