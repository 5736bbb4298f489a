"""Slow float64 transcription of trax's LSH self-attention forward (``PureLSHSelfAttention.forward_unbatched``).

Per batch item, head and hash round, with Python lists: ``hash_vecs`` (argmax over [xR, -xR]; padded
tokens in the extra bucket ``buckets``), the sort by ``buckets * N + position``, chunks with look-one-back
(``look_adjacent``), ``attend`` with ``length_normalized`` keys over sqrt(d), ``mask_self_attention``
(-1e5 at key = query, -1e9 at padded keys) and the log-sum-exp combination of the rounds. The padding
choices of models/attention/reformer.py's docstring: each round is chunked on its own, the sorted
sequence is padded to a multiple of the chunk, the first chunk looks back at the last chunk holding a
real token, and a chunk that is its own previous one is taken once. Only the module's parameters and
the rotations handed in are read, never its attention code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def project(module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Shared query-keys and values (B, H, N, d) from ``module.q_proj`` and ``module.v_proj``."""
    b, n, dm = x.shape
    h = module.n_heads
    qk = module.q_proj(x).view(b, n, h, dm // h).transpose(1, 2)
    v = module.v_proj(x).view(b, n, h, dm // h).transpose(1, 2)
    return qk, v


def bucket_of(vec: Tensor, rotation: Tensor, buckets: int) -> int:
    """trax ``hash_vecs`` for one vector (d,) and one round's rotation (d, buckets/2)."""
    if buckets == 1:
        return 0
    rotated = [sum(vec[f] * rotation[f, i] for f in range(vec.shape[0])) for i in range(buckets // 2)]
    both = rotated + [-r for r in rotated]
    return max(range(buckets), key=lambda i: (both[i], -i))  # the first maximum, as argmax


def length_normalized(x: Tensor, epsilon: float = 1e-6) -> Tensor:
    """trax ``length_normalized``: x / sqrt(mean(x^2) + eps)."""
    return x / torch.sqrt(torch.mean(x**2) + epsilon)


def reformer_reference(module, x: Tensor, mask: Tensor | None, rotations: Tensor) -> Tensor:
    """The layer's output (B, N, D) for ``rotations`` (H, hashes, d, buckets/2), zero at padding."""
    b, n, _ = x.shape
    qk, v = project(module, x)
    h, d = qk.shape[1], qk.shape[-1]
    buckets, rounds = module.buckets, rotations.shape[1]
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    c = min(module.chunk, n)
    n_pad = -(-n // c) * c
    out = torch.zeros_like(qk)
    for bi in range(b):
        n_real = int(real[bi].sum())
        last_real_chunk = max(-(-n_real // c) - 1, 0)
        for hi in range(h):
            keys = [length_normalized(qk[bi, hi, j]) / math.sqrt(d) for j in range(n)]
            outputs, logits = [], []
            for r in range(rounds):
                rot = rotations[hi, r].double()
                bucket = [bucket_of(qk[bi, hi, j], rot, buckets) if real[bi, j] else buckets for j in range(n)]
                bucket += [buckets] * (n_pad - n)  # the sorted sequence padded to whole chunks
                order = sorted(range(n_pad), key=lambda j: n_pad * bucket[j] + j)
                chunks = [order[s : s + c] for s in range(0, n_pad, c)]
                o_r, l_r = {}, {}
                for ci, members in enumerate(chunks):
                    before = chunks[ci - 1] if ci > 0 else chunks[last_real_chunk]
                    # look_adjacent: the previous chunk, then this one; a chunk that is its own previous
                    # one counts once (our masked copy)
                    window = members if before is members else before + members
                    for i in members:
                        if i >= n or not real[bi, i]:
                            continue
                        dots = []
                        for j in window:
                            if j >= n or not real[bi, j]:
                                dots.append(torch.tensor(-1e9, dtype=torch.float64))
                                continue
                            dot = qk[bi, hi, i] @ keys[j]
                            dots.append(dot - 1e5 if j == i else dot)
                        dots = torch.stack(dots)
                        lse = torch.logsumexp(dots, dim=0)
                        probs = torch.exp(dots - lse)
                        vals = [v[bi, hi, j] if j < n else torch.zeros(d, dtype=v.dtype) for j in window]
                        o_r[i] = sum(p * val for p, val in zip(probs, vals))
                        l_r[i] = lse
                outputs.append(o_r)
                logits.append(l_r)
            for i in range(n):
                if not real[bi, i]:
                    continue
                weights = torch.softmax(torch.stack([logits[r][i] for r in range(rounds)]), dim=0)
                out[bi, hi, i] = sum(weights[r] * outputs[r][i] for r in range(rounds))
    y = module.out_proj(out.transpose(1, 2).reshape(b, n, -1))
    return y * real[..., None]


def shared_qk_softmax(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """Full softmax attention with shared QK and the self-mask, as one matrix (the one-chunk limit):
    ``softmax(q_i . k_j - 1e5 [i = j])`` over the real keys, ``k_j = q_j / |q_j|`` (trax's norm). (B, N, D)."""
    b, n, _ = x.shape
    qk, v = project(module, x)
    d = qk.shape[-1]
    keys = qk * torch.rsqrt(qk.square().mean(dim=-1, keepdim=True) + 1e-6) / math.sqrt(d)
    scores = qk @ keys.transpose(-1, -2) - 1e5 * torch.eye(n, dtype=qk.dtype)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    o = torch.softmax(scores, dim=-1) @ v
    y = module.out_proj(o.transpose(1, 2).reshape(b, n, -1))
    return y if mask is None else y * mask[..., None]
