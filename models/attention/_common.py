"""Pieces shared by the attention modules: head split/merge and the q/k/v/o projections."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, N, D) -> (B, H, N, D/H)."""
    b, n, _ = x.shape
    return x.view(b, n, n_heads, -1).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, N, d) -> (B, N, H*d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def zero_padding(y: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the rows of y (B, N, D) at padded positions (mask False); padding never leaks NaN."""
    if mask is None:
        return y
    return y.masked_fill(~mask[..., None], 0.0)


class QKVAttention(nn.Module):
    """Base for mechanisms with the usual projections W_q, W_k, W_v and W_o.

    Subclasses implement ``attend(q, k, v, mask) -> (B, H, N, d)`` on split heads; this class
    projects, merges heads, applies W_o and zeroes padded positions.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, D) -> q, k, v each (B, H, N, d)."""
        h = self.n_heads
        return split_heads(self.q_proj(x), h), split_heads(self.k_proj(x), h), split_heads(self.v_proj(x), h)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); mask: (B, N) bool, True = real token. Returns (B, N, D), zero at padding."""
        q, k, v = self.project(x)
        o = self.attend(q, k, v, mask)  # (B, H, N, d)
        return zero_padding(self.out_proj(merge_heads(o)), mask)


def key_mask_for_sdpa(mask: Tensor | None) -> Tensor | None:
    """(B, N) True = real -> (B, 1, 1, N) boolean SDPA mask (True = attend).

    A row with no real key at all (a fully padded sequence) attends to everything instead, so
    softmax never sees only -inf (its outputs are zeroed later anyway).
    """
    if mask is None:
        return None
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask[:, None, None, :]


def masked_softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, dropout: float = 0.0, training: bool = False
) -> Tensor:
    """Plain einsum softmax attention, scores and softmax in float32 at least (float64 stays float64).

    q: (..., Nq, d), k, v: (..., Nk, d), key_mask broadcastable to (..., Nq, Nk) bool (True = attend).
    Rows whose keys are all masked return zeros, never NaN.
    """
    scale = q.shape[-1] ** -0.5
    ct = torch.promote_types(q.dtype, torch.float32)  # half types up to float32; float64 is kept
    scores = torch.einsum("...qd,...kd->...qk", q.to(ct), k.to(ct)) * scale  # (..., Nq, Nk)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if key_mask is not None:
        probs = probs.nan_to_num(0.0)
    if dropout > 0 and training:
        probs = torch.nn.functional.dropout(probs, dropout)
    return torch.einsum("...qk,...kd->...qd", probs.to(v.dtype), v)
