"""Slow float64 transcription of the local attention reference forward, with a module's weights.

``lucidrains/local-attention`` ``LocalAttention.forward`` (non-causal, ``look_backward = look_forward =
neighbours``, ``autopad``, ``input_mask``): the sequence in windows of ``window_size``; each query's keys
are the tokens of its window and of ``neighbours`` windows on each side (``look_around``; slots past
either end are masked as ``pad_value``), padded keys masked; softmax of q k * d^-1/2; times v. Written per
batch item, head and query with explicit index sets; only the module's parameters are read.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def local_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """The layer's output (B, N, D): per query i, softmax over the real j with |j // w - i // w| <= neighbours."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    w, around = module.window, module.neighbours
    out = torch.zeros_like(q)
    for bi in range(b):
        for i in range(n):
            keys = [j for j in range(n) if abs(j // w - i // w) <= around and real[bi, j]]
            if not real[bi, i] or not keys:
                continue  # a padded query: zeroed by the output projection step
            for hi in range(h):
                scores = torch.stack([q[bi, hi, i] @ k[bi, hi, j] for j in keys]) * d**-0.5
                out[bi, hi, i] = torch.softmax(scores, dim=0) @ v[bi, hi, keys]
    return merge_and_project(module, out, mask)
