"""Sinkhorn attention: the reference forward with padding, the one-block limit, padding, the sorting matrix."""

import pytest
import torch

from models.attention import build_attention
from models.attention.sinkhorn import sinkhorn_log
from tests.oracles import merge_and_project, softmax_attention, split_qkv, vanilla_with_projections
from tests.oracles_sinkhorn import sinkhorn_reference

D, H = 16, 2


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention("sinkhorn", d_model=D, n_heads=H, **opts).to(dtype).eval()


def inputs(b=2, n=30, dtype=torch.float32, seed=1):
    x = torch.randn(b, n, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - 5 :] = False  # trailing padding inside the last block
    mask[0, 2] = False  # a hole inside a block
    mask[1, 8:14] = False  # item 1: block 2 (positions 8..11, block_size 4) fully padded, in the middle
    return x, mask


@pytest.mark.parametrize("two", [False, True])
def test_layer_matches_the_reference_forward_in_float64(two):
    # N = 30, block_size 4: 8 blocks, the last one half padding; non-default temperature and iterations
    m = make(torch.float64, block_size=4, max_len=33, iterations=3, temperature=0.5, lra_two_softmax=two)
    with torch.no_grad():  # sort net weights large enough that P is far from uniform
        m.sort_net.weight.mul_(3.0)
    x, mask = inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), sinkhorn_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # 28 = 7 whole blocks and no mask: the path without any mask
        torch.testing.assert_close(m(x[:, :28]), sinkhorn_reference(m, x[:, :28], None), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("block_size", [12, 40])
def test_one_block_is_vanilla_the_duplicated_keys_cancel(block_size):
    # one block (block_size >= N): P = [[1]], the sorted block is the own block, each key appears twice in
    # the one softmax: weights e^s / (2 sum e^s), each value twice, i.e. exactly softmax attention
    m = make(torch.float64, block_size=block_size, max_len=40)
    x, _ = inputs(n=12, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, 7:] = False
    mask[1, 3] = False
    for msk in (None, mask):
        torch.testing.assert_close(m(x, msk), vanilla_with_projections(m, x, msk), rtol=1e-12, atol=1e-12)
    m32 = make(block_size=block_size, max_len=40)
    x32 = x.float()
    torch.testing.assert_close(m32(x32, mask), vanilla_with_projections(m32, x32, mask), rtol=1e-5, atol=1e-6)


def test_lra_two_softmax_with_one_block_gives_twice_vanilla():
    m = make(torch.float64, block_size=16, max_len=16, lra_two_softmax=True)
    x, _ = inputs(n=16, dtype=torch.float64)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 10:] = False
    q, k, v = split_qkv(m, x)
    expected = merge_and_project(m, 2 * softmax_attention(q, k, v, mask), mask)
    torch.testing.assert_close(m(x, mask), expected, rtol=1e-12, atol=1e-12)


def test_several_blocks_are_not_vanilla():
    # guards the limit test against a layer that attends to everything
    m = make(block_size=4, max_len=16)
    x, _ = inputs(n=16)
    assert (m(x, None) - vanilla_with_projections(m, x, None)).abs().max() > 1e-2


def test_appended_padding_across_blocks_changes_no_real_position():
    # 21 real tokens (6 blocks of 4, the last partial) padded to 40 (10 blocks) with garbage
    m = make(block_size=4, max_len=40)
    x = torch.randn(1, 40, D, generator=torch.Generator().manual_seed(2))
    garbage = x.clone()
    garbage[0, 21:] = 50.0
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, 21:] = False
    y = m(garbage, mask)
    torch.testing.assert_close(y[:, :21], m(x[:, :21], None), rtol=1e-5, atol=1e-6)
    assert (y[:, 21:] == 0).all()


def test_a_fully_padded_block_gives_zeros_and_finite_gradients():
    m = make(block_size=4, max_len=32).train()
    x, mask = inputs(n=30)
    mask[1] = False  # item 1 entirely padding
    mask[0, 8:16] = False  # item 0: blocks 2 and 3 fully padded
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all()
    assert (y[~mask] == 0).all()
    y.square().sum().backward()
    for t in (x.grad, *(p.grad for p in m.parameters())):
        assert torch.isfinite(t).all()
    assert m.sort_net.weight.grad.abs().sum() > 0


def test_the_sorting_matrix_is_doubly_stochastic_on_real_blocks_and_padded_blocks_stay_put():
    m = make(block_size=4, max_len=40, iterations=8)
    x = torch.randn(1, 40, D, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, 8:12] = False  # block 2 padded
    mask[0, 28:] = False  # blocks 7..9 padded
    k = split_qkv(m, x)[1] * mask[:, None, :, None]
    with torch.no_grad():
        p = m.permutation(k, mask)  # (1, H, 10, 10)
    real = torch.tensor([0, 1, 3, 4, 5, 6])
    pad = torch.tensor([2, 7, 8, 9])
    sub = p[:, :, real][..., real]
    torch.testing.assert_close(sub.sum(dim=-2), torch.ones(1, H, 6))  # the last step: columns exactly
    torch.testing.assert_close(sub.sum(dim=-1), torch.ones(1, H, 6), rtol=0, atol=1e-2)  # rows nearly (8 rounds)
    torch.testing.assert_close(p[:, :, pad][..., pad], torch.eye(4).expand(1, H, 4, 4))
    assert (p[:, :, real][..., pad] == 0).all() and (p[:, :, pad][..., real] == 0).all()
    assert sub.max() < 0.99  # a soft permutation, not the identity


def test_sinkhorn_log_with_iterations_converges_to_a_doubly_stochastic_matrix():
    logits = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = sinkhorn_log(logits, 200)
    torch.testing.assert_close(p.sum(-1), torch.ones(1, 1, 5, dtype=torch.float64))
    torch.testing.assert_close(p.sum(-2), torch.ones(1, 1, 5, dtype=torch.float64))
    # zero iterations leave exp(logits); one row step then one column step
    torch.testing.assert_close(sinkhorn_log(logits, 0), logits.exp())
    r = logits - logits.logsumexp(-1, keepdim=True)
    torch.testing.assert_close(sinkhorn_log(logits, 1), (r - r.logsumexp(-2, keepdim=True)).exp())


def test_a_sequence_longer_than_max_len_is_refused_naming_the_option():
    m = make(block_size=4, max_len=8)
    with pytest.raises(ValueError, match="10 tokens but attention.max_len=8; set attention.max_len >= 10"):
        m(torch.randn(1, 10, D))
