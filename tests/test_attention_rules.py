"""Rules every registered attention mechanism obeys (padding, finiteness, gradients, eval mode), run on each.

The rules themselves are lra.attention_rules (shared with ``lra-attention check``); here they run on every case
of tests/attention_cases.py."""

import pytest
import torch

from lra import attention_rules as rules
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


def factory(case: str):
    """``make(dropout, dtype)`` for the shared rules (lra.attention_rules)."""
    return lambda dropout=0.0, dtype=torch.float32: make(case, dropout, dtype)


@pytest.mark.parametrize("case", CASES)
def test_shape_and_finite(case):
    rules.shape(factory(case), *inputs())
    rules.finite(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_output_is_zero_at_padding(case):
    rules.zero_at_padding(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_padding_does_not_change_real_positions(case):
    rules.padding_content(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_amount_of_padding_does_not_change_real_positions(case):
    rules.padding_amount(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_fully_padded_sequence_leaves_no_nan_in_output_or_gradients(case):
    """A sequence without one real token: a softmax over only -inf there gives NaN that zeroing the padded
    rows hides in the output but not in the backward (NaN * 0 in W_o's gradient), so check both."""
    rules.fully_padded(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_every_parameter_gets_a_gradient(case):
    rules.gradients(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_float32_matches_float64(case):
    rules.float64(factory(case), *inputs())


@pytest.mark.parametrize("case", CASES)
def test_eval_applies_no_dropout(case):
    """In eval mode a layer built with dropout 0.5 gives the output of the same weights without dropout,
    whatever the global RNG state."""
    rules.eval_deterministic(factory(case), *inputs())


def test_every_rule_runs_here():
    """Each rule of the contract has a test above (and ``lra-attention check`` runs the same functions)."""
    here = open(__file__).read()
    assert all(f"rules.{fn.__name__}(" in here for fn in rules.RULES.values())


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
