"""Sparse Transformer attention, the fixed pattern, blocked (LRA's ``sparse_transformer`` model).

Paper: Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse Transformers"
(arXiv 1904.10509), the "fixed" pattern; as LRA ran it (Tay et al., arXiv 2011.04006). Reference
code: LRA's ``lra_benchmarks/models/sparse_transformer`` (``sparse_attention.py``, Flax).

How LRA's code defines the pattern: an N x N boolean mask, the union of two patterns
(``Fixed1Pattern(block_size)`` and ``Fixed2Pattern(block_size, c)``), then AND with the padding mask:

    Fixed1: floor(i / stride) == floor(j / stride)                      (the query's own block)
    Fixed2: j mod stride == 0  or  j mod stride >= stride - c          (summary columns)
    both AND j <= i  (every LRA pattern is lower triangular, in the encoder too)

and with CLS pooling the mask is built for positions 1..N-1 and row 0 and column 0 are set to
True (the CLS token attends to all and is attended by all). The attention's default is stride 128,
c = 32; LRA's training code (``get_model`` in ``lra_benchmarks/utils/train_utils.py``) passes
``block_size=50, c=10``.

Ours, as baselines.md specifies it for an encoder (bidirectional): query i attends, in one
softmax, to the real keys

    K(i) = { j : floor(j / stride) == floor(i / stride) }  u  { j : j mod stride >= stride - summary }

i.e. its own block of ``stride`` tokens and the last ``summary`` tokens of every block (the summary
of each block), each key once (the query's own block's summary is not counted twice). Where we
follow LRA: the block structure (Fixed1) and the summary columns of Fixed2 (``summary`` = LRA's c),
in one softmax. Where we depart: no ``j <= i`` restriction (the LRA encoder is causal inside the
pattern; baselines.md asks for a bidirectional encoder), no ``j mod stride == 0`` column, and no
special row and column for the CLS token (position 0 is an ordinary token of block 0).

Blocked, not a mask: with ``models.attention.blocks.block_attention`` each block of ``stride``
queries attends to its own block's non-summary keys plus E = ceil(N / stride) * summary shared
summary keys (the last ``summary`` rows of every block, gathered once). Time and memory
O(N (stride + E) d): linear in N for a fixed number of summary keys, and N^2 summary / stride in
general: the pattern itself gives each query N summary / stride keys (the paper picks stride ~
sqrt(N)). Padding: padded keys are masked in both parts; the blocks start at position 0, so the
summary positions do not move when padding is appended. A block larger than N is capped at N: one
block of all tokens, exact softmax attention (the limit stride >= N).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention
from models.attention.blocks import block_attention, n_blocks, to_blocks, valid_blocks


def summary_keys(t: Tensor, block: int, summary: int) -> Tensor:
    """The last ``summary`` rows of every block of ``block`` tokens: (B, H, N, d) -> (B, H, M summary, d)."""
    b, h, _, d = t.shape
    tail = to_blocks(t, block)[:, :, :, block - summary :]  # (B, M, H, s, d)
    return tail.transpose(1, 2).reshape(b, h, -1, d)


@register("sparse", minima={"stride": 1, "summary": 1}, exact_at_length="stride", follows_length=("stride",))
class SparseAttention(QKVAttention):
    """Fixed sparse pattern: each query sees its block of ``stride`` tokens and the last ``summary`` of every block.

    forward(x (B, N, D), mask (B, N) bool, True = real token) -> (B, N, D), zero at padding.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, stride: int = 128, summary: int = 8):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if stride < 1 or not 1 <= summary <= stride:
            raise ValueError(
                f"sparse needs stride >= 1 and 1 <= summary <= stride, got stride={stride}, summary={summary}"
            )
        self.stride, self.summary = stride, summary

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, _, n, _ = q.shape
        m = min(self.stride, n)  # one block covers a short sequence
        s = min(self.summary, m)
        in_summary = torch.arange(n, device=q.device) % m >= m - s  # (N,): the summary positions
        valid = torch.ones(b, n, dtype=torch.bool, device=q.device) if mask is None else mask
        own = valid & ~in_summary  # (B, N): summary keys come through the shared set, once
        summary_valid = valid_blocks(mask, b, n, m, q.device)[:, :, m - s :].reshape(b, n_blocks(n, m) * s)
        extra = (summary_keys(k, m, s), summary_keys(v, m, s), summary_valid)  # (B, H, E, d) x 2, (B, E)
        p = self.dropout if self.training else 0.0
        return block_attention(q, k, v, block=m, valid=own, extra=extra, dropout=p)
