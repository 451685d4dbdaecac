"""Video-Attributes Association (docs/model.md §5): the video → text direction.

1. A lexicon of attribute phrases (default: the Kinetics-400 class names), each embedded by the frozen CLIP
   text tower (end-of-text feature of the phrase itself).
2. For a video: the mean of its raw frame features, cosine against every lexicon entry, top K = 5.
3. The attribute sentence ``This is a video about `` + the K phrases joined by ``,`` (no spaces).
4. Score against each class: cosine of the sentence's end-of-text feature and the class prompt's, either
   directly (zero-shot) or through the two trained MLP heads :class:`AttributeHead`.
5. Fusion with the video branch: ``P = 0.7 · softmax(video logits) + 0.3 · softmax(attribute scores)``,
   or one branch alone (``branches``).

The math in words: docs/model.md §5.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ATTRIBUTE_PREFIX, DEFAULTS
from .spotting import l2norm


def attribute_sentence(phrases: "list[str] | tuple[str, ...]") -> str:
    return ATTRIBUTE_PREFIX + ",".join(phrases)


def top_attributes(frame_features: torch.Tensor, lexicon: torch.Tensor, k: int = DEFAULTS.attributes_k):
    """Top-k lexicon entries for each video: ``frame_features`` (B, T, D) raw, ``lexicon`` (N, D).

    Returns ``(scores (B, k), indices (B, k))``: cosine of the mean frame feature against each entry.
    """
    video = l2norm(frame_features.float().mean(dim=1))                  # (B, D)
    sims = video @ l2norm(lexicon.float()).T                            # (B, N)
    return sims.topk(min(k, sims.shape[1]), dim=1)


class AttributeHead(nn.Module):
    """The trained attributes branch: ``sentence_fc`` on the sentence, ``query_fc`` on the class prompts.

    Parameter names follow the released code (``query_fc.0.weight`` …) so its weights load unchanged.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query_fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.sentence_fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, sentences: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(B, D) sentence and (C, D) class end-of-text features (already L2-normalised) → cosine (B, C)."""
        return l2norm(self.sentence_fc(sentences)) @ l2norm(self.query_fc(classes)).T


def attribute_scores(sentences: torch.Tensor, classes: torch.Tensor, head: "AttributeHead | None" = None):
    """Attributes-branch scores (B, C). Without a trained head: cos(sentence, class)."""
    a, c = l2norm(sentences.float()), l2norm(classes.float())
    if head is None:
        return a @ c.T
    return head(a.to(next(head.parameters()).dtype), c.to(next(head.parameters()).dtype)).float()


#: Which branches produce the score: the video branch alone, the attributes branch alone, or their fusion.
BRANCHES = ("video", "attributes", "fused")


def fuse(video_logits: torch.Tensor, attr_scores: "torch.Tensor | None", branches: str = "fused",
         video_weight: float = DEFAULTS.video_weight, attribute_weight: float = DEFAULTS.attribute_weight):
    """Class probabilities from the branches (temperature-1 softmax of raw scores; docs/model.md §5, §8).

    ``branches``: ``fused`` = 0.7 · video + 0.3 · attributes (video alone when ``attr_scores`` is None),
    ``video`` = the video branch alone, ``attributes`` = the attributes branch alone.
    Returns ``(probs, video_probs, attribute_probs)``; ``attribute_probs`` is None without attribute scores.
    """
    if branches not in BRANCHES:
        raise ValueError(f"branches must be one of {', '.join(BRANCHES)}, got {branches!r}")
    pv = torch.softmax(video_logits.float(), dim=-1)
    pa = None if attr_scores is None else torch.softmax(attr_scores.float(), dim=-1)
    if branches == "attributes":
        if pa is None:
            raise ValueError("branches='attributes' needs attribute scores")
        return pa, pv, pa
    if branches == "video" or pa is None:
        return pv, pv, pa
    return video_weight * pv + attribute_weight * pa, pv, pa
