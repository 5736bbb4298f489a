"""CAST: degenerate limits, the single-assignment rule, the combination rule and surrogate gradients."""

import pytest
import torch

from models.attention import build_attention
from models.attention.cast import sa_topk_assign, sa_topk_clusters
from tests.oracles import cast_reference, slow_cast, slow_rounds, vanilla_with_projections

D, H = 32, 4


def make(**opts):
    return build_attention("cast", d_model=D, n_heads=H, **opts).eval()


def padded_inputs(b=2, n=24, n_pad=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, D, generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - n_pad :] = False
    return x, mask


def random_affinities(shape, n_pad=0, seed=0):
    """Random (B, H, N, Nc) affinities with the last n_pad tokens of item 0 padded (-inf)."""
    ag = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if n_pad:
        ag[0, :, -n_pad:, :] = float("-inf")
    return ag


@pytest.mark.parametrize(
    ("clustering", "num_clusters", "cluster_size"),
    [("topk", 1, 24), ("sa_topk", 1, 24), ("topk", 3, 24), ("topk", 5, 24), ("topk", 4, 1000), ("sa_topk", 1, 1000)],
)
def test_degenerate_limits_equal_vanilla(clustering, num_clusters, cluster_size):
    # Nc = 1 with kappa = N, or topk with kappa = N (clamped from larger values), is exact attention
    m = make(num_clusters=num_clusters, cluster_size=cluster_size, clustering=clustering)
    x, mask = padded_inputs()
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m(x, None), vanilla_with_projections(m, x, None), rtol=1e-5, atol=1e-5)


def test_limit_is_not_vanilla_when_clusters_are_small():
    # guards the limit test against an implementation that is always exact attention
    m = make(num_clusters=3, cluster_size=4)
    x, mask = padded_inputs()
    assert (m(x, mask) - vanilla_with_projections(m, x, mask)).abs().max() > 1e-3


@pytest.mark.parametrize(("clustering", "num_clusters", "cluster_size"), [("topk", 3, 20), ("sa_topk", 3, 10)])
def test_padded_sequence_equals_unpadded(clustering, num_clusters, cluster_size):
    # 17 real tokens: topk clusters must take padded members (kappa 20), sa_topk clusters have
    # empty slots (room for 30); both must be masked out of the intra attention and the summaries
    m = make(num_clusters=num_clusters, cluster_size=cluster_size, clustering=clustering)
    x, mask = padded_inputs(b=1, n=24, n_pad=7)
    torch.testing.assert_close(m(x, mask)[:, :17], m(x[:, :17], None), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("num_clusters", "kappa", "n_pad"), [(5, 8, 0), (5, 8, 9), (4, 13, 5), (3, 40, 0)])
def test_sa_topk_assigns_every_real_token_exactly_once(num_clusters, kappa, n_pad):
    n = 40  # kappa * Nc >= N in every case
    ag = random_affinities((2, 3, n, num_clusters), n_pad=n_pad)
    real = ag[..., 0] > float("-inf")
    assign = sa_topk_assign(ag, kappa)
    assert (assign[real] >= 0).all() and (assign[~real] == -1).all()
    counts = torch.nn.functional.one_hot(assign.clamp(min=0), num_clusters).mul(real[..., None]).sum(-2)
    assert counts.max() <= kappa
    idx, valid = sa_topk_clusters(ag, kappa)
    times = torch.zeros_like(ag[..., 0]).scatter_add(-1, idx.flatten(-2), valid.flatten(-2).float())
    assert torch.equal(times, real.float())


def test_sa_topk_with_too_little_room_fills_every_cluster_without_repeats():
    n, num_clusters, kappa = 40, 3, 5
    ag = random_affinities((2, 3, n, num_clusters), n_pad=6)
    assign = sa_topk_assign(ag, kappa)
    counts = torch.stack([(assign == j).sum(-1) for j in range(num_clusters)], -1)
    assert (counts == kappa).all()  # 34 real tokens, room for 15: every cluster full, none over
    idx, valid = sa_topk_clusters(ag, kappa)
    times = torch.zeros_like(ag[..., 0]).scatter_add(-1, idx.flatten(-2), valid.flatten(-2).float())
    assert times.max() == 1 and times.sum() == 2 * 3 * num_clusters * kappa
    assert (times[0, :, -6:] == 0).all()  # padding is never picked


def test_sa_topk_is_greedy_a_token_only_misses_clusters_that_are_full():
    n, num_clusters, kappa = 30, 4, 6
    ag = random_affinities((2, 3, n, num_clusters), n_pad=4)
    assign = sa_topk_assign(ag, kappa)
    full = torch.stack([(assign == j).sum(-1) for j in range(num_clusters)], -1) == kappa  # (B, H, Nc)
    own = ag.gather(-1, assign.clamp(min=0)[..., None]).masked_fill(assign[..., None] < 0, float("-inf"))
    preferred = (ag > own) & (ag[..., :1] > float("-inf"))  # real token i would rather be in cluster j
    assert not (preferred & ~full[:, :, None, :]).any()


