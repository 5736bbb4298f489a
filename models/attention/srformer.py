"""Segmented Recurrent attention (SRformer), adapted to encoder self-attention.

Paper: Long, Chowdhury, Roy, "Segmented Recurrent Transformer: An Efficient Sequence-to-Sequence
Model", Findings of EMNLP 2023 (arXiv 2305.16340). Not to be confused with SRFormer, the
unrelated image super-resolution model.

Adaptation (this project's): the paper applies the idea to encoder-decoder
cross-attention, where each decoder query attends exactly to one segment of the encoder output
and the rest of the encoder output reaches it through a recurrent accumulate-and-fire (RAF)
neuron fed with ``K^T V - K_s^T V_s``. LRA needs encoder self-attention, so here the sequence
itself is cut into M = ceil(N / m) segments of m tokens (tail padded and masked), and per head:

1. Local: queries of segment s attend with exact softmax to the keys/values of segment s only
   (block-diagonal attention: ``models.attention.blocks.block_attention`` with no neighbours, the
   block machinery ``local`` uses too).
2. Recurrent: with K, V zeroed at padding, ``P_s = K_s^T V_s`` (d x d) and the rest of the
   sequence ``C_s = KV - P_s`` with ``KV = K^T V`` (``causal``: ``C_s = sum_{t<s} P_t``).
3. The RAF neuron with a (d, d) membrane U (zero at the start of every forward) runs over the
   segments in order (paper Eq. 5-7):
   ``U <- lam U + W_kv(C_s)``; ``u = U / theta - 1``; ``R_s = relu(u)`` (or the spike
   ``[u > 0]`` with surrogate gradient ``0.3 max(0, 1 - |u|)``); ``U <- U - theta [u > 0]``
   (soft reset; the comparison carries no gradient).
4. Output of segment s's queries: local output + the recurrent term, scaled by ``scaling``:
   ``paper``: ``Q_s R_s / (||K||_col + eps)`` (the authors' formula; ``||K||_col`` is each key
   channel's L2 norm over valid tokens, broadcast over output channels as in their code). Its
   RMS grows like sqrt(N) relative to the local term (about 290x at 1K tokens at init).
   ``normalized`` (default): the neuron sees ``C_s / (rms(C_s) + eps)`` and the term is
   ``g Q_s R_s / (sqrt(d) (rms(R_s) + eps))`` with a learnable gate g (init 0.1), so both terms
   have comparable, length-independent scale at init.
   ``causal``: the local attention is causal inside the segment, and ``||K||_col`` (paper scaling)
   runs over the earlier segments only, like ``C_s``.

Parameters beyond W_q, W_k, W_v, W_o: ``kv_map`` (W_kv: d -> d, no bias, shared by heads),
``theta_raw`` (theta = softplus(theta_raw) + 1e-3, init 0.1), ``lam_raw`` (lam = sigmoid(lam_raw),
init 0.5) and, with ``scaling: normalized``, ``gate`` (g). The neuron and the statistics run in
float32. Cost O(N m d + N d^2 + M d^3), memory O(N m + M d^2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import register
from models.attention._common import QKVAttention
from models.attention.blocks import block_attention

SCALINGS = ("normalized", "paper")
_EPS = 1e-6
_THETA_MIN = 1e-3


class SpikeFn(torch.autograd.Function):
    """Heaviside spike ``[u > 0]`` with the piecewise-linear surrogate gradient ``0.3 max(0, 1 - |u|)``."""

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (u,) = ctx.saved_tensors
        return grad * 0.3 * (1.0 - u.abs()).clamp_min(0.0)


def neuron_step(membrane: Tensor, x: Tensor, theta: Tensor, lam: Tensor, spike: bool = False) -> tuple[Tensor, Tensor]:
    """One accumulate-and-fire step (paper Eq. 5-7). Returns (output, new membrane), shapes of x.

    U <- lam U + x; u = U / theta - 1; out = relu(u) (or spike(u)); U <- U - theta [u > 0].
    """
    membrane = lam * membrane + x  # leaky accumulation
    u = membrane / theta - 1.0
    out = SpikeFn.apply(u) if spike else F.relu(u)
    fired = (u > 0).to(u.dtype)  # a constant: the reset carries gradient to theta only
    return out, membrane - theta * fired  # soft reset by subtraction


def _rms(x: Tensor) -> Tensor:
    """RMS over the last two axes (the (d, d) entries), kept as (..., 1, 1).

    vector_norm needs no squared copy of x, and its gradient at an all-zero x is 0, not NaN.
    """
    return torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) / math.sqrt(x.shape[-2] * x.shape[-1])


def _exclusive_cumsum(x: Tensor, dim: int) -> Tensor:
    """sum_{t < s} x_t along ``dim`` (zero at s = 0), without the cancellation of cumsum - x."""
    shifted = x.narrow(dim, 0, x.shape[dim] - 1).cumsum(dim)
    return torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), shifted], dim=dim)


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


@register(
    "srformer",
    minima={"segment_size": 1},
    exact_at_length="segment_size",
    follows_length=("segment_size",),
    causal=True,
)
class SRformerAttention(QKVAttention):
    """Block-local softmax attention plus an RAF-neuron summary of the other segments.

    forward(x (B, N, D), mask (B, N) bool, True = real token) -> (B, N, D), zero at padding.
    ``recurrent=False`` drops the recurrent term (block-local attention only).
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        segment_size: int = 64,
        scaling: str = "normalized",
        spike: bool = False,
        recurrent: bool = True,
        causal: bool = False,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if segment_size <= 0:
            raise ValueError(f"srformer segment_size must be positive, got segment_size={segment_size}")
        if scaling not in SCALINGS:
            raise ValueError(f"srformer scaling must be one of {SCALINGS}, got '{scaling}'")
        self.segment_size, self.scaling, self.spike = segment_size, scaling, spike
        self.recurrent, self.causal = recurrent, causal
        d = self.head_dim
        self.kv_map = nn.Linear(d, d, bias=False)  # W_kv, shared by heads
        self.theta_raw = nn.Parameter(torch.tensor(_inverse_softplus(0.1 - _THETA_MIN)))
        self.lam_raw = nn.Parameter(torch.tensor(0.0))
        self.gate = nn.Parameter(torch.tensor(0.1)) if scaling == "normalized" else None

    @property
    def theta(self) -> Tensor:
        return F.softplus(self.theta_raw) + _THETA_MIN

    @property
    def lam(self) -> Tensor:
        return torch.sigmoid(self.lam_raw)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        local, rec = self.terms(q, k, v, mask)
        return local if rec is None else local + rec

    def terms(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """q, k, v: (B, H, N, d); mask (B, N) True = real. Returns the local and recurrent terms, (B, H, N, d).

        The recurrent term is None when ``recurrent=False``.
        """
        b, h, n, d = q.shape
        m = self.segment_size
        p = self.dropout if self.training else 0.0
        local = block_attention(q, k, v, block=m, valid=mask, causal=self.causal, dropout=p)  # (B, H, N, d)
        if not self.recurrent:
            return local, None
        n_seg = -(-n // m)
        pad = n_seg * m - n
        valid = torch.ones(b, n, dtype=torch.bool, device=q.device) if mask is None else mask
        valid = F.pad(valid, (0, pad), value=False)  # (B, Np)
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))  # (B, H, Np, d)
        k = k.masked_fill(~valid[:, None, :, None], 0.0)  # padded rows carry nothing
        v = v.masked_fill(~valid[:, None, :, None], 0.0)
        qs, ks, vs = (t.view(b, h, n_seg, m, d) for t in (q, k, v))  # (B, H, M, m, d)
        with torch.autocast(device_type=q.device.type, enabled=False):
            rec = self._recurrent(qs, ks, vs)  # (B, H, M, m, d)
        rec = rec.reshape(b, h, n_seg * m, d)[:, :, :n].to(q.dtype)
        return local, rec

    def _recurrent(self, qs: Tensor, ks: Tensor, vs: Tensor) -> Tensor:
        """Steps 2-4 on (B, H, M, m, d) segments with K, V zero at padding, in float32. Returns (B, H, M, m, d)."""
        dtype = torch.promote_types(qs.dtype, torch.float32)
        qs, ks, vs = qs.to(dtype), ks.to(dtype), vs.to(dtype)
        d = qs.shape[-1]
        p_seg = ks.transpose(-1, -2) @ vs  # (B, H, M, d, d): P_s = K_s^T V_s
        if self.causal:
            c = _exclusive_cumsum(p_seg, dim=2)  # C_s = sum of earlier P_t
        else:
            c = p_seg.sum(dim=2, keepdim=True) - p_seg  # C_s = KV - P_s: the rest of the sequence
        if self.scaling == "normalized":
            c = c / (_rms(c) + _EPS)  # the neuron sees the same scale at every length
        drive = c @ self.kv_map.weight.to(dtype).t()  # (B, H, M, d, d): W_kv(C_s), all segments at once

        theta, lam = self.theta.to(dtype), self.lam.to(dtype)
        membrane = torch.zeros_like(drive[:, :, 0])  # (B, H, d, d), reset every forward
        outs = []
        # The recurrence runs over segments, not tokens. unbind (not drive[:, :, s]) keeps the backward
        # linear in M: each indexing op's backward would materialise a zero tensor of drive's full size.
        for x_s in drive.unbind(dim=2):
            r, membrane = neuron_step(membrane, x_s, theta, lam, self.spike)
            outs.append(r)
        r_seg = torch.stack(outs, dim=2)  # (B, H, M, d, d)

        # The scalings act on R_s's output channels, so they are folded into R_s (M d^2 entries)
        # before the product with Q_s (N d entries).
        if self.scaling == "normalized":
            r_seg = r_seg * (self.gate.to(dtype) / (math.sqrt(d) * (_rms(r_seg) + _EPS)))  # g R_s / (sqrt(d) rms)
        else:
            if self.causal:  # ||K||_col over the earlier segments' tokens, like C_s
                seg_sq = torch.linalg.vector_norm(ks, dim=3).square()  # (B, H, M, d)
                k_norm = _exclusive_cumsum(seg_sq, dim=2).clamp_min(1e-30).sqrt()  # (B, H, M, d)
            else:  # ||K||_col over all valid tokens (padded rows are zero)
                k_norm = torch.linalg.vector_norm(ks, dim=(2, 3))[:, :, None]  # (B, H, 1, d)
            r_seg = r_seg / (k_norm[:, :, :, None, :] + _EPS)  # divides output channel e by ||K[:, e]||
        return qs @ r_seg  # (B, H, M, m, d): the scaled Q_s R_s
