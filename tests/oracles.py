"""Independent reference computations the tests compare against."""

from __future__ import annotations

import torch
from torch import Tensor


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Exact attention on split heads, written out the plain way. q, k, v: (B, H, N, d); mask (B, N)."""
    d = q.shape[-1]
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / d**0.5
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.einsum("bhij,bhjd->bhid", torch.softmax(scores, dim=-1), v)


def vanilla_with_projections(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """Exact softmax attention using ``module``'s own q/k/v/out projections. Returns (B, N, D)."""
    b, n, dm = x.shape
    h = module.n_heads

    def split(t):
        return t.view(b, n, h, dm // h).transpose(1, 2)

    o = softmax_attention(split(module.q_proj(x)), split(module.k_proj(x)), split(module.v_proj(x)), mask)
    y = module.out_proj(o.transpose(1, 2).reshape(b, n, dm))
    if mask is not None:
        y = y * mask[..., None]
    return y