@pytest.mark.parametrize(("n", "num_clusters", "kappa", "n_pad"), [(12, 3, 4, 2), (20, 4, 3, 3), (16, 2, 10, 0)])
def test_sa_topk_matches_the_rounds_written_token_by_token(n, num_clusters, kappa, n_pad):
    ag = random_affinities((2, 2, n, num_clusters), n_pad=n_pad, seed=3)
    assign = sa_topk_assign(ag, kappa)
    for b in range(2):
        for h in range(2):
            assert assign[b, h].tolist() == slow_rounds(ag[b, h], kappa)


def test_sa_topk_with_one_cluster_takes_the_top_kappa():
    ag = random_affinities((1, 2, 20, 1), n_pad=5)
    idx, valid = sa_topk_clusters(ag, 6)
    assert valid.all()
    assert torch.equal(idx.sort(-1).values, ag[..., 0].topk(6, -1).indices[:, :, None].sort(-1).values)


@pytest.mark.parametrize("clustering", ["topk", "sa_topk"])
def test_output_does_not_depend_on_the_order_of_the_surrogates(clustering):
    m = make(num_clusters=5, cluster_size=6, clustering=clustering)
    x, mask = padded_inputs()
    y = m(x, mask)
    with torch.no_grad():
        m.surrogates.copy_(m.surrogates[:, torch.tensor([3, 0, 4, 2, 1])])
    torch.testing.assert_close(m(x, mask), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clustering", ["topk", "sa_topk"])
def test_surrogates_get_a_correct_gradient(clustering):
    # S reaches the loss only through Aq (combination weights) and Ak (summary weights); gradcheck
    # in float64 (small steps do not change the selection) checks both paths, and S.grad != 0
    m = make(num_clusters=3, cluster_size=4, clustering=clustering).double()
    x, mask = padded_inputs(b=1, n=12, n_pad=2)
    x = x.double()
    m.train()
    (m(x, mask)[mask] ** 2).sum().backward()
    assert m.surrogates.grad is not None and m.surrogates.grad.abs().min() > 0

    probe = torch.randn(1, 12, D, dtype=torch.float64)

    def loss(s):  # a scalar keeps gradcheck to one backward pass per check
        return (torch.func.functional_call(m, {"surrogates": s}, (x, mask)) * probe).sum()

    assert torch.autograd.gradcheck(loss, (m.surrogates.detach().clone().requires_grad_(True),), fast_mode=True)


@pytest.mark.parametrize("clustering", ["topk", "sa_topk"])
@pytest.mark.parametrize("padded", [False, True])
def test_combination_rule_matches_a_token_by_token_reference(clustering, padded):
    m = build_attention("cast", d_model=8, n_heads=1, num_clusters=2, cluster_size=3, clustering=clustering).eval()
    with torch.no_grad():
        m.surrogates.normal_(0, 1.0)  # spread the affinities so clusters differ
    x = torch.randn(1, 8, 8)
    mask = torch.ones(1, 8, dtype=torch.bool)
    if padded:
        mask[0, 6:] = False
    with torch.no_grad():
        q, k, v = m.project(x)
        out = m.attend(q, k, v, mask if padded else None)[0, 0]
        ref = slow_cast(q[0, 0], k[0, 0], v[0, 0], m.surrogates[0], mask[0], 3, clustering)
    torch.testing.assert_close(out[mask[0]], ref[mask[0]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clustering", ["topk", "sa_topk"])
def test_layer_matches_the_token_by_token_reference_in_float64(clustering):
    """The whole layer (H = 2, projections, surrogates, W_o) in float64 against steps 1-6 written out,
    with a padded item; kappa * Nc < N so tokens sit in no cluster, one or (topk) several."""
    torch.manual_seed(0)
    m = build_attention("cast", d_model=16, n_heads=2, num_clusters=3, cluster_size=4, clustering=clustering)
    m = m.double().eval()
    with torch.no_grad():
        m.surrogates.normal_(0, 1.0)  # spread the affinities so clusters differ
    x = torch.randn(2, 14, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[0, 10:] = False
    mask[0, 3] = False
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), cast_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


def test_bad_options_name_the_valid_values():
    with pytest.raises(ValueError, match="topk.*sa_topk"):
        make(clustering="kmeans")
    for bad in ({"num_clusters": 0}, {"cluster_size": -1}):
        with pytest.raises(ValueError, match="positive"):
            make(**bad)
