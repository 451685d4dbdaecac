"""Text features for BIKE (docs/model.md §2): end-of-text feature and all 77 token features of each prompt."""
from __future__ import annotations

import torch
from torch import nn

from .config import PROMPT_TEMPLATE


def class_prompts(names) -> list[str]:
    """``This is a video about {name}`` with each class name exactly as in the label list."""
    return [PROMPT_TEMPLATE.format(n) for n in names]


def text_features(clip: nn.Module, token_ids: torch.Tensor):
    """Run the CLIP text tower keeping every position.

    ``token_ids`` (C, L) → ``(cls (C, D), tokens (C, L, D))``: ``tokens`` is the final-LayerNorm output of
    all L positions (start, words, end, padding) times the text projection; ``cls`` is the row of the
    end-of-text token, i.e. exactly open_clip's ``encode_text``.
    """
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(token_ids).to(cast)                   # (C, L, W)
    x = x + clip.positional_embedding.to(cast)
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)                                            # (C, L, W)
    proj = clip.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj    # (C, L, D)
    pool = getattr(clip, "text_pool_type", "argmax")
    rows = torch.arange(x.shape[0], device=x.device)
    if pool == "argmax":                                            # EOT has the highest token id
        eot = token_ids.argmax(dim=-1)
    elif pool == "eos":
        eot = (token_ids == clip.text_eos_id).int().argmax(dim=-1)
    elif pool == "last":
        eot = torch.full_like(rows, x.shape[1] - 1)
    else:
        raise ValueError(f"text pooling {pool!r} has no end-of-text token; BIKE needs one")
    return x[rows, eot], x
