"""Slow float64 transcriptions of the kernel mechanisms' reference forwards, token by token.

``linear_reference`` follows idiap/fast-transformers' ``LinearAttention`` / ``CausalLinearAttention``;
``performer_reference`` follows google-research's jax ``nonnegative_softmax_kernel_feature_creator`` and
``FastAttentionviaLowRankDecomposition``. Both loop over batch items, heads and queries, write the
feature maps out from their formulas and read only the module's weights (q/k/v/o projections, eps, the
random matrix W): none of the module's attention code. Padding, which neither reference handles, is
applied as the modules document it: padded keys are left out of every sum and of the key stabiliser.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def elu_plus_one(x: Tensor) -> Tensor:
    """elu(x) + 1 written out: x + 1 for x > 0, exp(x) otherwise."""
    return torch.where(x > 0, x + 1, torch.exp(x))


def linear_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """O_i = sum_j phi(q_i).phi(k_j) v_j / (sum_j phi(q_i).phi(k_j) + eps) over real keys j (causal: j <= i),
    phi = elu + 1, no 1/sqrt(d). (B, N, D), zero at padding."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    valid = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    out = torch.zeros_like(q)
    for bi in range(b):
        real = [j for j in range(n) if valid[bi, j]]
        for hi in range(q.shape[1]):
            for i in range(n):
                keys = [j for j in real if j <= i or not module.causal]
                if not keys:
                    continue  # 0 / eps
                fq, fk = elu_plus_one(q[bi, hi, i]), elu_plus_one(k[bi, hi, keys])  # (d,), (T, d)
                weights = fk @ fq  # (T,): phi(q_i) . phi(k_j)
                out[bi, hi, i] = (weights @ v[bi, hi, keys]) / (weights.sum() + module.eps)
    return merge_and_project(module, out, mask)


def favor_features(x: Tensor, w: Tensor, stabiliser: Tensor) -> Tensor:
    """phi(x)_r = m^-1/2 (exp(w_r . x~ - |x~|^2 / 2 - M) + 1e-4) for one token x (d,), x~ = d^-1/4 x."""
    xs = x / x.shape[0] ** 0.25
    return (torch.exp(w @ xs - xs @ xs / 2 - stabiliser) + 1e-4) / math.sqrt(w.shape[0])


def performer_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """FAVOR+ with ``module.projection`` W: query stabiliser max_r w_r . q~_i; key stabiliser one max of
    w_r . k~_j over the real keys j and r per sequence and head; R_i = sum_j phi(q_i).phi(k_j) over real
    keys (causal: j <= i), plus 2e-6 where |R_i| <= 1e-6; O_i = sum_j phi(q_i).phi(k_j) v_j / R_i."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    w = module.projection.to(q.dtype)  # (m, d)
    valid = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    out = torch.zeros_like(q)
    for bi in range(b):
        real = [j for j in range(n) if valid[bi, j]]
        for hi in range(q.shape[1]):
            if not real:
                continue
            scale = q.shape[-1] ** -0.25
            key_max = max(float((w @ (k[bi, hi, j] * scale)).max()) for j in real)
            fk = {j: favor_features(k[bi, hi, j], w, torch.tensor(key_max, dtype=q.dtype)) for j in real}
            for i in range(n):
                fq = favor_features(q[bi, hi, i], w, (w @ (q[bi, hi, i] * scale)).max())
                keys = [j for j in real if j <= i or not module.causal]
                weights = torch.stack([fq @ fk[j] for j in keys])  # (T,)
                r = weights.sum()
                r = r + 2e-6 if r.abs() <= 1e-6 else r
                out[bi, hi, i] = (weights @ v[bi, hi, keys]) / r
    return merge_and_project(module, out, mask)
