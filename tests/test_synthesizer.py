"""Synthesizer: LRA's forward with padding, the masked softmax over real keys, and random logits that ignore
the input (the output of ``random`` is linear in x; ``dense`` is not)."""

import pytest
import torch

from models.attention import build_attention
from tests.oracles_lowrank import synthesizer_reference

D, H = 16, 2
KINDS = ["dense", "random"]


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    m = build_attention("synthesizer", d_model=D, n_heads=H, **opts).to(dtype).eval()
    if opts.get("kind") == "random":
        with torch.no_grad():
            m.random.normal_()  # spread the weights so that a wrong key or head shows
    return m


def padded_inputs(b=2, n=10, dtype=torch.float32):
    x = torch.randn(b, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - 3 :] = False
    mask[0, 1] = False
    return x, mask


@pytest.mark.parametrize("kind", KINDS)
def test_layer_matches_the_reference_forward_in_float64(kind):
    m = make(torch.float64, max_len=13, kind=kind)  # N = 10 < max_len: the first N keys
    x, mask = padded_inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), synthesizer_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_softmax_runs_over_the_real_keys_only(kind):
    # a sequence padded at the end (garbage in the padding) gives exactly its unpadded output
    m = make(max_len=16, kind=kind)
    x, _ = padded_inputs(b=1, n=12)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 8:] = False
    garbage = x.clone()
    garbage[0, 8:] = 40.0
    torch.testing.assert_close(m(garbage, mask)[:, :8], m(x[:, :8], None), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_random_weights_ignore_the_input_and_dense_ones_do_not(kind):
    m = make(max_len=16, kind=kind)
    with torch.no_grad():  # without biases the values are linear in x
        m.v_proj.bias.zero_()
        m.out_proj.bias.zero_()
    x1, mask = padded_inputs()
    x2 = torch.randn_like(x1)
    with torch.no_grad():
        additive = m(x1 + x2, mask) - m(x1, mask) - m(x2, mask)
        same_logits = torch.equal(m.logits(x1).expand(2, -1, -1, -1), m.logits(x2).expand(2, -1, -1, -1))
    if kind == "random":
        assert same_logits
        torch.testing.assert_close(additive, torch.zeros_like(additive), rtol=0, atol=1e-5)
    else:
        assert not same_logits and additive.abs().max() > 1e-2


def test_a_sequence_longer_than_max_len_is_refused_naming_the_option():
    m = make(max_len=8)
    with pytest.raises(ValueError, match="9 tokens but attention.max_len=8; set attention.max_len >= 9"):
        m(torch.randn(1, 9, D))


def test_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="dense.*random"):
        make(kind="factorized")
