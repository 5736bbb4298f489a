"""Clustered and improved clustered attention: the equations pinned, the limits, and the k-means."""

import pytest
import torch

from models.attention import build_attention
from models.attention._clustering import cluster_queries, hamming_kmeans
from models.attention.clustered import clustered_attention
from models.attention.improved_clustered import chunk_layout, improved_clustered_attention
from tests.oracles import clustered_loop, clustered_reference, softmax_attention, vanilla_with_projections

NAMES = ["clustered", "improved_clustered"]
SMALL = {"num_clusters": 8, "bits": 16, "iterations": 3}


def build(name: str, **opts):
    torch.manual_seed(0)
    extra = {"topk": 8} if name == "improved_clustered" else {}
    return build_attention(name, d_model=32, n_heads=4, **{**SMALL, **extra, **opts})


def lengths_mask(lengths: list[int], n: int) -> torch.Tensor:
    return torch.arange(n)[None] < torch.tensor(lengths)[:, None]  # (B, N)


def split_qkv(m, x):
    return m.project(x)  # each (B, H, N, d)


@pytest.mark.parametrize("name", NAMES)
def test_as_many_clusters_as_tokens_equals_vanilla(name):
    m = build(name, num_clusters=64).eval()
    x = torch.randn(2, 64, 32)
    mask = lengths_mask([64, 37], 64)
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m(x, None), vanilla_with_projections(m, x, None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sequences_with_at_most_c_tokens_fall_back_to_exact(name):
    # N = 64 > C = 20: item 0 (12 real tokens, scattered) is exact, item 1 (all real) is clustered.
    m = build(name, num_clusters=20).eval()
    x = torch.randn(2, 64, 32)
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[0] = torch.randperm(64) < 12
    y, ref = m(x, mask), vanilla_with_projections(m, x, mask)
    torch.testing.assert_close(y[0], ref[0], rtol=1e-5, atol=1e-5)
    assert (y[1] - ref[1]).abs().max() > 1e-3  # the long item really was approximated


@pytest.mark.parametrize("name", NAMES)
def test_sequence_shorter_than_cluster_count_does_not_crash(name):
    m = build(name, num_clusters=100)  # default C, N = 16
    x = torch.randn(2, 16, 32, requires_grad=True)
    mask = lengths_mask([16, 5], 16)
    y = m.train()(x, mask)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    m.eval()
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn", [clustered_attention, improved_clustered_attention])
def test_one_query_per_cluster_equals_exact(fn):
    q, k, v = torch.randn(3, 2, 4, 48, 8).unbind(0)
    valid = lengths_mask([48, 30], 48)
    clusters = torch.arange(48).expand(2, 4, 48)  # (B, H, N): every query its own cluster
    kw = {"topk": 5} if fn is improved_clustered_attention else {}
    out = fn(q, k, v, clusters, valid, 48, **kw)
    ref = softmax_attention(q, k, v, valid)
    torch.testing.assert_close(
        out[valid[:, None].expand(-1, 4, -1)], ref[valid[:, None].expand(-1, 4, -1)], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", NAMES)
def test_kmeans_with_identical_queries_per_cluster_equals_vanilla(name):
    # 8 distinct tokens, token 0 twice (N = 9 > C = 8). When k-means puts only identical queries
    # together, every centroid equals its members and the output is exact. Whether it does depends
    # on the random initial positions, so take the first seed for which it does.
    torch.manual_seed(0)
    tokens = torch.randn(1, 8, 32)
    token_id = torch.tensor([0, 1, 2, 3, 0, 4, 5, 6, 7])
    x = tokens[:, token_id]  # (B, N, D)
    for seed in range(40):
        torch.manual_seed(1)  # the same weights for every seed
        m = build_attention(name, d_model=32, n_heads=1, num_clusters=8, bits=32, iterations=3, seed=seed).eval()
        clusters = m.cluster(split_qkv(m, x)[0], torch.ones(1, 9, dtype=torch.bool))[0, 0]  # (N,)
        if (clusters * 8 + token_id).unique().numel() == clusters.unique().numel():  # one token per cluster
            break
    else:
        pytest.fail("no seed gave one token per cluster")
    torch.testing.assert_close(m(x), vanilla_with_projections(m, x, None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("topk", [None, 3, 7, 30])
def test_matches_the_equations_written_out(topk):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 20, 4, generator=g).unbind(0)
    valid = lengths_mask([20, 6], 20)  # item 1 has fewer real keys than topk=7: padded top keys are masked
    clusters = torch.randint(0, 4, (2, 2, 20), generator=g)
    if topk is None:
        out = clustered_attention(q, k, v, clusters, valid, 4)
    else:
        out = improved_clustered_attention(q, k, v, clusters, valid, 4, topk)
    keep = valid[:, None].expand(-1, 2, -1)
    torch.testing.assert_close(out[keep], clustered_loop(q, k, v, clusters, valid, 4, topk)[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_layer_matches_the_equations_given_its_own_clustering(name):
    """The whole layer in float64 (projections, centroids, per-cluster softmax, top-k correction, W_o)
    against the equations written out per cluster and query, for the clustering the layer draws.

    Item 0 has a tail and a hole, item 1 is full, item 2 has 6 <= C real tokens (exact fallback).
    """
    m = build(name, num_clusters=6, **({"topk": 5} if name == "improved_clustered" else {}))
    m = m.double().eval()
    x = torch.randn(3, 40, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[0, 30:] = False
    mask[0, 8:12] = False
    mask[2] = torch.randperm(40, generator=torch.Generator().manual_seed(3)) < 6
    with torch.no_grad():
        y, ref = m(x, mask), clustered_reference(m, x, mask)
        clusters = m.cluster(split_qkv(m, x)[0], mask)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)
    sizes = torch.stack([(clusters[:2] == j).sum(-1) for j in range(6)], -1)  # (2, H, C) members per cluster
    assert (sizes > 1).any()  # queries really share centroids: the clustering is tested, not bypassed
    assert (y[:2] - vanilla_with_projections(m, x, mask)[:2]).abs().max() > 1e-3


def test_chunk_layout_seats_each_query_once_with_its_cluster():
    g = torch.Generator().manual_seed(0)
    clusters = torch.cat([torch.randint(0, 5, (3, 50), generator=g), torch.zeros(1, 50, dtype=torch.long)])
    for size in (1, 4, 10, 64):
        slot, chunk_cluster = chunk_layout(clusters, 5, size)  # (G, N), (G, M)
        assert chunk_cluster.shape == (4, -(-50 // size) + 5)
        assert all(row.unique().numel() == 50 for row in slot)  # one query per slot
        assert (slot < chunk_cluster.shape[1] * size).all()
        torch.testing.assert_close(chunk_cluster.gather(1, slot // size), clusters, rtol=0, atol=0)


def test_improved_with_topk_n_equals_vanilla_under_any_clustering():
    m = build("improved_clustered", topk=64).eval()
    x = torch.randn(2, 64, 32)
    mask = lengths_mask([64, 50], 64)
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-5)
    # and for an arbitrary random clustering, topk larger than N is clamped
    q, k, v = torch.randn(3, 2, 4, 40, 8).unbind(0)
    valid = lengths_mask([40, 23], 40)
    clusters = torch.randint(0, 5, (2, 4, 40))
    out = improved_clustered_attention(q, k, v, clusters, valid, 5, topk=100)
    keep = valid[:, None].expand(-1, 4, -1)
    torch.testing.assert_close(out[keep], softmax_attention(q, k, v, valid)[keep], rtol=1e-5, atol=1e-5)


def test_improved_is_closer_to_vanilla_than_plain():
    # Queries from 16 groups, peaked attention: the exact top keys fix most of the centroid's error.
    g = torch.Generator().manual_seed(0)
    b, h, n, d = 2, 4, 256, 16
    centers = torch.randn(b, h, 16, d, generator=g)
    q = 2 * (centers[:, :, torch.randint(0, 16, (n,), generator=g)] + 0.3 * torch.randn(b, h, n, d, generator=g))
    k, v = torch.randn(2, b, h, n, d, generator=g).unbind(0)
    valid = lengths_mask([256, 200], n)
    clusters, _ = cluster_queries(q, valid, num_clusters=32, bits=63, iterations=10, generator=g)
    keep = valid[:, None].expand(-1, h, -1)
    ref = softmax_attention(q, k, v, valid)[keep]
    err_plain = (clustered_attention(q, k, v, clusters, valid, 32)[keep] - ref).norm() / ref.norm()
    err_improved = (improved_clustered_attention(q, k, v, clusters, valid, 32, topk=32)[keep] - ref).norm() / ref.norm()
    assert err_improved < 0.5 * err_plain, (err_improved, err_plain)


def test_improved_layer_is_closer_to_vanilla_than_plain_layer():
    torch.manual_seed(0)
    opts = {"d_model": 32, "n_heads": 4, "num_clusters": 16, "bits": 32, "iterations": 10}
    plain = build_attention("clustered", **opts).eval()
    improved = build_attention("improved_clustered", topk=32, **opts).eval()
    improved.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(3)
    centers = 2 * torch.randn(2, 16, 32, generator=g)
    x = centers[:, torch.randint(0, 16, (256,), generator=g)] + 0.3 * torch.randn(2, 256, 32, generator=g)
    mask = lengths_mask([256, 200], 256)
    ref = vanilla_with_projections(plain, x, mask)
    assert (improved(x, mask) - ref).norm() < (plain(x, mask) - ref).norm()


@pytest.mark.parametrize("fn", [clustered_attention, improved_clustered_attention])
def test_centroid_path_passes_gradcheck_with_frozen_clustering(fn):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 1, 8, 3, generator=g, dtype=torch.float64).unbind(0)
    q, k, v = q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
    valid = lengths_mask([8, 6], 8)
    clusters = torch.randint(0, 3, (2, 1, 8), generator=g)
    kw = {"topk": 3} if fn is improved_clustered_attention else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny calls: waking a second thread would dominate the time
    try:
        assert torch.autograd.gradcheck(lambda q, k, v: fn(q, k, v, clusters, valid, 3, **kw), (q, k, v))
    finally:
        torch.set_num_threads(threads)


def layer_and_queries(name: str, training: bool):
    m = build(name).train(training)
    x = torch.randn(2, 64, 32)
    return m, x, split_qkv(m, x)[0], torch.ones(2, 64, dtype=torch.bool)


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_reproducible_and_seed_changes_the_clustering(name):
    m, x, q, valid = layer_and_queries(name, training=False)
    torch.testing.assert_close(m.cluster(q, valid), m.cluster(q, valid), rtol=0, atol=0)
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
    other = build(name, seed=1).eval()
    assert not torch.equal(m.cluster(q, valid), other.cluster(q, valid))
    assert not torch.allclose(m(x), other(x))


@pytest.mark.parametrize("name", NAMES)
def test_training_draws_fresh_hyperplanes(name):
    m, x, q, valid = layer_and_queries(name, training=True)
    assert not torch.equal(m.cluster(q, valid), m.cluster(q, valid))
    assert not torch.allclose(m(x), m(x))


def noisy_group(center: torch.Tensor, count: int, g: torch.Generator, flips: int = 1) -> torch.Tensor:
    """``count`` copies of the bit vector ``center`` with ``flips`` random bits flipped each."""
    codes = center.repeat(count, 1)
    cols = torch.rand(count, center.numel(), generator=g).argsort(-1)[:, :flips]
    return codes.scatter(1, cols, 1 - codes.gather(1, cols))


def test_hamming_kmeans_recovers_two_obvious_groups():
    g = torch.Generator().manual_seed(0)
    zeros, ones = torch.zeros(16), torch.ones(16)
    codes = torch.cat([noisy_group(zeros, 5, g), noisy_group(ones, 7, g), torch.rand(4, 16, generator=g).round()])
    perm = torch.randperm(16, generator=g)
    group = torch.tensor([0] * 5 + [1] * 7 + [-1] * 4)[perm]  # -1: padding
    codes = codes[perm][None, None]  # (1, 1, 16, bits)
    valid = (group >= 0)[None]  # (1, N)
    for seed in range(5):
        clusters, counts = hamming_kmeans(codes, valid, 2, 3, torch.Generator().manual_seed(seed))
        c = clusters[0, 0]
        assert c[group == 0].unique().numel() == 1 and c[group == 1].unique().numel() == 1
        assert c[group == 0][0] != c[group == 1][0]
        assert sorted(counts[0, 0].tolist()) == [5, 7]  # padded queries are not counted


def test_padded_queries_do_not_vote():
    # Many padded codes, redrawn: the clustering of the real queries and the counts stay the same.
    g = torch.Generator().manual_seed(1)
    real = torch.rand(2, 3, 10, 12, generator=g).round()  # (B, H, 10 real, bits)
    valid = torch.cat([torch.ones(2, 10), torch.zeros(2, 40)], dim=1).bool()
    results = []
    for _ in range(2):
        padded = torch.rand(2, 3, 40, 12, generator=g).round()
        codes = torch.cat([real, padded], dim=2)
        results.append(hamming_kmeans(codes, valid, 4, 5, torch.Generator().manual_seed(0)))
    (c1, n1), (c2, n2) = results
    torch.testing.assert_close(c1[..., :10], c2[..., :10], rtol=0, atol=0)
    torch.testing.assert_close(n1, n2, rtol=0, atol=0)
    assert (n1.sum(-1) == 10).all()


def test_identical_codes_leave_the_other_clusters_empty():
    codes = torch.ones(1, 2, 9, 16)
    clusters, counts = hamming_kmeans(codes, torch.ones(1, 9, dtype=torch.bool), 3, 4, torch.Generator())
    assert (clusters == clusters[..., :1]).all()
    assert sorted(counts[0, 0].tolist()) == [0, 0, 9]


def test_cluster_queries_rejects_more_clusters_than_tokens():
    with pytest.raises(ValueError, match="num_clusters"):
        cluster_queries(
            torch.randn(1, 1, 4, 8), torch.ones(1, 4, dtype=torch.bool), num_clusters=5, bits=8, iterations=1
        )


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_stays_close_to_float32(name):
    m = build(name).eval()
    x = torch.randn(2, 64, 32)
    mask = lengths_mask([64, 45], 64)
    y32 = m(x, mask)
    y16 = m.to(torch.bfloat16)(x.bfloat16(), mask)
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, rtol=0.05, atol=0.05)
