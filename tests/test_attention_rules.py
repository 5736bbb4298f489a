"""Rules every registered attention mechanism obeys (padding, finiteness, gradients, eval mode), run on each."""

import pytest
import torch

from models.attention import available, build_attention, options
from tests.attention_cases import CASES, name_of

B, N, D, H = 2, 64, 32, 4


def make(case: str, dropout: float = 0.0, dtype=torch.float32):
    torch.manual_seed(0)
    m = build_attention(name_of(case), d_model=D, n_heads=H, dropout=dropout, **CASES[case])
    return m.to(dtype)


def inputs(dtype=torch.float32, n_pad=20):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, N - n_pad :] = False
    return x, mask


def test_every_registered_mechanism_has_a_case():
    assert set(available()) <= {name_of(c) for c in CASES}, "add the mechanism to tests/attention_cases.py"


@pytest.mark.parametrize("case", CASES)
def test_shape_and_finite(case):
    m = make(case).eval()
    x, mask = inputs()
    y = m(x, mask)
    assert y.shape == (B, N, D)
    assert torch.isfinite(y).all()
    assert torch.isfinite(m(x, None)).all()


@pytest.mark.parametrize("case", CASES)
def test_padding_does_not_change_real_positions(case):
    m = make(case).eval()
    x, mask = inputs()
    garbage = x.clone()
    garbage[~mask] = 100 * torch.randn(int((~mask).sum()), D)
    y1, y2 = m(x, mask), m(garbage, mask)
    torch.testing.assert_close(y1[mask], y2[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_fully_padded_sequence_leaves_no_nan_in_output_or_gradients(case):
    """A sequence without one real token: a softmax over only -inf there gives NaN that zeroing the padded
    rows hides in the output but not in the backward (NaN * 0 in W_o's gradient), so check both."""
    m = make(case).eval()
    x, mask = inputs()
    mask[1] = False
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all()
    (y.square().sum() + y.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("case", CASES)
def test_every_parameter_gets_a_gradient(case):
    m = make(case, dropout=0.1).train()
    x, mask = inputs()
    x.requires_grad_(True)
    y = m(x, mask)
    (y[mask] ** 2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("case", CASES)
def test_float32_matches_float64(case):
    x, mask = inputs()
    y32 = make(case).eval()(x, mask)
    y64 = make(case, dtype=torch.float64).eval()(x.double(), mask)
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_eval_applies_no_dropout(case):
    """In eval mode a layer built with dropout 0.5 gives the output of the same weights without dropout,
    whatever the global RNG state."""
    reference = make(case).eval()
    m = make(case, dropout=0.5).eval()
    x, mask = inputs()
    expected = reference(x, mask)
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.testing.assert_close(m(x, mask), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", available())
def test_unknown_option_is_refused_by_name(name):
    with pytest.raises(TypeError, match="no_such_option"):
        build_attention(name, d_model=D, n_heads=H, no_such_option=1)
    assert "no_such_option" not in options(name)


def test_unknown_name_lists_the_choices():
    with pytest.raises(KeyError, match="available: .*vanilla"):
        build_attention("nope", d_model=D, n_heads=H)


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="divisible"):
        build_attention("vanilla", d_model=30, n_heads=4)
