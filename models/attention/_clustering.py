"""Query clustering for clustered attention (Vyas, Katharopoulos, Fleuret, NeurIPS 2020).

Queries are hashed with random hyperplanes to bit codes, and the codes are grouped by a few
Lloyd iterations of k-means under the Hamming distance. Everything here runs without gradient:
the cluster assignments are constants for the attention that uses them. Batched over batch
items and heads; the only Python loop is over k-means iterations.

Randomness: pass ``generator=None`` to draw from torch's global RNG on the queries' device (fresh
hyperplanes every call, as in training), or a seeded CPU ``torch.Generator`` for a reproducible
clustering (evaluation). The draws do not depend on padded positions, so padding never changes
the clustering of the real queries.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U[0, 1) float32 of ``shape`` on ``device``, from ``generator`` (CPU) or the global RNG."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


def _normal(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """N(0, 1) float32 of ``shape`` on ``device``, from ``generator`` (CPU) or the global RNG."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator).to(device)


@torch.no_grad()
def hash_queries(q: Tensor, bits: int, generator: torch.Generator | None = None) -> Tensor:
    """Random-hyperplane hash of each query: bit b is ``<p_b, q> > offset_b``.

    q: (B, H, N, d). One set of ``bits`` planes with offsets, ``[bits, d + 1]`` normal, shared by
    all batch items and heads. Returns (B, H, N, bits) float32 in {0, 1}.
    """
    d = q.shape[-1]
    planes = _normal((bits, d + 1), generator, q.device)  # (bits, d+1): normal vector, then offset
    proj = q.float() @ planes[:, :d].T  # (B, H, N, bits)
    return (proj > planes[:, d]).float()


@torch.no_grad()
def hamming_kmeans(
    codes: Tensor, valid: Tensor, num_clusters: int, iterations: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on bit codes under the Hamming distance.

    codes: (B, H, N, bits) in {0, 1}; valid: (B, N) bool, True = real query. Initial centroids are
    the codes at C distinct random valid positions (padded positions are used only when a
    sequence has fewer than C real queries). Each of ``iterations`` steps assigns every query to
    its nearest centroid and sets each centroid bit to the majority vote of its members; a tied
    vote is decided at random, so a cluster without members gets a fresh random code. Padded
    queries are assigned too (their ids are harmless) but never vote and are not counted.

    Returns cluster ids (B, H, N) int64 in [0, C) and member counts (B, H, C) int64 (real
    queries only).
    """
    b, h, n, nbits = codes.shape
    if num_clusters > n:
        raise ValueError(f"num_clusters={num_clusters} exceeds the sequence length {n}")
    # On +-1 codes, <x, c> = bits - 2 * Hamming(x, c): the nearest centroid is the largest dot product.
    signs = 2 * codes.float() - 1  # (B, H, N, bits)
    weight = valid[:, None, :, None].expand(b, h, n, 1).float()  # (B, H, N, 1): 1 = real query, 0 = padding
    votes = signs * weight  # (B, H, N, bits): padded queries abstain

    # The random draws are sized by neither the batch nor the length, the tie-breaking noise first and
    # the position keys last ((N, H) row-major: the keys of N positions are a prefix of those of N + 1),
    # so with a seeded generator (eval) a sequence's clusters depend neither on the other sequences of
    # its batch nor on how much padding follows it.
    noise = _uniform((iterations, h, num_clusters, nbits), generator, codes.device).sub_(0.5)  # (I, H, C, bits)
    # C distinct random positions per (batch, head), real ones first: smallest random keys win.
    keys = _uniform((n, h), generator, codes.device).T.expand(b, h, n)  # (B, H, N), the same for every item
    keys = keys.masked_fill(weight[..., 0] == 0, 2.0)  # (B, H, N)
    start = keys.topk(num_clusters, dim=-1, largest=False).indices  # (B, H, C)
    centroids = signs.gather(2, start[..., None].expand(-1, -1, -1, nbits))  # (B, H, C, bits)

    for step in range(iterations):
        clusters = (signs @ centroids.transpose(-1, -2)).argmax(dim=-1)  # (B, H, N)
        tally = torch.zeros_like(centroids).scatter_add_(2, clusters[..., None].expand(-1, -1, -1, nbits), votes)
        # Majority per bit; a half-unit of noise only decides ties (integer tallies), empty clusters included.
        centroids = torch.sign(tally + noise[step])  # (B, H, C, bits)
    clusters = (signs @ centroids.transpose(-1, -2)).argmax(dim=-1)  # (B, H, N)
    counts = torch.zeros(b, h, num_clusters, device=codes.device).scatter_add_(2, clusters, weight[..., 0])
    return clusters, counts.long()


def cluster_queries(
    q: Tensor, valid: Tensor, *, num_clusters: int, bits: int, iterations: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Hash the queries (B, H, N, d) and cluster them; valid (B, N) True = real query.

    Returns cluster ids (B, H, N) int64 and member counts (B, H, C), both without gradient.
    """
    codes = hash_queries(q, bits, generator)  # (B, H, N, bits)
    return hamming_kmeans(codes, valid, num_clusters, iterations, generator)
