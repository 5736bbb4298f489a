"""Linformer: the reference forward with padding, the E = F = I limit, padding zeroed before the projection."""

import pytest
import torch

from models.attention import build_attention
from tests.oracles import merge_and_project, softmax_attention, split_qkv, vanilla_with_projections
from tests.oracles_lowrank import linformer_reference

D, H = 16, 2


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention("linformer", d_model=D, n_heads=H, **opts).to(dtype).eval()


def padded_inputs(b=2, n=12, dtype=torch.float32):
    x = torch.randn(b, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - 4 :] = False
    mask[0, 2] = False  # a hole inside the sequence too
    return x, mask


@pytest.mark.parametrize("share_kv", [False, True])
def test_layer_matches_the_reference_forward_in_float64(share_kv):
    # N = 12 < max_len = 15: the first N columns of E and F; k = 5 rows
    m = make(torch.float64, max_len=15, k=5, share_kv=share_kv)
    x, mask = padded_inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), linformer_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


def identity_projections(m, n):
    with torch.no_grad():
        m.proj_e.copy_(torch.eye(n))
        if m.proj_f is not None:
            m.proj_f.copy_(torch.eye(n))


def test_identity_projections_with_k_equal_to_the_length_are_vanilla():
    m = make(max_len=12, k=12)
    identity_projections(m, 12)
    x, mask = padded_inputs()
    torch.testing.assert_close(m(x, None), vanilla_with_projections(m, x, None), rtol=1e-5, atol=1e-6)
    # with padding every zeroed key still takes part in the softmax with score 0 (and value 0)
    q, k, v = split_qkv(m, x)
    keep = mask[:, None, :, None]
    expected = merge_and_project(m, softmax_attention(q, k * keep, v * keep, None), mask)
    torch.testing.assert_close(m(x, mask), expected, rtol=1e-5, atol=1e-6)


def test_learned_projections_are_not_vanilla():
    # guards the limit test against a layer that ignores E and F
    m = make(max_len=12, k=12)
    x, _ = padded_inputs()
    assert (m(x, None) - vanilla_with_projections(m, x, None)).abs().max() > 1e-2


def test_padding_is_zeroed_before_the_projection_so_a_padded_sequence_equals_the_unpadded_one():
    m = make(max_len=20, k=6)
    x, _ = padded_inputs(b=1, n=16)
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, 11:] = False
    garbage = x.clone()
    garbage[0, 11:] = 50.0
    torch.testing.assert_close(m(garbage, mask)[:, :11], m(x[:, :11], None), rtol=1e-5, atol=1e-6)


def test_a_sequence_longer_than_max_len_is_refused_naming_the_option():
    m = make(max_len=8, k=4)
    with pytest.raises(ValueError, match="10 tokens but attention.max_len=8; set attention.max_len >= 10"):
        m(torch.randn(1, 10, D))


def test_share_kv_keeps_one_projection():
    assert make(max_len=8, k=4, share_kv=True).proj_f is None
    assert make(max_len=8, k=4).proj_f.shape == (4, 8)
