"""Linear attention (elu + 1 features): the layer against fast-transformers' forward written out, and the
causal form against the non-causal one on every prefix."""

import pytest
import torch

from models.attention import build_attention
from models.attention.linear import CHUNK
from tests.oracles_kernels import linear_reference

D, H = 16, 2


def make(**opts):
    torch.manual_seed(0)
    return build_attention("linear", d_model=D, n_heads=H, **opts).double().eval()


def data(n: int, b: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def holes_mask(n: int) -> torch.Tensor:
    """Item 0 padded from 50 on, item 1 with a hole at 5..9."""
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[0, 50:] = False
    mask[1, 5:10] = False
    return mask


@pytest.mark.parametrize(("causal", "eps"), [(False, 1e-6), (True, 1e-6), (False, 0.5)])
def test_layer_matches_the_reference_written_out(causal, eps):
    """N = 70 > CHUNK: the causal prefix sums cross a chunk boundary; eps 0.5 shows where eps enters."""
    n = 70
    assert n > CHUNK
    m, x, mask = make(causal=causal, eps=eps), data(n), holes_mask(n)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), linear_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("padded", [False, True])
def test_causal_output_is_the_non_causal_output_of_each_prefix(padded):
    """Causal position i sees exactly the prefix x[:i+1]: its output equals the non-causal layer's on that
    prefix, at prefix lengths around the chunk boundaries (N = 150: chunks of 64, 64 and 22)."""
    n = 150
    causal, full = make(causal=True), make(causal=False)
    x = data(n)
    mask = torch.ones(2, n, dtype=torch.bool)
    if padded:
        mask[0, 100:] = False
        mask[1, 60:70] = False
    with torch.no_grad():
        y = causal(x, mask)
        for p in (1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, n):
            rows = mask[:, p - 1]
            prefix = full(x[:, :p], mask[:, :p])[:, p - 1]
            torch.testing.assert_close(y[rows, p - 1], prefix[rows], rtol=1e-10, atol=1e-12)


def test_causal_differs_from_non_causal():
    """Guards the prefix test: the two forms differ wherever a later key exists."""
    x = data(20)
    with torch.no_grad():
        diff = (make(causal=True)(x) - make(causal=False)(x))[:, :-1].abs().amax(dim=-1)
    assert (diff > 1e-4).all()


def test_bad_eps_is_refused():
    for eps in (0.0, -1e-6):
        with pytest.raises(ValueError, match="eps must be > 0"):
            build_attention("linear", d_model=D, n_heads=H, eps=eps)
