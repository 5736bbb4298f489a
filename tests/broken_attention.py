"""Mechanisms for ``lra-attention check`` (tests/test_attention_check.py): one that keeps every rule and
three that each break one, as a researcher's first draft might.

``Exact`` is softmax attention, ``softmax(q k^T / sqrt(d) + key-padding bias) v``, zero at padding.
``LeaksPadding`` forgets the key mask (real queries attend to padded tokens); ``DeadParameter`` holds a
parameter its forward never uses; ``NoisyInEval`` applies dropout in eval mode too; ``PaddingNotZeroed``
leaves values at padded positions; ``NaNWhenEmpty`` gives a query without any real key an all -inf
softmax (NaN that the zeroed rows hide in the output but not in the gradients); ``ReturnsFloat32``
casts its output; ``NaNWithoutMask`` breaks when called without a mask; ``WrongShape`` drops a position;
``LengthScaled`` scales its output with the padded length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Exact(nn.Module):
    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.n_heads, self.dropout, self.scale = n_heads, dropout, scale
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def key_mask(self, mask: Tensor | None, n: int) -> Tensor | None:
        """(B, 1, 1, N) True = attend, plus each query's own key so a fully padded row stays finite."""
        if mask is None:
            return None
        return mask[:, None, None, :] | torch.eye(n, dtype=torch.bool, device=mask.device)

    def mix(self, o: Tensor) -> Tensor:
        return o

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, d_model = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # each (B, H, N, d)
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(self.scale * q, k, v, attn_mask=self.key_mask(mask, n), dropout_p=p)
        y = self.out(self.mix(o).transpose(1, 2).reshape(b, n, d_model))  # (B, N, D)
        return y if mask is None else y.masked_fill(~mask[..., None], 0.0)


class LeaksPadding(Exact):
    def key_mask(self, mask: Tensor | None, n: int) -> Tensor | None:
        return None  # the bug: padded keys are attended to


class DeadParameter(Exact):
    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        self.gate = nn.Parameter(torch.ones(d_model))  # the bug: never used in forward


class NoisyInEval(Exact):
    def mix(self, o: Tensor) -> Tensor:
        return F.dropout(o, self.dropout, training=True)  # the bug: dropout whatever the mode


class PaddingNotZeroed(Exact):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        y = super().forward(x, mask)
        return y if mask is None else y + (~mask[..., None]).to(y.dtype)  # the bug: padding is not zero


class NaNWhenEmpty(Exact):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, d_model = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # each (B, H, N, d)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, H, N, N)
        if mask is not None:  # the bug: a sequence without real keys gets a softmax over only -inf
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        y = self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d_model))  # (B, N, D)
        return y if mask is None else y.masked_fill(~mask[..., None], 0.0)


class ReturnsFloat32(Exact):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return super().forward(x, mask).float()  # the bug: float64 in, float32 out


class NaNWithoutMask(Exact):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        y = super().forward(x, mask)
        return y * float("nan") if mask is None else y  # the bug: only the masked call is right


class WrongShape(Exact):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return super().forward(x, mask)[:, 1:]  # the bug: one position short


class LengthScaled(Exact):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return super().forward(x, mask) * (x.shape[1] / 64)  # the bug: depends on the padded length
