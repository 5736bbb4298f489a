"""Local attention: the reference forward with padding, the window >= N limit, SRformer's shared block machinery."""

import pytest
import torch

from models.attention import build_attention
from tests.oracles import vanilla_with_projections
from tests.oracles_local import local_reference

B, N, D, H = 2, 60, 16, 2


def make(name="local", dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention(name, d_model=D, n_heads=H, **opts).to(dtype).eval()


def inputs(n=N, dtype=torch.float32):
    """Item 0 padded from 44 on with a hole at 3; item 1 with 16..23 padded (with window 8, a fully padded block)."""
    x = torch.randn(B, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[0, 44:] = False
    mask[0, 3] = False
    mask[1, 16:24] = False
    return x, mask


@pytest.mark.parametrize("neighbours", [0, 1, 2])
def test_layer_matches_the_reference_forward_in_float64(neighbours):
    """Window 8 on 60 tokens: 8 blocks, the last one 4 tokens long."""
    m = make(dtype=torch.float64, window=8, neighbours=neighbours)
    x, mask = inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), local_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window", [N, 100])
def test_a_window_covering_the_sequence_is_vanilla(window):
    m = make(window=window)
    x, mask = inputs()
    for msk in (mask, None):
        torch.testing.assert_close(m(x, msk), vanilla_with_projections(m, x, msk), rtol=1e-5, atol=1e-6)


def test_a_smaller_window_is_not_vanilla():
    """Guards the limit test against a layer that ignores the window."""
    m = make(window=16)
    x, _ = inputs()
    assert (m(x, None) - vanilla_with_projections(m, x, None)).abs().max() > 1e-2


def test_appended_padding_leaves_the_real_positions_unchanged():
    m = make(window=8, neighbours=1)
    x, _ = inputs()
    real = x[:1, :37]  # 37 tokens: the last block holds 5
    padded = torch.cat([real, 50 * torch.randn(1, 23, D)], dim=1)
    mask = torch.arange(N)[None] < 37
    torch.testing.assert_close(m(padded, mask)[:, :37], m(real, None), rtol=1e-5, atol=1e-6)


def test_a_fully_padded_block_leaves_no_nan_in_output_or_gradients():
    m = make(window=8)
    x, mask = inputs()
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all() and torch.equal(y[1, 16:24], torch.zeros(8, D))
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_srformer_without_recurrence_is_local_attention_with_the_same_weights():
    """``local`` and SRformer's local term are one block machinery: same q/k/v/o, same output."""
    local = make(window=8)
    srformer = make("srformer", segment_size=8, recurrent=False)
    srformer.load_state_dict(local.state_dict(), strict=False)
    x, mask = inputs()
    for msk in (mask, None):
        torch.testing.assert_close(srformer(x, msk), local(x, msk), rtol=0, atol=0)


def test_bad_sizes_are_refused_naming_them():
    with pytest.raises(ValueError, match="window >= 1 and neighbours >= 0, got window=0"):
        make(window=0)
