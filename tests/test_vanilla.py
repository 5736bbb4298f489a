import pytest
import torch

from models.attention import build_attention
from tests.oracles import vanilla_with_projections


@pytest.mark.parametrize("impl", ["sdpa", "naive"])
def test_vanilla_equals_einsum_oracle(impl):
    m = build_attention("vanilla", d_model=32, n_heads=4, impl=impl).eval()
    x = torch.randn(2, 64, 32)
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 40:] = False
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m(x, None), vanilla_with_projections(m, x, None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "naive"])
def test_float64_stays_float64(impl):
    """float64 inputs are computed in float64 (scores included): equal to the float64 oracle at 1e-12."""
    torch.manual_seed(0)
    m = build_attention("vanilla", d_model=32, n_heads=4, impl=impl).double().eval()
    x = torch.randn(2, 64, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 40:] = False
    y = m(x, mask)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, vanilla_with_projections(m, x, mask), rtol=1e-12, atol=1e-12)


def test_padded_sequence_equals_unpadded():
    m = build_attention("vanilla", d_model=32, n_heads=4).eval()
    x = torch.randn(1, 50, 32)
    padded = torch.cat([x, torch.randn(1, 14, 32)], dim=1)
    mask = torch.arange(64)[None] < 50
    torch.testing.assert_close(m(padded, mask)[:, :50], m(x, None), rtol=1e-5, atol=1e-5)


def test_bad_impl_names_the_choices():
    with pytest.raises(ValueError, match="sdpa"):
        build_attention("vanilla", d_model=32, n_heads=4, impl="flash3")
