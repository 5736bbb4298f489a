"""Synthesizer: attention weights synthesised without query-key products (Tay et al. 2021).

Paper: Tay, Bahri, Metzler, Juan, Zhao, Zheng, "Synthesizer: Rethinking Self-Attention in
Transformer Models", ICML 2021 (arXiv 2005.00743). Reference: LRA's ``synthesizer`` model
(``google-research/long-range-arena``, ``lra_benchmarks/models/synthesizer``, Flax), run there
with the dot product ignored, as here: there are no query or key projections.

Per head h, with values ``V = x W_v`` split into heads and logits ``A_h`` (N x N), the output is
``softmax(A_h + key padding bias) V_h``, heads merged, then W_o. The logits:

- ``dense`` (paper Eq. 1): a two-layer MLP of each token alone,
  ``A_h[i, :] = (relu(x_i W_1 + b_1)_h W_2 + b_2)[:N]``: ``W_1: D -> D`` (read per head as
  ``(H, d)``), ``W_2: d -> max_len`` shared by the heads, as LRA's ``dense_syn`` layers; key j of
  query i is column j. (LRA reshapes the ``(B, N, H, max_len)`` logits to ``(B, H, N, max_len)``
  without transposing, which mixes tokens and heads; here they are transposed.)
- ``random`` (paper Eq. 3): a learned table ``R: [H, max_len, max_len]``, ``A_h = R_h[:N, :N]``,
  the same for every input: the weights ignore the content of the sequence.

LRA's code applies no padding mask when the dot product is ignored; here the softmax runs over the
real keys only (padded keys get -inf), so padding never changes a real position, and a sequence
padded at the end gives exactly its unpadded output. Sequences up to ``max_len`` tokens; longer
ones are refused. The tables start as LRA's (LeCun normal: std 1 / sqrt(fan in)). Cost O(N^2) per
head in time and memory (``dense`` adds O(N D^2 + N d max_len)), as the method is: the softmax runs
in float32 at least.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.attention import register
from models.attention._common import merge_heads, split_heads, zero_padding
from models.attention.linformer import check_length, length_warnings

KINDS = ("dense", "random")


@register("synthesizer", minima={"max_len": 1}, follows_length=("max_len",), warnings=length_warnings)
class SynthesizerAttention(nn.Module):
    """``softmax(A + key padding bias) V`` with synthetic logits A (``kind``: dense | random).

    ``max_len``: the longest sequence (the logits' key axis). Dropout applies to the attention
    probabilities.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, max_len: int = 4096, kind: str = "dense"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"synthesizer kind must be one of {KINDS}, got '{kind}'")
        if max_len < 1:
            raise ValueError(f"synthesizer max_len must be a positive integer, got {max_len}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout, self.max_len, self.kind = dropout, max_len, kind
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        if kind == "dense":
            self.dense_1 = nn.Linear(d_model, d_model)  # W_1, b_1: D -> (H, d)
            self.dense_2 = nn.Linear(self.head_dim, max_len)  # W_2, b_2: d -> max_len, shared by heads
            nn.init.normal_(self.dense_2.weight, std=self.head_dim**-0.5)
            nn.init.zeros_(self.dense_2.bias)
        else:
            fan_in = n_heads * max_len  # LeCun normal on (H, max_len, max_len), as Flax counts fans
            self.random = nn.Parameter(torch.randn(n_heads, max_len, max_len) * fan_in**-0.5)  # (H, L, L)

    def logits(self, x: Tensor) -> Tensor:
        """Synthetic attention logits (B or 1, H, N, N) for x (B, N, D)."""
        n = x.shape[1]
        if self.kind == "random":
            return self.random[None, :, :n, :n]  # (1, H, N, N): no input in sight
        hidden = split_heads(torch.relu(self.dense_1(x)), self.n_heads)  # (B, H, N, d)
        return nn.functional.linear(hidden, self.dense_2.weight[:n], self.dense_2.bias[:n])  # (B, H, N, N)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); mask: (B, N) bool, True = real token. Returns (B, N, D), zero at padding."""
        n = x.shape[1]
        check_length("synthesizer", n, self.max_len)
        v = split_heads(self.v_proj(x), self.n_heads)  # (B, H, N, d)
        scores = self.logits(x)
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        if mask is not None:
            allowed = mask | ~mask.any(-1, keepdim=True)  # a fully padded sequence attends to all (zeroed below)
            scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1)  # (B, H, N, N)
        if self.dropout > 0 and self.training:
            probs = nn.functional.dropout(probs, self.dropout)
        o = torch.matmul(probs.to(v.dtype), v)  # (B, H, N, d)
        return zero_padding(self.out_proj(merge_heads(o)), mask)
