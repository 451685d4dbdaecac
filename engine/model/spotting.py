"""Video Concept Spotting (docs/model.md §4): category-dependent temporal saliency.

For every class c (a text with end-of-text feature ``cls[c]`` and 77 token features ``tokens[c]``) and
every video b (frame features ``H[b]`` after the temporal header)::

    Hn = H / ||H||            (B, T, D)     per frame
    Wn = tokens / ||tokens||  (C, 77, D)    per token position, padding positions included
    Cn = cls / ||cls||        (C, D)
    S[c,b,w,t] = <Wn[c,w], Hn[b,t]>                       (C, B, 77, T)
    s[c,b,t]   = mean_w softmax_t(S[c,b,w,:] / tau)       (C, B, T)  saliency, sums to 1 over t
    V[c,b]     = sum_t s[c,b,t] Hn[b,t]                   (C, B, D)  not re-normalised
    logit[b,c] = <V[c,b], Cn[c]>                          (B, C)

The (C·B·77·T) similarity tensor is built in chunks over classes and videos so memory stays bounded for
thousands of classes and hundreds of videos.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

#: Elements of one similarity chunk (C_chunk · B_chunk · 77 · T): 2^24 floats = 64 MB in float32.
CHUNK_ELEMENTS = 1 << 24


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| over the last axis, exactly as the released code (no epsilon clamp)."""
    return x / x.norm(dim=-1, keepdim=True)


@dataclass
class Spotting:
    logits: torch.Tensor       # (B, C)
    saliency: torch.Tensor     # (B, C, T), rows sum to 1
    frames: torch.Tensor       # (B, T, D), the L2-normalised frame features Hn

    @property
    def embeddings(self) -> torch.Tensor:
        """Saliency-weighted embeddings V (B, C, D), computed on access (B·C·D can be large)."""
        return torch.einsum("bct,btd->bcd", self.saliency, self.frames)

    def embedding(self, c: "torch.Tensor | int") -> torch.Tensor:
        """V for one class per video: ``c`` an int or a (B,) index tensor → (B, D)."""
        if isinstance(c, int):
            c = torch.full((self.frames.shape[0],), c, dtype=torch.long, device=self.frames.device)
        s = self.saliency[torch.arange(len(c), device=c.device), c]           # (B, T)
        return torch.einsum("bt,btd->bd", s, self.frames)


def concept_spotting(frames: torch.Tensor, tokens: torch.Tensor, cls: torch.Tensor, tau: float = 0.01,
                     chunk_elements: int = CHUNK_ELEMENTS) -> Spotting:
    """VCS of videos ``frames`` (B, T, D) against texts ``tokens`` (C, L, D) / ``cls`` (C, D)."""
    if frames.dim() != 3 or tokens.dim() != 3 or cls.dim() != 2:
        raise ValueError(f"expected frames (B,T,D), tokens (C,L,D), cls (C,D); got "
                         f"{tuple(frames.shape)}, {tuple(tokens.shape)}, {tuple(cls.shape)}")
    dtype = torch.promote_types(frames.dtype, torch.float32)
    hn = l2norm(frames.to(dtype))
    wn = l2norm(tokens.to(dtype))
    cn = l2norm(cls.to(dtype))
    (b_all, t, _), (c_all, length, _) = hn.shape, wn.shape
    per_pair = length * t
    b_step = max(1, min(b_all, chunk_elements // per_pair))
    c_step = max(1, chunk_elements // (per_pair * b_step))
    logits = hn.new_empty(b_all, c_all)
    saliency = hn.new_empty(b_all, c_all, t)
    for b0 in range(0, b_all, b_step):
        h = hn[b0:b0 + b_step]                                               # (b, T, D)
        for c0 in range(0, c_all, c_step):
            # (c, b, T, L): the softmax runs over frames T with the words L contiguous in memory, which
            # vectorises over L (a softmax over a last dim of size T = 8 was 5x slower on CPUs)
            sims = torch.einsum("cwd,btd->cbtw", wn[c0:c0 + c_step], h)       # (c, b, T, L)
            s = torch.softmax(sims / tau, dim=2).mean(dim=3)                  # (c, b, T)
            v = torch.einsum("cbt,btd->cbd", s, h)                            # (c, b, D)
            logit = torch.einsum("cbd,cd->cb", v, cn[c0:c0 + c_step])        # (c, b)
            logits[b0:b0 + b_step, c0:c0 + c_step] = logit.T
            saliency[b0:b0 + b_step, c0:c0 + c_step] = s.transpose(0, 1)
    return Spotting(logits=logits, saliency=saliency, frames=hn)
