"""TSSA (ToST): the identities its module docstring states, the causal prefix-sum form, and the formula pinned."""

import pytest
import torch

from models.attention import build_attention
from models.attention.tssa import tssa_core
from tests.oracles import tssa_reference

B, N, D, H = 2, 64, 32, 4


def make(n_heads: int = H, causal: bool = False):
    torch.manual_seed(0)
    return build_attention("tssa", d_model=D, n_heads=n_heads, causal=causal).eval()


def data(n: int = N, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, n, D, generator=torch.Generator().manual_seed(seed))


def projected(m, x):
    b, n, _ = x.shape
    return m.u_proj(x).view(b, n, m.n_heads, -1)  # (B, N, H, d)


@pytest.mark.parametrize("causal", [False, True])
def test_matches_the_formula_written_out(causal):
    """The whole layer against a token-by-token float64 transcription, with a tail and a mid-sequence hole.

    Distinct temperatures per head make a swapped head axis visible.
    """
    torch.manual_seed(0)
    m = build_attention("tssa", d_model=16, n_heads=4, causal=causal).double().eval()
    with torch.no_grad():
        m.tau.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0]))
    x = 3 * torch.randn(2, 40, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[0, 30:] = False
    mask[1, 5:12] = False
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), tssa_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


def test_permutation_equivariance():
    m, x = make(), data()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(m(x[:, perm]), m(x)[:, perm], rtol=1e-5, atol=1e-6)


def test_padded_equals_unpadded():
    m, x = make(), data(n=50)
    padded = torch.cat([x, 50 * torch.randn(B, 14, D)], dim=1)
    mask = (torch.arange(64) < 50)[None].expand(B, -1)
    y = m(padded, mask)
    torch.testing.assert_close(y[:, :50], m(x), rtol=1e-5, atol=1e-6)


def test_unmasked_pi_would_change_the_result():
    """Zeroing W at padding alone is not enough: padded tokens still hold Pi = 1/H in sum_i Pi."""
    m, x = make(), data(n=50)
    padded = torch.cat([x, torch.randn(B, 14, D)], dim=1)
    mask = (torch.arange(64) < 50)[None].expand(B, -1)
    ref = tssa_core(projected(m, x), m.tau).y
    good = tssa_core(projected(m, padded), m.tau, mask).y[:, :50]
    bad_res = tssa_core(projected(m, padded), m.tau, mask, mask_pi=False)
    torch.testing.assert_close(good, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bad_res.pi[:, 50:], torch.full_like(bad_res.pi[:, 50:], 1 / H))
    assert (bad_res.y[:, :50] - ref).abs().max() > 1e-3


@pytest.mark.parametrize("causal", [False, True])
def test_pi_sums_to_one_over_heads_and_is_zero_at_padding(causal):
    """The softmax runs over the heads (not the tokens); a padded token holds no membership at all."""
    m, x = make(causal=causal), data()
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, 50:] = False
    mask[1, 10:14] = False
    pi = tssa_core(projected(m, x), m.tau, mask, causal=causal).pi  # (B, N, H)
    torch.testing.assert_close(pi.sum(dim=-1), mask.to(pi.dtype))


def test_one_head_statistic_is_the_mean_of_w_squared():
    m, x = make(n_heads=1), data()
    w = projected(m, x)  # (B, N, 1, D)
    res = tssa_core(w, m.tau)
    torch.testing.assert_close(res.stat, w.square().mean(dim=1, keepdim=True), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(res.y, -w / (1 + w.square().mean(dim=1, keepdim=True)))


def test_causal_output_ignores_the_future():
    m, x = make(causal=True), data()
    changed = x.clone()
    changed[:, 40:] = 10 * torch.randn(B, N - 40, D)
    y1, y2 = m(x), m(changed)
    torch.testing.assert_close(y1[:, :40], y2[:, :40], rtol=0, atol=0)
    assert (y1[:, 40:] - y2[:, 40:]).abs().max() > 1e-3


def _last_token_of_prefixes(m, x):
    """Non-causal TSSA run on every prefix x[:, :i+1], keeping the output at its last token i."""
    return torch.stack([tssa_core(projected(m, x[:, : i + 1]), m.tau).y[:, i] for i in range(x.shape[1])], dim=1)


@pytest.mark.parametrize("n_heads,tau", [(1, 1.0), (H, 0.0)])
def test_causal_equals_noncausal_prefix_when_memberships_are_fixed(n_heads, tau):
    """With H = 1 (Pi = 1) or tau = 0 (Pi = 1/H), causal output at i = non-causal output of x[:i+1] at i."""
    m, x = make(n_heads=n_heads), data(n=24)
    m.tau.data.fill_(tau)
    causal = tssa_core(projected(m, x), m.tau, causal=True).y
    torch.testing.assert_close(causal, _last_token_of_prefixes(m, x), rtol=1e-5, atol=1e-6)


def test_causal_last_token_membership_is_the_prefix_one_but_statistics_differ():
    """In general only token i's own Pi matches the prefix run: earlier tokens keep their step-j memberships."""
    m, x = make(), data(n=24)
    res = tssa_core(projected(m, x), m.tau, causal=True)
    prefix_pi = torch.stack([tssa_core(projected(m, x[:, : i + 1]), m.tau).pi[:, i] for i in range(24)], dim=1)
    torch.testing.assert_close(res.pi, prefix_pi, rtol=1e-5, atol=1e-6)
    assert (res.y - _last_token_of_prefixes(m, x)).abs().max() > 1e-3


def test_causal_padding_anywhere_is_ignored():
    """Zeroed W and Pi drop a padded token from every prefix sum, even in the middle of the sequence."""
    m, x = make(causal=True), data(n=40)
    keep = torch.ones(40, dtype=torch.bool)
    keep[10:16] = False
    mask = keep[None].expand(B, -1)
    y = m(x, mask)
    torch.testing.assert_close(y[:, keep], m(x[:, keep]), rtol=1e-5, atol=1e-6)


def test_tau_is_excluded_from_weight_decay():
    m = make()
    names = dict(m.named_parameters())
    assert m.no_weight_decay() == {"tau"} and names["tau"].shape == (H,)
    assert torch.equal(names["tau"], torch.ones(H))
