"""Improved clustered attention (Vyas, Katharopoulos, Fleuret, NeurIPS 2020), in plain PyTorch.

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


def chunk_layout(clusters: Tensor, num_clusters: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Seat the queries of each cluster in consecutive chunks of ``chunk`` slots (queries sorted by cluster).

    clusters: (G, N) int64 in [0, C). A chunk holds queries of one cluster only, so a cluster's top
    keys are gathered once per chunk rather than once per query. There are at most
    M = ceil(N / chunk) + C chunks. Returns each query's slot (G, N) in [0, M * chunk) and each
    chunk's cluster (G, M) (unused chunks say 0).
    """
    g, n = clusters.shape
    m = -(-n // chunk) + num_clusters
    sizes = torch.zeros(g, num_clusters, dtype=torch.long, device=clusters.device)
    sizes.scatter_add_(1, clusters, torch.ones_like(clusters))  # (G, C)
    chunks = (sizes + chunk - 1) // chunk  # (G, C) chunks per cluster
    first_chunk = chunks.cumsum(1) - chunks  # (G, C)
    first_pos = sizes.cumsum(1) - sizes  # (G, C) where the cluster starts in sorted order
    sorted_c, order = clusters.sort(dim=1, stable=True)  # (G, N)
    rank = torch.arange(n, device=clusters.device) - first_pos.gather(1, sorted_c)  # (G, N) rank in its cluster
    slot = torch.empty_like(clusters).scatter_(1, order, first_chunk.gather(1, sorted_c) * chunk + rank)  # (G, N)
    chunk_cluster = torch.zeros(g, m, dtype=torch.long, device=clusters.device).scatter_(1, slot // chunk, clusters)
    return slot, chunk_cluster


def rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows of x (G, N, d) at index (G, ...): (G, ..., d)."""
    g, d = x.shape[0], x.shape[-1]
    flat = index.reshape(g, -1, 1).expand(-1, -1, d)  # (G, L, d)
    return x.gather(1, flat).view(*index.shape, d)


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
    """Improved clustered attention for a given clustering.

    q, k, v: (B, H, N, d); clusters: (B, H, N) int64 cluster id per query; valid: (B, N) bool,
    True = real token. ``topk`` is clamped to N. Returns (B, H, N, d).
    """
    b, h, n, d = q.shape
    c, g = num_clusters, b * h
    qc = cluster_means(q, clusters, valid, c)  # (B, H, C, d)
    scores = centroid_scores(qc, k, valid)  # (B, H, C, N), -inf at padded keys
    attn = torch.softmax(scores, dim=-1)  # (B, H, C, N): Ac
    top_scores, top = scores.topk(min(topk, n), dim=-1)  # (B, H, C, k): T_j
    mass = attn.gather(-1, top).sum(-1)  # (B, H, C): m_j = sum_{s in T_j} Ac[j, s]

    # The rest keeps the centroid's attention: V_bottom_j = sum_{s not in T_j} Ac[j, s] v_s.
    bottom = attn.scatter(-1, top, 0.0)  # (B, H, C, N)
    bottom = F.dropout(bottom, dropout_p) if dropout_p > 0 else bottom
    v_bottom = bottom.to(v.dtype) @ v  # (B, H, C, d)

    # Each query attends exactly to its cluster's top keys, scaled by m_j: a_i = m_j softmax(q_i K_Tj^T).
    # Queries sit in chunks of one cluster each (about N / C slots), so a chunk scores its cluster's
    # keys with one small matmul instead of gathering the keys once per query.
    size = -(-n // c)
    slot, chunk_cluster = chunk_layout(clusters.reshape(g, n), c, size)  # (G, N), (G, M)
    m = chunk_cluster.shape[1]
    per_chunk = chunk_cluster[..., None].expand(-1, -1, top.shape[-1])  # (G, M, k)
    chunk_top = top.reshape(g, c, -1).gather(1, per_chunk)  # (G, M, k)
    # A top key is padding when the sequence has fewer than topk real keys: mask it again.
    chunk_real = top_scores.isfinite().reshape(g, c, -1).gather(1, per_chunk)  # (G, M, k)
    chunk_mass = mass.reshape(g, c).gather(1, chunk_cluster)  # (G, M)
    seat = slot[..., None].expand(-1, -1, d)  # (G, N, d)
    q_seated = q.new_zeros(g, m * size, d).scatter(1, seat, q.reshape(g, n, d)).view(g, m, size, d)
    ct = compute_dtype(q)
    s = q_seated.to(ct) @ rows(k.reshape(g, n, d), chunk_top).to(ct).transpose(-1, -2) * d**-0.5  # (G, M, S, k)
    a = torch.softmax(s.masked_fill(~chunk_real[:, :, None], float("-inf")), dim=-1)  # (G, M, S, k)
    a = a * chunk_mass[..., None, None]
    a = F.dropout(a, dropout_p) if dropout_p > 0 else a
    v_top = (a.to(v.dtype) @ rows(v.reshape(g, n, d), chunk_top)).view(g, m * size, d).gather(1, seat)  # (G, N, d)
    return v_top.view(b, h, n, d) + per_query(v_bottom, clusters)


@register(
    "improved_clustered",
    minima={"num_clusters": 1, "bits": 1, "iterations": 0, "topk": 1},
    exact_at_length="num_clusters",
    follows_length=("num_clusters",),
)
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
