"""Linear attention: Katharopoulos, Vyas, Pappas, Fleuret, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", ICML 2020 (arXiv 2006.16236). Reference: idiap/fast-transformers,
``attention/linear_attention.py`` (non-causal) and ``attention/causal_linear_attention.py``.

Softmax's ``exp(q . k)`` is replaced by a kernel ``phi(q) . phi(k)`` with the positive feature map
``phi(x) = elu(x) + 1``, so the sums over the keys leave the per-query work (paper Eq. 4-6):

    O_i = phi(q_i)^T S / (phi(q_i)^T z + eps),   S = sum_j phi(k_j) v_j^T  (d x d),   z = sum_j phi(k_j)

with no ``1/sqrt(d)`` scale (as the paper and the reference). Cost O(N d^2) time, O(N d + d^2) memory.
Padding: ``phi(k_j)`` is zeroed at padded keys, as the reference multiplies by its key-length mask, so
they add nothing to S or z; a sequence without real keys gives ``0 / eps = 0``.

Causal (``causal=True``, paper Eq. 8-9): S and z become prefix sums over ``j <= i``. The reference runs
them as a scan in a C++/CUDA kernel; here they are computed by chunks of ``CHUNK`` tokens: within a
chunk the masked quadratic form ``tril(phi(Q_c) phi(K_c)^T) V_c``, plus the prefix sums of the earlier
chunks' ``S`` and ``z`` (exclusive cumulative sums over chunks). Memory O(N/CHUNK * d^2 + N * CHUNK).

``feature_attention`` is the part shared with FAVOR+ (``performer.py``): the numerator and
denominator of ``phi(Q) phi(K)^T V`` for any non-negative features. Neither reference drops anything
inside the attention (there is no attention matrix); ``dropout`` here drops entries of the attention
output before W_o.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention

CHUNK = 64  # tokens per chunk of the causal prefix sums


def feature_attention(phi_q: Tensor, phi_k: Tensor, v: Tensor, causal: bool = False) -> tuple[Tensor, Tensor]:
    """Numerator ``phi(Q) phi(K)^T V`` and denominator ``phi(Q) phi(K)^T 1`` without the N x N matrix.

    phi_q, phi_k: (B, H, N, m) non-negative features (phi_k zero at padded keys); v: (B, H, N, e).
    Non-causal: sums over all keys; causal: over keys j <= i. Returns (B, H, N, e) and (B, H, N).
    A column of ones appended to V makes the denominator the last column of the same products, so the
    features are read once for both.
    """
    e = v.shape[-1]
    v1 = F.pad(v, (0, 1), value=1.0)  # (B, H, N, e + 1): [V, 1]
    if not causal:
        kv = phi_k.transpose(-1, -2) @ v1  # (B, H, m, e + 1): [S, z], S = sum_j phi(k_j) v_j^T, z = sum_j phi(k_j)
        out = phi_q @ kv  # (B, H, N, e + 1)
        return out[..., :e], out[..., e]
    b, h, n, m = phi_q.shape
    c = min(CHUNK, n)
    pad = -n % c
    if pad:  # zero features at the padded tail: nothing added to the sums, outputs cut off below
        phi_q, phi_k, v1 = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v1))
    nc = (n + pad) // c
    qc, kc, vc = (t.reshape(b, h, nc, c, t.shape[-1]) for t in (phi_q, phi_k, v1))  # (B, H, nc, c, .)
    kv = kc.transpose(-1, -2) @ vc  # (B, H, nc, m, e + 1): each chunk's [S, z]
    kv_before = F.pad(kv.cumsum(dim=2)[:, :, :-1], (0, 0, 0, 0, 1, 0))  # sums over the earlier chunks only
    scores = (qc @ kc.transpose(-1, -2)).tril()  # (B, H, nc, c, c): keys j <= i within the chunk
    out = (qc @ kv_before + scores @ vc).reshape(b, h, nc * c, e + 1)[:, :, :n]  # (B, H, N, e + 1)
    return out[..., :e], out[..., e]


def elu_features(x: Tensor) -> Tensor:
    """``phi(x) = elu(x) + 1`` (positive), in float32 at least (float64 stays float64)."""
    return F.elu(x.to(torch.promote_types(x.dtype, torch.float32))) + 1


@register("linear", causal=True)
class LinearAttention(QKVAttention):
    """``phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1 + eps)`` per head with ``phi = elu + 1``, then W_o.

    Options: ``eps`` (> 0) added to the denominator, ``causal`` (prefix sums over keys j <= i).
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, eps: float = 1e-6, causal: bool = False):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if not eps > 0:
            raise ValueError(f"linear eps must be > 0 (it keeps a sequence without real keys finite), got {eps}")
        self.eps, self.causal = eps, causal

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        phi_q, phi_k = elu_features(q), elu_features(k)  # (B, H, N, d)
        if mask is not None:
            phi_k = phi_k * mask[:, None, :, None]  # padded keys add nothing to S and z
        num, den = feature_attention(phi_q, phi_k, v.to(phi_q.dtype), self.causal)
        out = num / (den + self.eps)[..., None]  # (B, H, N, d)
        if self.dropout > 0 and self.training:
            out = F.dropout(out, self.dropout)
        return out.to(v.dtype)
