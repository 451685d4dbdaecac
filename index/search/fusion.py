"""The rule that merges ranked lists of several channels into one: weighted reciprocal rank fusion (RRF).

Each channel (``visual``, ``subtitle``, ``ocr``, ``speech``) ranks its own hits, best first. An item's fused
score is

    fused(item) = Σ over channels c that found it:  weight[c] / (K + rank_c(item))        (rank from 1)

with ``K`` = :data:`K` (60, the value of the original RRF paper: it flattens the head so that one channel's
first hit does not swamp another channel's). Only ranks count, never raw scores: a BM25 score and a
concept-spotting logit are not on one scale. An item found by two channels (the clip the visual search ranked
AND whose subtitles hold the words) adds both terms and rises. Ties keep the order of first appearance.
Weights default to 1 per channel (:data:`DEFAULT_WEIGHTS`); a weight of 0 removes a channel's influence.
"""
from __future__ import annotations

#: The RRF constant.
K = 60
#: Default weight of each channel.
DEFAULT_WEIGHTS = {"visual": 1.0, "subtitle": 1.0, "ocr": 1.0, "speech": 1.0}
CHANNELS = tuple(DEFAULT_WEIGHTS)


def parse_weights(spec: "str | dict | None") -> "dict[str, float]":
    """``"visual=1,speech=0.5"`` (or a dict) → the full weight table; raises ValueError naming a bad entry."""
    weights = dict(DEFAULT_WEIGHTS)
    if not spec:
        return weights
    items = spec.items() if isinstance(spec, dict) else (
        part.split("=", 1) if "=" in part else (part, None) for part in str(spec).split(",") if part.strip())
    for name, value in items:
        name = str(name).strip()
        if name == "text":
            names = ["subtitle", "ocr", "speech"]
        elif name in weights:
            names = [name]
        else:
            raise ValueError(f"unknown channel {name!r} (channels: {', '.join(CHANNELS)}, text)")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}={value}: give a number, e.g. {name}=0.5") from None
        if not (w >= 0 and w < float("inf")):
            raise ValueError(f"{name}={value}: a weight is a finite number >= 0")
        for n in names:
            weights[n] = w
    return weights


def rrf(ranked: "dict[str, list]", weights: "dict[str, float] | None" = None, k: int = K
        ) -> "list[tuple[object, float, dict[str, int]]]":
    """Fuse ``{channel: [item key, ...] best first}`` → ``[(key, fused score, {channel: rank})]`` best first.
    A key repeated within one channel counts at its best rank."""
    weights = weights or DEFAULT_WEIGHTS
    scores: dict = {}
    ranks: dict = {}
    order: dict = {}
    for channel, keys in ranked.items():
        w = float(weights.get(channel, 1.0))
        for r, key in enumerate(keys, 1):
            got = ranks.setdefault(key, {})
            if channel in got:
                continue
            got[channel] = r
            order.setdefault(key, len(order))
            scores[key] = scores.get(key, 0.0) + w / (k + r)
    return sorted(((key, scores[key], ranks[key]) for key in scores), key=lambda x: (-x[1], order[x[0]]))
