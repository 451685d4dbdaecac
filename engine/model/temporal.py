"""The temporal transformer ("video header") of docs/model.md §3.

    H = blocks(X + P[:T]) + X          X: raw frame features (B, T, D), P: learned position table (77, D)

Six pre-LayerNorm residual blocks (``x + MHA(LN1(x))``, ``x + MLP(LN2(x))``, MLP D→4D→D with QuickGELU),
LayerNorm epsilon 1e-12, no final LayerNorm, no attention mask. The parameter names are exactly the
released BIKE ``fusion_model_state_dict`` keys, so a released header loads with ``load_state_dict``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

LN_EPS = 1e-12


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # (B, T, D)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Blocks(nn.Module):
    """Holds ``resblocks`` so the keys read ``transformer.resblocks.{i}.…`` as in the released code."""

    def __init__(self, width: int, heads: int, layers: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class TemporalTransformer(nn.Module):
    """BIKE's video header. ``width`` = CLIP embedding dim D, ``heads`` = CLIP text width / 64."""

    def __init__(self, width: int, heads: int, layers: int = 6, context_length: int = 77):
        super().__init__()
        self.width, self.heads, self.layers = width, heads, layers
        self.frame_position_embeddings = nn.Embedding(context_length, width)
        self.transformer = _Blocks(width, heads, layers)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.MultiheadAttention):
            nn.init.zeros_(module.in_proj_bias)      # default in-projection init, bias 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # x: (B, T, D) raw frame features
        t = x.shape[1]
        if t > self.frame_position_embeddings.num_embeddings:
            raise ValueError(f"{t} frames exceed the header's position table "
                             f"({self.frame_position_embeddings.num_embeddings} rows)")
        pos = self.frame_position_embeddings.weight[:t].to(x.dtype)   # (T, D)
        return self.transformer(x + pos) + x                          # residual adds X before P

    @classmethod
    def from_state_dict(cls, state: dict, heads: int) -> "TemporalTransformer":
        """Build a header shaped like ``state`` (released layout, ``module.`` already stripped) and load it."""
        rows, width = state["frame_position_embeddings.weight"].shape
        layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
        header = cls(width, heads, layers=layers, context_length=rows)
        header.load_state_dict(state, strict=True)
        return header
