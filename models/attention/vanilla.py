"""Exact softmax attention, the baseline every other mechanism is compared with.

``impl: sdpa`` uses torch's fused ``scaled_dot_product_attention`` (flash / memory-efficient
kernels); ``impl: naive`` materialises the (N, N) score matrix with einsum, as the LRA
paper's Transformer did, and is what memory comparisons call "vanilla naive".

``causal=True`` (self-pretraining's next-token objective, lra/spt.py): query i attends to keys
j <= i only (and real ones), so output i equals the non-causal output on the prefix x[:i+1].
Padding must follow the real tokens (a query with no real key at or before it has no output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention, key_mask_for_sdpa, masked_softmax_attention

IMPLS = ("sdpa", "naive")


@register("vanilla", causal=True)
class VanillaAttention(QKVAttention):
    """softmax(Q K^T / sqrt(d) + key padding bias [+ causal bias]) V per head, then W_o."""

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, impl: str = "sdpa", causal: bool = False):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if impl not in IMPLS:
            raise ValueError(f"vanilla impl must be one of {IMPLS}, got '{impl}'")
        self.impl, self.causal = impl, causal

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        key_mask = key_mask_for_sdpa(mask)  # (B, 1, 1, N), True = attend
        if self.causal:
            n = q.shape[-2]
            earlier = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()  # (N, N): key j <= query i
            key_mask = earlier if key_mask is None else key_mask & earlier  # (B, 1, N, N)
        p = self.dropout if self.training else 0.0
        if self.impl == "naive":
            return masked_softmax_attention(q, k, v, key_mask, p, self.training)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)
