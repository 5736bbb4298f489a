"""Clustered attention (Vyas, Katharopoulos, Fleuret, "Fast Transformers with Clustered Attention",
NeurIPS 2020, arXiv 2007.04825), in plain PyTorch.

Queries are grouped into C clusters (hashing + Hamming k-means, ``_clustering.py``); each
cluster's centroid (the mean of its queries) attends to all keys, and every query receives its
centroid's output. Cost O(N*C*d) instead of O(N^2*d).

A sequence with at most C real tokens gets exact attention instead (clustering cannot save
anything there), so C >= N is exactly vanilla attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._clustering import cluster_queries
from models.attention._common import QKVAttention, key_mask_for_sdpa


def compute_dtype(t: Tensor) -> torch.dtype:
    """float32 for half types and float32, float64 stays float64 (scores and softmax never below fp32)."""
    return torch.promote_types(t.dtype, torch.float32)


def per_query(x: Tensor, clusters: Tensor) -> Tensor:
    """Broadcast cluster rows x (B, H, C, k) to the queries: (B, H, N, k), row i = x[c(i)]."""
    return x.gather(2, clusters[..., None].expand(-1, -1, -1, x.shape[-1]))


def cluster_means(q: Tensor, clusters: Tensor, valid: Tensor, num_clusters: int) -> Tensor:
    """Centroids Qc_j = mean of the real queries in cluster j; carries q's gradient.

    q: (B, H, N, d); clusters: (B, H, N) int64; valid: (B, N) bool, True = real query.
    Returns (B, H, C, d) in float32 or wider (sums of many half-precision queries lose digits); an
    empty cluster's centroid is zero.
    """
    b, h, n, d = q.shape
    q = q.to(compute_dtype(q))
    weight = valid[:, None, :, None].to(q.dtype)  # (B, 1, N, 1)
    index = clusters[..., None].expand(-1, -1, -1, d)  # (B, H, N, d)
    sums = q.new_zeros(b, h, num_clusters, d).scatter_add(2, index, q * weight)  # (B, H, C, d)
    counts = q.new_zeros(b, h, num_clusters).scatter_add(2, clusters, weight[..., 0].expand(b, h, n))  # (B, H, C)
    return sums / counts.clamp(min=1)[..., None]


def centroid_scores(qc: Tensor, k: Tensor, valid: Tensor) -> Tensor:
    """Qc K^T / sqrt(d) with -inf at padded keys, in float32 or wider: (B, H, C, N).

    A sequence without any real key attends to all keys instead, so no row is all -inf.
    """
    ct = compute_dtype(qc)
    scores = qc.to(ct) @ k.to(ct).transpose(-1, -2) * qc.shape[-1] ** -0.5  # (B, H, C, N)
    return scores.masked_fill(~key_mask_for_sdpa(valid), float("-inf"))


def clustered_attention(
    q: Tensor, k: Tensor, v: Tensor, clusters: Tensor, valid: Tensor, num_clusters: int, dropout_p: float = 0.0
) -> Tensor:
    """Clustered attention for a given clustering.

    q, k, v: (B, H, N, d); clusters: (B, H, N) int64 cluster id per query; valid: (B, N) bool,
    True = real token. Ac = softmax(Qc K^T / sqrt(d) + key padding bias), Vc = Ac V,
    O_i = Vc[c(i)]. Returns (B, H, N, d).
    """
    qc = cluster_means(q, clusters, valid, num_clusters)  # (B, H, C, d)
    attn = torch.softmax(centroid_scores(qc, k, valid), dim=-1)  # (B, H, C, N)
    attn = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
    vc = attn.to(v.dtype) @ v  # (B, H, C, d)
    return per_query(vc, clusters)  # (B, H, N, d)


def exact_on_valid_keys(q: Tensor, k: Tensor, v: Tensor, valid: Tensor, max_keys: int, dropout_p: float) -> Tensor:
    """Exact attention for sequences with at most ``max_keys`` real tokens, in O(N * max_keys).

    q, k, v: (S, H, N, d); valid: (S, N) bool with at most ``max_keys`` True per row. The real
    keys are gathered first (stable sort), so only ``max_keys`` key slots are scored.
    """
    d = k.shape[-1]
    pos = torch.sort((~valid).to(torch.uint8), dim=-1, stable=True).indices[:, :max_keys]  # (S, K)
    index = pos[:, None, :, None].expand(-1, k.shape[1], -1, d)  # (S, H, K, d)
    key_mask = key_mask_for_sdpa(valid.gather(1, pos))  # (S, 1, 1, K)
    return F.scaled_dot_product_attention(
        q, k.gather(2, index), v.gather(2, index), attn_mask=key_mask, dropout_p=dropout_p
    )


@register(
    "clustered",
    minima={"num_clusters": 1, "bits": 1, "iterations": 0},
    exact_at_length="num_clusters",
    follows_length=("num_clusters",),
)
class ClusteredAttention(QKVAttention):
    """Clustered attention: each query gets its cluster centroid's softmax attention output.

    Options: ``num_clusters`` C, hash ``bits``, k-means ``iterations``, and ``seed`` for the
    hashing in eval mode (training draws fresh hyperplanes from torch's global RNG each call).
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
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if num_clusters < 1 or bits < 1 or iterations < 0:
            raise ValueError(
                f"need num_clusters >= 1, bits >= 1, iterations >= 0; got {num_clusters}, {bits}, {iterations}"
            )
        self.num_clusters, self.bits, self.iterations, self.seed = num_clusters, bits, iterations, seed

    def cluster(self, q: Tensor, valid: Tensor) -> Tensor:
        """Cluster ids (B, H, N) for queries q (B, H, N, d); valid (B, N) True = real query."""
        generator = None if self.training else torch.Generator().manual_seed(self.seed)
        clusters, _ = cluster_queries(
            q.detach(),
            valid,
            num_clusters=self.num_clusters,
            bits=self.bits,
            iterations=self.iterations,
            generator=generator,
        )
        return clusters

    def attend_clusters(
        self, q: Tensor, k: Tensor, v: Tensor, clusters: Tensor, valid: Tensor, dropout_p: float
    ) -> Tensor:
        """The mechanism for a given clustering; (B, H, N, d)."""
        return clustered_attention(q, k, v, clusters, valid, self.num_clusters, dropout_p)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, _, n, _ = q.shape
        c = self.num_clusters
        p = self.dropout if self.training else 0.0
        if n <= c:  # no sequence is longer than C: all exact
            return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask_for_sdpa(mask), dropout_p=p)
        valid = mask if mask is not None else torch.ones(b, n, dtype=torch.bool, device=q.device)  # (B, N)
        out = self.attend_clusters(q, k, v, self.cluster(q, valid), valid, p)  # (B, H, N, d)
        short = (valid.sum(-1) <= c).nonzero().squeeze(1)  # batch items with at most C real tokens
        if short.numel() > 0:
            exact = exact_on_valid_keys(q[short], k[short], v[short], valid[short], c, p)  # (S, H, N, d)
            out = out.index_copy(0, short, exact)
        return out
