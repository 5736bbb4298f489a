"""Slow float64 transcription of the Sparse Transformer fixed pattern as LRA builds it, with a module's weights.

LRA ``sparse_attention.py``: ``build_mask`` ORs ``Fixed1Pattern(block_size)`` (``i // block == j // block``)
and ``Fixed2Pattern(block_size, c)`` (``j % block == 0 or j % block >= block - c``), ANDs the padding mask and
applies one softmax of q k * d^-1/2 over the allowed keys. Transcribed here with the departures that
models/attention/sparse.py states: bidirectional (no ``j <= i``), no ``j % block == 0`` column, no CLS row
and column; ``summary`` is c. The mask is built as LRA builds it, N x N, per batch item.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def sparse_mask(n: int, stride: int, summary: int) -> Tensor:
    """(N, N) bool: Fixed1 OR the summary columns of Fixed2 (True = query i may attend to key j)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    fixed1 = torch.div(i, stride, rounding_mode="floor") == torch.div(j, stride, rounding_mode="floor")
    fixed2 = torch.remainder(j, stride) >= stride - summary
    return (fixed1 | fixed2).expand(n, n)


def sparse_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """The layer's output (B, N, D): per query, softmax over the real keys the pattern allows."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    pattern = sparse_mask(n, module.stride, module.summary)
    out = torch.zeros_like(q)
    for bi in range(b):
        for i in range(n):
            keys = [j for j in range(n) if pattern[i, j] and real[bi, j]]
            if not real[bi, i] or not keys:
                continue
            for hi in range(h):
                scores = torch.stack([q[bi, hi, i] @ k[bi, hi, j] for j in keys]) * d**-0.5
                out[bi, hi, i] = torch.softmax(scores, dim=0) @ v[bi, hi, keys]
    return merge_and_project(module, out, mask)
