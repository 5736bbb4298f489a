"""Slow float64 transcription of Sparse Sinkhorn attention's forward (Tay et al. 2020).

Follows the paper's formulation as lucidrains ``SinkhornAttention.forward`` writes it (sorted buckets
``einsum('buv,bvtd->butd', R, keys)`` concatenated to the own bucket, one softmax) with LRA's sorting
network (a Dense on the sum of each block's keys) and LRA's Sinkhorn order (normalise over axis 2, then
axis 1), per batch item, head, block and query with explicit sums. Padding as the module docstring states:
the sorting runs on the blocks that hold a real token only; a sorted position is a key when some real block
has a real token there. Only the module's parameters are read, never its attention code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def sinkhorn_matrix(logits: list[list[Tensor]], iterations: int) -> list[list[Tensor]]:
    """exp of ``iterations`` rounds of row then column log-normalisation of a square list-of-lists matrix."""
    n = len(logits)
    r = [[logits[a][c] for c in range(n)] for a in range(n)]
    for _ in range(iterations):
        for a in range(n):
            lse = torch.log(sum(torch.exp(r[a][c]) for c in range(n)))
            r[a] = [r[a][c] - lse for c in range(n)]
        for c in range(n):
            lse = torch.log(sum(torch.exp(r[a][c]) for a in range(n)))
            for a in range(n):
                r[a][c] = r[a][c] - lse
    return [[torch.exp(r[a][c]) for c in range(n)] for a in range(n)]


def _softmax_sum(q_i: Tensor, keys: list[Tensor], values: list[Tensor]) -> Tensor:
    scores = torch.stack([q_i @ k for k in keys]) / math.sqrt(q_i.shape[0])
    weights = torch.softmax(scores, dim=0)
    return sum(weights[t] * values[t] for t in range(len(keys)))


def sinkhorn_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """Sinkhorn attention with ``module``'s weights: (B, N, D), zero at padding."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    bs = module.block_size
    nb = math.ceil(n / bs)
    w = module.sort_net.weight  # (max_blocks, d): output i scores slot i
    out = torch.zeros_like(q)

    def positions(j):
        return [j * bs + t for t in range(bs)]  # may run past n: those are padding

    def is_real(bi, pos):
        return pos < n and bool(real[bi, pos])

    for bi in range(b):
        blocks = [j for j in range(nb) if any(is_real(bi, p) for p in positions(j))]
        for hi in range(h):

            def key(pos, bi=bi, hi=hi):
                return k[bi, hi, pos] if is_real(bi, pos) else torch.zeros(d, dtype=x.dtype)

            def value(pos, bi=bi, hi=hi):
                return v[bi, hi, pos] if is_real(bi, pos) else torch.zeros(d, dtype=x.dtype)

            summary = {j: sum(key(p) for p in positions(j)) for j in blocks}
            logits = [[(w[i] @ summary[j]) / module.temperature for i in blocks] for j in blocks]
            perm = sinkhorn_matrix(logits, module.iterations)  # perm[a][c]: block blocks[a] into slot blocks[c]
            for c, i in enumerate(blocks):
                own = [p for p in positions(i) if is_real(bi, p)]
                srt = [t for t in range(bs) if any(is_real(bi, j * bs + t) for j in blocks)]
                sorted_k = [sum(perm[a][c] * key(j * bs + t) for a, j in enumerate(blocks)) for t in srt]
                sorted_v = [sum(perm[a][c] * value(j * bs + t) for a, j in enumerate(blocks)) for t in srt]
                own_k, own_v = [key(p) for p in own], [value(p) for p in own]
                for p in own:
                    q_i = q[bi, hi, p]
                    if module.lra_two_softmax:
                        out[bi, hi, p] = _softmax_sum(q_i, own_k, own_v) + _softmax_sum(q_i, sorted_k, sorted_v)
                    else:
                        out[bi, hi, p] = _softmax_sum(q_i, own_k + sorted_k, own_v + sorted_v)
    return merge_and_project(module, out, mask)
