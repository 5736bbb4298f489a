"""Slow float64 transcriptions of the reference forwards of linformer, nystromformer and synthesizer.

Each follows its reference code (named in the function) step by step, per batch item and head with
explicit sums, with the padding treatment our docstrings state where the reference has none. Only
the module's parameters are read, never its attention code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def _real(mask: Tensor | None, b: int, n: int) -> Tensor:
    return torch.ones(b, n, dtype=torch.bool) if mask is None else mask


def linformer_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """lucidrains ``LinformerSelfAttention.forward``: keys, values = einsum('bnd,nk->bkd', ., proj), then
    softmax(q k'^T * d^-1/2) v'. Our E, F are the transposes of its ``proj_k``, ``proj_v`` (k, N); padded
    keys and values are zeroed before the projection. (B, N, D)."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = _real(mask, b, n)
    proj_k = module.proj_e[:, :n].T  # (N, k), lucidrains' layout
    proj_v = proj_k if module.share_kv else module.proj_f[:, :n].T
    rows = proj_k.shape[1]
    out = torch.zeros_like(q)
    for bi in range(b):
        for hi in range(h):
            keys = [sum(proj_k[j, r] * k[bi, hi, j] for j in range(n) if real[bi, j]) for r in range(rows)]
            vals = [sum(proj_v[j, r] * v[bi, hi, j] for j in range(n) if real[bi, j]) for r in range(rows)]
            for i in range(n):
                dots = torch.stack([q[bi, hi, i] @ key for key in keys]) * d**-0.5
                attn = torch.softmax(dots, dim=0)
                out[bi, hi, i] = sum(attn[r] * vals[r] for r in range(rows))
    return merge_and_project(module, out, mask)


def iterative_inv(mat: Tensor, n_iter: int) -> Tensor:
    """mlpen ``NystromAttention.iterative_inv`` for one (m, m) matrix (the per-matrix init)."""
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype)
    z = 1 / torch.max(torch.sum(mat, dim=-2)) * mat.T
    for _ in range(n_iter):
        kv = mat @ z
        z = (0.25 * z) @ (13 * eye - kv @ (15 * eye - kv @ (7 * eye - kv)))
    return z


def nystrom_reference(module, x: Tensor, mask: Tensor | None, pinv=None) -> Tensor:
    """mlpen ``NystromAttention.forward`` (LRA/code/attention_nystrom.py), per item and head on the real
    tokens: Q, K scaled by d^-1/4; landmarks = means over m segments of the real tokens (the token of rank
    r of n goes to segment floor(r m / n)); kernel_1 = softmax(Q Kl^T), kernel_2 = softmax(Ql Kl^T),
    kernel_3 = softmax(Ql K^T); X = kernel_1 pinv(kernel_2) kernel_3 V; with landmarks >= the item's
    number of real tokens exact softmax (the reference's landmarks = N case, decided per item);
    plus the depthwise conv of V (zero at padding) when configured. ``pinv`` replaces the
    iterative inverse (e.g. an exact one). (B, N, D)."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = _real(mask, b, n)
    m = module.landmarks
    pinv = pinv or (lambda a: iterative_inv(a, module.pinv_iterations))
    out = torch.zeros_like(q)
    for bi in range(b):
        idx = [i for i in range(n) if real[bi, i]]
        if not idx:
            continue
        for hi in range(h):
            scale = 1 / math.sqrt(math.sqrt(d))  # Q and K each by d^-1/4
            qq, kk, vv = q[bi, hi, idx] * scale, k[bi, hi, idx] * scale, v[bi, hi, idx]
            if m >= len(idx):
                out[bi, hi, idx] = torch.softmax(qq @ kk.T, dim=-1) @ vv
                continue
            segments = [[] for _ in range(m)]
            for r in range(len(idx)):
                segments[r * m // len(idx)].append(r)
            segments = [s for s in segments if s]
            q_l = torch.stack([sum(qq[r] for r in s) / len(s) for s in segments])
            k_l = torch.stack([sum(kk[r] for r in s) / len(s) for s in segments])
            kernel_1 = torch.softmax(qq @ k_l.T, dim=-1)
            kernel_2 = torch.softmax(q_l @ k_l.T, dim=-1)
            kernel_3 = torch.softmax(q_l @ kk.T, dim=-1)
            out[bi, hi, idx] = (kernel_1 @ pinv(kernel_2)) @ (kernel_3 @ vv)
    if module.conv is not None:
        w = module.conv.weight[:, 0, :, 0]  # (H, kernel)
        half = w.shape[1] // 2
        for bi in range(b):
            for hi in range(h):
                for i in range(n):
                    for t in range(w.shape[1]):
                        j = i + t - half
                        if 0 <= j < n and real[bi, j]:
                            out[bi, hi, i] += w[hi, t] * v[bi, hi, j]
    return merge_and_project(module, out, mask)


def synthesizer_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """LRA ``SynthesizerAttention.apply`` with ``ignore_dot_product``: value = dense(x); dense logits
    relu(x W_1 + b_1) per head through W_2 (d -> max_len, shared), keys = the first N columns (read as
    (B, H, N, N) with heads and tokens transposed, not reshaped); random logits R[:, :N, :N]; softmax over
    the real keys; times the values; out dense. (B, N, D)."""
    b, n, dm = x.shape
    h = module.n_heads
    d = dm // h
    real = _real(mask, b, n)
    value = module.v_proj(x).view(b, n, h, d)
    out = torch.zeros(b, n, h, d, dtype=x.dtype)
    for bi in range(b):
        keys = [j for j in range(n) if real[bi, j]] or list(range(n))
        for i in range(n):
            if module.kind == "dense":
                hidden = torch.relu(module.dense_1.weight @ x[bi, i] + module.dense_1.bias).view(h, d)
            for hi in range(h):
                if module.kind == "dense":
                    w2, b2 = module.dense_2.weight, module.dense_2.bias  # (max_len, d), (max_len,)
                    logits = torch.stack([w2[j] @ hidden[hi] + b2[j] for j in keys])
                else:
                    logits = torch.stack([module.random[hi, i, j] for j in keys])
                attn = torch.softmax(logits, dim=0)
                out[bi, i, hi] = sum(attn[t] * value[bi, j, hi] for t, j in enumerate(keys))
    y = module.out_proj(out.reshape(b, n, dm))
    return y * real[..., None]
