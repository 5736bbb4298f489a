"""Improved clustered attention (Vyas, Katharopoulos, Fleuret, NeurIPS 2020, Sec. 3.3), in plain PyTorch.

Clustered attention, plus: each centroid picks its ``topk`` highest-scoring keys, and every
query attends exactly to its cluster's top keys, rescaled by the centroid's attention mass on
them; the remaining keys keep the centroid's attention. Cost O(N*C*d + N*topk*d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention.clustered import ClusteredAttention, centroid_scores, cluster_means, compute_dtype, per_query


def gather_keys(x: Tensor, index: Tensor) -> Tensor:
    """Rows of x (B, H, N, d) at index (B, H, N, k): (B, H, N, k, d)."""
    b, h, n, k = index.shape
    flat = index.reshape(b, h, n * k, 1).expand(-1, -1, -1, x.shape[-1])  # (B, H, N*k, d)
    return x.gather(2, flat).view(b, h, n, k, x.shape[-1])


def improved_clustered_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    clusters: Tensor,
    valid: Tensor,
    num_clusters: int,
    topk: int,
    dropout_p: float = 0.0,
) -> Tensor:
    """Improved clustered attention for a given clustering (Eq. 9-11).

    q, k, v: (B, H, N, d); clusters: (B, H, N) int64 cluster id per query; valid: (B, N) bool,
    True = real token. ``topk`` is clamped to N. Returns (B, H, N, d).
    """
    scale = q.shape[-1] ** -0.5
    qc = cluster_means(q, clusters, valid, num_clusters)  # (B, H, C, d)
    scores = centroid_scores(qc, k, valid)  # (B, H, C, N), -inf at padded keys
    attn = torch.softmax(scores, dim=-1)  # (B, H, C, N): Ac
    top_scores, top = scores.topk(min(topk, k.shape[2]), dim=-1)  # (B, H, C, k): T_j
    mass = attn.gather(-1, top).sum(-1, keepdim=True)  # (B, H, C, 1): m_j = sum_{s in T_j} Ac[j, s]

    # The rest keeps the centroid's attention: V_bottom_j = sum_{s not in T_j} Ac[j, s] v_s.
    bottom = attn.scatter(-1, top, 0.0)  # (B, H, C, N)
    bottom = F.dropout(bottom, dropout_p) if dropout_p > 0 else bottom
    v_bottom = bottom.to(v.dtype) @ v  # (B, H, C, d)

    # Each query attends exactly to its cluster's top keys, scaled by m_j. A top key can be
    # padding when the sequence has fewer than topk real keys: mask it again per query.
    top_q = per_query(top, clusters)  # (B, H, N, k)
    real_q = per_query(top_scores.isfinite(), clusters)  # (B, H, N, k)
    ct = compute_dtype(q)
    s = torch.einsum("bhnd,bhnkd->bhnk", q.to(ct), gather_keys(k, top_q).to(ct)) * scale  # (B, H, N, k)
    a = torch.softmax(s.masked_fill(~real_q, float("-inf")), dim=-1) * per_query(mass, clusters)  # (B, H, N, k)
    a = F.dropout(a, dropout_p) if dropout_p > 0 else a
    v_top = torch.einsum("bhnk,bhnkd->bhnd", a.to(v.dtype), gather_keys(v, top_q))  # (B, H, N, d)
    return v_top + per_query(v_bottom, clusters)


@register("improved_clustered")
class ImprovedClusteredAttention(ClusteredAttention):
    """Improved clustered attention: exact softmax over each cluster's ``topk`` keys, centroid attention elsewhere.

    Options as ``clustered`` plus ``topk`` (keys recomputed exactly per query, clamped to N).
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        num_clusters: int = 100,
        bits: int = 63,
        iterations: int = 10,
        seed: int = 0,
        topk: int = 32,
    ):
        super().__init__(
            d_model=d_model,
            n_heads=n_heads,
            dropout=dropout,
            num_clusters=num_clusters,
            bits=bits,
            iterations=iterations,
            seed=seed,
        )
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk

    def attend_clusters(
        self, q: Tensor, k: Tensor, v: Tensor, clusters: Tensor, valid: Tensor, dropout_p: float
    ) -> Tensor:
        return improved_clustered_attention(q, k, v, clusters, valid, self.num_clusters, self.topk, dropout_p)
