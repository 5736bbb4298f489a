"""Performer (FAVOR+): the layer against the jax reference's forward written out, its error against exact
softmax attention falling with the number of features, the orthogonal random features, and the redraw
schedule (fixed in eval, the same after a resume)."""

import pytest
import torch

from models.attention import build_attention
from tests.oracles import softmax_attention
from tests.oracles_kernels import performer_reference

D, H = 16, 2


def make(seed: int = 0, **opts):
    torch.manual_seed(seed)
    return build_attention("performer", d_model=D, n_heads=H, **opts)


def data(n: int, b: int = 2, seed: int = 1, d_model: int = D) -> torch.Tensor:
    return torch.randn(b, n, d_model, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("causal", [False, True])
def test_layer_matches_the_reference_written_out(causal):
    """m = 20 features of d = 8 (two full blocks and a partial one); N = 70 crosses a causal chunk; item 0
    padded from 50 on, item 1 with a hole. The inputs are scaled up so that the stabilisers matter."""
    n = 70
    m = make(features=20, causal=causal).double().eval()
    x = 3 * data(n)
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[0, 50:] = False
    mask[1, 5:10] = False
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), performer_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


def test_error_against_softmax_falls_as_the_features_grow():
    """Mean |FAVOR+ - softmax| over 10 draws of W, same q/k/v, at m = 16, 64, 256, 1024: each is below
    0.8x the one before (measured: about 0.6x, std of each mean under 5% of it)."""
    d_model, heads = 32, 2
    x = data(64, d_model=d_model).float()
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[0, 40:] = False
    errors = []
    for features in (16, 64, 256, 1024):
        torch.manual_seed(0)  # the same q/k/v weights for every m
        m = build_attention("performer", d_model=d_model, n_heads=heads, features=features).eval()
        with torch.no_grad():
            q, k, v = m.project(x)
            exact = softmax_attention(q, k, v, mask).transpose(1, 2)[mask]  # (real tokens, H, d)
            draws = []
            for index in range(10):
                m.projection.copy_(m.draw(index))
                draws.append((m.attend(q, k, v, mask).transpose(1, 2)[mask] - exact).abs().mean())
        errors.append(float(torch.stack(draws).mean()))
    for smaller, larger in zip(errors, errors[1:]):
        assert larger < 0.8 * smaller, errors


def test_features_are_orthogonal_blocks_with_chi_lengths():
    d, features = D // H, 20
    m = make(features=features)
    w = m.draw(0)  # (20, 8): blocks of rows 0-7, 8-15, 16-19
    assert w.shape == (features, d)
    lengths = w.norm(dim=1)
    for start in range(0, features, d):
        block = w[start : start + d]
        gram = block @ block.T
        torch.testing.assert_close(gram, torch.diag(lengths[start : start + d] ** 2), rtol=0, atol=1e-12)
    assert lengths.std() > 0.1  # chi(d) lengths, not all sqrt(d)
    torch.testing.assert_close(m.projection, w.float())  # the module starts with draw 0
    torch.testing.assert_close(m.draw(0), w, rtol=0, atol=0)  # a draw is a function of (seed, index)
    assert (m.draw(1) - w).abs().max() > 0.1
    assert (make().projection - make().projection).abs().max() == 0  # reproducible under torch's seed
    torch.manual_seed(0)
    first, second = (build_attention("performer", d_model=D, n_heads=H) for _ in range(2))
    assert (first.projection - second.projection).abs().max() > 0.1  # two layers draw different features


def test_features_are_redrawn_every_redraw_every_training_steps_and_fixed_in_eval():
    m = make(features=16, redraw_every=3)
    x = data(12).float()
    for step in range(8):
        m.train()
        m(x)
        assert int(m.steps) == step + 1
        torch.testing.assert_close(m.projection, m.draw(step // 3).float(), rtol=0, atol=0)
        m.eval()
        before = m.projection.clone()
        y1, y2 = m(x), m(x)
        assert int(m.steps) == step + 1 and torch.equal(m.projection, before) and torch.equal(y1, y2)
    never = make(features=16, redraw_every=0).train()
    start = never.projection.clone()
    for _ in range(5):
        never(x)
    assert torch.equal(never.projection, start) and int(never.steps) == 5


def test_a_resumed_module_redraws_at_the_same_steps():
    x = data(12).float()
    original = make(features=16, redraw_every=3).train()
    for _ in range(4):
        original(x)
    resumed = make(seed=7, features=16, redraw_every=3).train()  # another seed: everything comes from the state dict
    resumed(x)  # a module that has run before (2 steps) and then loads a checkpoint taken at step 4
    resumed(x)
    resumed.load_state_dict(original.state_dict())
    resumed(x)  # reads steps = 4 from the loaded buffer
    original(x)
    for _ in range(5):  # steps 5..9: redraws at 6 and 9
        before = original.projection.clone()
        torch.testing.assert_close(resumed(x), original(x), rtol=0, atol=0)
        torch.testing.assert_close(resumed.projection, original.projection, rtol=0, atol=0)
    assert int(resumed.steps) == int(original.steps) == 10 and not torch.equal(before, original.projection)


def test_a_sequence_does_not_depend_on_the_others_in_its_batch():
    """The key stabiliser is one max per sequence and head (lucidrains takes one over the batch)."""
    m = make().double().eval()
    x = data(30)
    x[1] *= 20  # a batch neighbour with a much larger key maximum
    with torch.no_grad():
        torch.testing.assert_close(m(x)[:1], m(x[:1]), rtol=1e-12, atol=1e-13)


def test_bad_options_are_refused():
    for bad in ({"features": 0}, {"redraw_every": -1}):
        with pytest.raises(ValueError, match="features >= 1 and redraw_every >= 0"):
            build_attention("performer", d_model=D, n_heads=H, **bad)
