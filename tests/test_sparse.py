"""Sparse Transformer fixed pattern: LRA's mask (bidirectional) with padding, the stride >= N limit, summaries."""

import pytest
import torch

from models.attention import build_attention
from tests.oracles import vanilla_with_projections
from tests.oracles_sparse import sparse_mask, sparse_reference

B, N, D, H = 2, 60, 16, 2


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention("sparse", d_model=D, n_heads=H, **opts).to(dtype).eval()


def inputs(n=N, dtype=torch.float32):
    """Item 0 padded from 44 on with a hole at 6 (a summary position with stride 8, summary 3); item 1
    with 16..23 padded (a fully padded block)."""
    x = torch.randn(B, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[0, 44:] = False
    mask[0, 6] = False
    mask[1, 16:24] = False
    return x, mask


@pytest.mark.parametrize(("stride", "summary"), [(8, 3), (16, 1), (7, 7)])
def test_layer_matches_lras_mask_in_float64(stride, summary):
    """60 tokens: the last block is partial (no summary positions with stride 8 or 16)."""
    m = make(torch.float64, stride=stride, summary=summary)
    x, mask = inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), sparse_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


def test_the_mask_is_the_block_plus_the_last_summary_tokens_of_every_block():
    """The oracle's pattern, spelled out for stride 4, summary 1 on 10 tokens."""
    allowed = sparse_mask(10, 4, 1)
    assert allowed[0].nonzero().flatten().tolist() == [0, 1, 2, 3, 7]
    assert allowed[5].nonzero().flatten().tolist() == [3, 4, 5, 6, 7]
    assert allowed[9].nonzero().flatten().tolist() == [3, 7, 8, 9]  # the partial last block has no summary


@pytest.mark.parametrize("stride", [N, 100])
def test_a_stride_covering_the_sequence_is_vanilla(stride):
    m = make(stride=stride, summary=8)
    x, mask = inputs()
    for msk in (mask, None):
        torch.testing.assert_close(m(x, msk), vanilla_with_projections(m, x, msk), rtol=1e-5, atol=1e-6)


def test_a_query_sees_the_summary_of_a_far_block_and_nothing_else_of_it():
    m = make(stride=8, summary=2)
    x, _ = inputs()
    y = m(x, None)

    def moved(pos):
        x2 = x.clone()
        x2[:, pos] += 3.0
        return (m(x2, None)[:, 0] - y[:, 0]).abs().max().item()  # query 0, in block 0

    assert moved(46) > 1e-3 and moved(47) > 1e-3  # the last two tokens of block 5
    assert moved(45) == 0 and moved(40) == 0  # block 5's other tokens
    assert moved(3) > 1e-3  # its own block


def test_appended_padding_leaves_the_real_positions_unchanged():
    m = make(stride=8, summary=3)
    x, _ = inputs()
    real = x[:1, :37]  # the last block holds 5 tokens, none of them in its summary
    padded = torch.cat([real, 50 * torch.randn(1, 23, D)], dim=1)
    mask = torch.arange(N)[None] < 37
    torch.testing.assert_close(m(padded, mask)[:, :37], m(real, None), rtol=1e-5, atol=1e-6)


def test_a_fully_padded_block_leaves_no_nan_in_output_or_gradients():
    m = make(stride=8, summary=3)
    x, mask = inputs()
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all() and torch.equal(y[1, 16:24], torch.zeros(8, D))
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_a_summary_longer_than_the_stride_is_refused():
    with pytest.raises(ValueError, match="1 <= summary <= stride, got stride=4, summary=5"):
        make(stride=4, summary=5)
