"""Token Statistics Self-Attention (TSSA), the attention of ToST.

Paper: Wu et al., "Token Statistics Transformer: Linear-Time Attention via Variational Rate
Reduction", ICLR 2025 (arXiv 2412.17810). No pairwise token scores: each head k is a group
with its own subspace, each token splits unit membership Pi over the H groups, and each group
shrinks its tokens along the channels whose membership-weighted second moment is large
(one gradient step on the variational rate-reduction objective, paper Eq. 10-12).

Non-causal, per head h with W = x U split into heads (tokens i, channels c):
    W_hat = W / ||W||_2                       norm over the token axis, per head and channel
    Pi[h, i] = softmax_h(tau_h * sum_c W_hat[h, i, c]^2)
    s[h, c]  = sum_i Pi[h, i] W[h, i, c]^2 / (sum_i Pi[h, i] + 1e-8)
    Y[h, i, c] = -Pi[h, i] W[h, i, c] / (1 + s[h, c])

Causal (``causal=True``; the same as the reference ``CausalSelfAttention_TSSA`` without its
learned per-position ``denom_bias``, which ties the module to a maximum length): every sum over
tokens becomes a prefix sum over tokens j <= i,
    Pi[h, i]   = softmax_h(tau_h * sum_c W[h, i, c]^2 / max(sum_{j<=i} W[h, j, c]^2, 1e-24))
    s[h, i, c] = sum_{j<=i} Pi[h, j] W[h, j, c]^2 / (sum_{j<=i} Pi[h, j] + 1e-8)
    Y[h, i, c] = -Pi[h, i] W[h, i, c] / (1 + s[h, i, c])
so token i's membership is the non-causal one computed on the prefix x[:i+1], but the earlier
tokens j < i in its statistic keep the memberships they had at their own step j. Hence the
causal output at i equals the non-causal output on the prefix only when the memberships do not
depend on the normalisation (H = 1, or tau = 0 where Pi = 1/H); tests/test_tssa.py checks both.

Padding (absent from the reference code, needed for LRA): W is zeroed at padded positions after
the biased projection, and Pi is zeroed there before the statistic, so a padded sequence gives
exactly the unpadded result. Softmax and statistics run in float32 (or float64 for float64
inputs). Cost O(N * D) beyond the two projections.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import register
from models.attention._common import zero_padding

_DENOM_EPS = 1e-8  # added to sum_i Pi, as in the paper's code
_NORM_EPS = 1e-12  # ||W|| is clamped to at least this (as F.normalize does), so all-zero channels stay 0


class TSSAResult(NamedTuple):
    """Output of :func:`tssa_core`."""

    y: Tensor  # (B, N, H, d), the attention output before merging heads
    pi: Tensor  # (B, N, H), memberships (zero at padding when masked)
    stat: Tensor  # (B, 1, H, d) non-causal or (B, N, H, d) causal: the second moment s


def tssa_core(
    w: Tensor,
    tau: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    mask_pi: bool = True,
    dropout: float = 0.0,
    training: bool = False,
) -> TSSAResult:
    """TSSA on projected tokens split into heads.

    w: (B, N, H, d) = (x U after the bias).view(B, N, H, d) (token-major, so no transpose is
    needed); tau: (H,) per-head temperature; mask: (B, N) bool, True = real token.
    ``mask_pi=False`` leaves Pi unmasked at padding (only for the test that shows why the masking
    is needed). ``dropout`` drops entries of the shrink factor 1/(1+s), as the reference code does.
    """
    dtype = torch.promote_types(w.dtype, torch.float32)  # statistics in float32 at least
    w = w.to(dtype)
    if mask is not None:
        w = w * mask[:, :, None, None]  # padded tokens carry nothing
    w_sq = w.square()  # (B, N, H, d)
    tau = tau.to(dtype)
    if causal:
        norm_sq = w_sq.cumsum(dim=1)  # (B, N, H, d): ||W_{<=i}||^2 per channel
        logits = tau * (w_sq / norm_sq.clamp_min(_NORM_EPS**2)).sum(dim=-1)  # (B, N, H), paper Eq. 10
    else:
        inv_norm_sq = 1.0 / w_sq.sum(dim=1).clamp_min(_NORM_EPS**2)  # (B, H, d): 1 / ||W||^2 over tokens
        logits = tau * torch.einsum("bnhc,bhc->bnh", w_sq, inv_norm_sq)  # (B, N, H) = tau sum_c W_hat^2, Eq. 10
    pi = torch.softmax(logits, dim=-1)  # (B, N, H): each token's unit mass over the H groups
    if mask is not None and mask_pi:
        pi = pi * mask[:, :, None]  # padded tokens take no part in the statistic
    if causal:
        stat = (pi[..., None] * w_sq).cumsum(dim=1) / (pi.cumsum(dim=1)[..., None] + _DENOM_EPS)  # (B, N, H, d)
    else:
        weighted = torch.einsum("bnh,bnhc->bhc", pi, w_sq)  # (B, H, d): sum_i Pi[h, i] W[h, i, c]^2
        stat = (weighted / (pi.sum(dim=1)[..., None] + _DENOM_EPS))[:, None]  # (B, 1, H, d)
    shrink = 1.0 / (1.0 + stat)  # paper Eq. 12: channels with a large second moment shrink most
    if dropout > 0 and training:
        shrink = F.dropout(shrink, dropout)
    y = w * (-pi[..., None] * shrink) if causal else (w * -shrink) * pi[..., None]  # (B, N, H, d)
    return TSSAResult(y, pi, stat)


@register("tssa", causal=True)
class TSSAttention(nn.Module):
    """Token Statistics Self-Attention: x (B, N, D), mask (B, N) True = real -> (B, N, D), zero at padding.

    Parameters: ``u_proj`` (the projection U: D -> D, with bias), ``tau`` (per-head temperature,
    init 1; exclude it from weight decay, see :meth:`no_weight_decay`), ``out_proj`` (D -> D).
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout, self.causal = dropout, causal
        self.u_proj = nn.Linear(d_model, d_model)
        self.tau = nn.Parameter(torch.ones(n_heads))
        self.out_proj = nn.Linear(d_model, d_model)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters an optimizer should not decay."""
        return {"tau"}

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); mask: (B, N) bool, True = real token. Returns (B, N, D), zero at padding."""
        b, n, _ = x.shape
        w = self.u_proj(x).view(b, n, self.n_heads, self.head_dim)  # (B, N, H, d)
        res = tssa_core(w, self.tau, mask, causal=self.causal, dropout=self.dropout, training=self.training)
        y = res.y.to(x.dtype).reshape(b, n, self.d_model)  # (B, N, D), heads merged
        return zero_padding(self.out_proj(y), mask)
