"""Slow float64 transcription of BigBird's forward (google-research/bigbird, ``bigbird/core/attention.py``).

The reference's ``bigbird_simulated_attention`` builds the full N x N mask of the block-sparse pattern
and runs dense softmax attention under it; ``bigbird_block_sparse_attention`` computes the same thing by
blocks. This is the dense form, written per batch item, head and query block with Python sets, with
the pattern our module's docstring states (the ``g`` first blocks global; window ``i-h..i+h``; the given
random blocks) and its padding rules (decisions from each sequence's extent; covered sequences exact).
Only the module's parameters and options are read, never its attention code; the random blocks are
passed in (the module exposes its draw).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def bigbird_allowed(n: int, extent: int, m: int, w: int, g: int, r: int, rand) -> Tensor:
    """(N, N) bool: which key each query may see, for one sequence and head. ``rand[i - g]``: the random
    blocks of query block i (a list of ints)."""
    nb, half = -(-n // m), (w - 1) // 2
    allowed = torch.zeros(n, n, dtype=torch.bool)
    if -(-extent // m) <= w + g + r:
        allowed[:] = True  # the blocks cover the real tokens: full attention
        return allowed
    for i in range(nb):
        rows = slice(i * m, (i + 1) * m)
        if i < g:
            allowed[rows] = True
            continue
        blocks = set(range(g)) | {j for j in range(i - half, i + half + 1) if 0 <= j < nb} | set(rand[i - g])
        for j in blocks:
            allowed[rows, j * m : (j + 1) * m] = True
    return allowed


def bigbird_reference(module, x: Tensor, mask: Tensor | None, rand: Tensor) -> Tensor:
    """BigBird's output (B, N, D) with ``module``'s weights; ``rand`` (B, H, nb - g, r) its random blocks.

    Per sequence and head: scores q k^T / sqrt(d) where the pattern allows and the key is real, -inf
    elsewhere; softmax per row (a row without any allowed real key gives zeros); then the output
    projection, zero at padding.
    """
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    m, w, g, r = module.block_size, module.window_blocks, module.global_blocks, module.random_blocks
    out = torch.zeros_like(q)
    for bi in range(b):
        positions = real[bi].nonzero()
        extent = int(positions.max()) + 1 if len(positions) else 0
        for hi in range(h):
            blocks = rand[bi, hi].tolist() if r else [[] for _ in range(-(-n // m) - g)]
            allowed = bigbird_allowed(n, extent, m, w, g, r, blocks) & real[bi][None, :]
            scores = (q[bi, hi] @ k[bi, hi].T / math.sqrt(d)).masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
            out[bi, hi] = probs @ v[bi, hi]
    return merge_and_project(module, out, mask)
