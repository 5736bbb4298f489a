"""Longformer: HF's pattern with padding, the window >= 2N limit, the CLS token and the other global tokens."""

import pytest
import torch

from models.attention import build_attention
from models.attention.longformer import window_warnings
from tests.oracles import vanilla_with_projections
from tests.oracles_longformer import longformer_reference

B, N, D, H = 2, 60, 16, 2


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention("longformer", d_model=D, n_heads=H, **opts).to(dtype).eval()


def inputs(n=N, dtype=torch.float32):
    """Item 0 padded from 44 on with a hole at 1 (a global position with global_tokens 2); item 1 with
    16..31 padded (with window 8, whole blocks of 4 and queries with no real key in their band)."""
    x = torch.randn(B, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[0, 44:] = False
    mask[0, 1] = False
    mask[1, 16:32] = False
    return x, mask


@pytest.mark.parametrize(("window", "global_tokens"), [(8, 0), (8, 2), (7, 1), (2, 0)])
def test_layer_matches_the_reference_pattern_in_float64(window, global_tokens):
    m = make(torch.float64, window=window, global_tokens=global_tokens)
    x, mask = inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), longformer_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window", [2 * N, 500])
def test_a_window_of_twice_the_length_is_vanilla(window):
    m = make(window=window, global_tokens=3)
    x, mask = inputs()
    for msk in (mask, None):
        torch.testing.assert_close(m(x, msk), vanilla_with_projections(m, x, msk), rtol=1e-5, atol=1e-6)


def test_a_window_of_the_length_is_not_vanilla():
    """window = N reaches N/2 on each side: token 0 does see everything (global), token 59 does not."""
    m = make(window=N)
    x, _ = inputs()
    diff = (m(x, None) - vanilla_with_projections(m, x, None)).abs()
    assert diff[:, 0].max() < 1e-5 and diff[:, -1].max() > 1e-3


def test_the_cls_token_and_the_global_tokens_see_and_are_seen_by_everything():
    m = make(window=8, global_tokens=1)  # global: positions 0 and 1
    x, _ = inputs()
    y = m(x, None)

    def moved(pos, query):
        x2 = x.clone()
        x2[:, pos] += 3.0
        return (m(x2, None)[:, query] - y[:, query]).abs().max().item()

    assert moved(59, 0) > 1e-3 and moved(59, 1) > 1e-3  # global queries see the far end
    assert moved(0, 59) > 1e-3 and moved(1, 59) > 1e-3  # the far end sees the global keys
    assert moved(2, 59) == 0 and moved(50, 59) == 0  # outside the band, not global
    assert moved(55, 59) > 1e-3 and moved(55, 30) == 0  # the band reaches window/2 = 4 each side


def test_global_tokens_beyond_the_length_make_everything_global():
    m = make(window=4, global_tokens=100)
    x, mask = inputs()
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-6)


def test_appended_padding_leaves_the_real_positions_unchanged():
    m = make(window=8, global_tokens=2)
    x, _ = inputs()
    real = x[:1, :37]
    padded = torch.cat([real, 50 * torch.randn(1, 23, D)], dim=1)
    mask = torch.arange(N)[None] < 37
    torch.testing.assert_close(m(padded, mask)[:, :37], m(real, None), rtol=1e-5, atol=1e-6)


def test_fully_padded_blocks_leave_no_nan_in_output_or_gradients():
    m = make(window=8)
    x, mask = inputs()
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all() and torch.equal(y[1, 16:32], torch.zeros(16, D))
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_a_window_reaching_every_key_is_warned_about():
    assert list(window_warnings({"window": 120, "global_tokens": 0}, 60))
    assert not list(window_warnings({"window": 119, "global_tokens": 0}, 60))
