"""BigBird: the reference forward with padding, the covered-blocks limit, the draw, padding, global blocks."""

import pytest
import torch

import lra.resolvers  # noqa: F401  (registers the resolvers the configs use)
from lra.config import compose_config
from models.attention import build_attention, declaration
from tests.oracles import vanilla_with_projections
from tests.oracles_bigbird import bigbird_reference

D, H, M = 32, 4, 8  # 8-token blocks: N = 100 is 13 blocks, more than the 3 + 2 + 3 that cover a sequence


def make(dtype=torch.float64, seed: int = 0, **opts):
    torch.manual_seed(seed)
    return build_attention("bigbird", d_model=D, n_heads=H, **{"block_size": M, **opts}).to(dtype).eval()


def padded_inputs(n=100, dtype=torch.float64):
    """Row 0: 70 real tokens then padding, a fully padded block (16..23) inside; row 1: all real;
    row 2: 60 real tokens (8 blocks: covered, so exact attention, which the sparse pattern is not there)."""
    x = torch.randn(3, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(3, n, dtype=torch.bool)
    mask[0, 70:] = False
    mask[0, 16:24] = False
    mask[2, 60:] = False
    return x, mask


def draw_of(module, mask, n, draw=0):
    """The random blocks the module uses for these sequences (its exposed draw)."""
    extent = (mask * torch.arange(1, n + 1)).amax(-1)
    return module.random_blocks_for(-(-extent // module.block_size), -(-n // module.block_size), draw)[0]


@pytest.mark.parametrize("opts", [{}, {"window_blocks": 5, "global_blocks": 1, "random_blocks": 2}])
def test_layer_matches_the_reference_forward_in_float64(opts):
    m = make(**opts)
    x, mask = padded_inputs()
    with torch.no_grad():
        for msk in (mask, None):
            full = torch.ones_like(mask) if msk is None else msk
            y, ref = m(x, msk), bigbird_reference(m, x, msk, draw_of(m, full, x.shape[1]))
            torch.testing.assert_close(y, ref, rtol=0, atol=1e-10)


def test_training_calls_redraw_and_each_matches_the_reference_with_its_draw():
    m = make().train()  # dropout 0: training differs from eval only by the draw
    x, mask = padded_inputs()
    outs = []
    with torch.no_grad():
        for _ in range(2):
            y = m(x, mask)
            ref = bigbird_reference(m, x, mask, draw_of(m, mask, x.shape[1], draw=int(m.steps)))
            torch.testing.assert_close(y, ref, rtol=0, atol=1e-10)
            outs.append(y)
        assert not torch.allclose(outs[0][1], outs[1][1])  # row 1 (sparse) saw other random blocks
        m.eval()
        assert torch.equal(m(x, mask), m(x, mask))


@pytest.mark.parametrize("n", [M, 37, 8 * M])  # one block; a short tail; exactly 3 + 2 + 3 blocks
def test_blocks_covering_the_sequence_equal_vanilla(n):
    m = make()
    x, mask = padded_inputs(n=n)
    mask[0, n // 2 :] = False
    with torch.no_grad():
        for msk in (mask, None):
            torch.testing.assert_close(m(x, msk), vanilla_with_projections(m, x, msk), rtol=0, atol=1e-10)
    assert declaration("bigbird").exact_at_length == "block_size"


def test_one_block_more_is_no_longer_vanilla():
    m = make()
    x = torch.randn(1, 9 * M, D, dtype=torch.float64)
    with torch.no_grad():
        assert (m(x) - vanilla_with_projections(m, x, None)).abs().max() > 1e-3


def test_random_blocks_avoid_window_and_global_blocks_and_stay_in_the_real_blocks():
    m = make()
    real_blocks = torch.tensor([20, 11, 30])
    nb, g, half = 30, 2, 1
    seen = torch.zeros(3, 30 - g, nb, dtype=torch.bool)
    for draw in range(40):
        idx, ok = m.random_blocks_for(real_blocks, nb, draw)  # (B, H, nb - g, 3)
        assert ok.all() and idx.shape == (3, H, nb - g, 3)
        i = torch.arange(g, nb)[None, None, :, None]
        assert ((idx >= g) & ((idx - i).abs() > half) & (idx < real_blocks[:, None, None, None])).all()
        s = idx.sort(-1).values
        assert (s[..., 1:] != s[..., :-1]).all()  # distinct
        seen |= torch.zeros_like(seen).scatter_(-1, idx[:, 0], True)
    # every allowed block of a middle query block is drawn at some point
    assert seen[0, 10 - g, g:20].sum() == 20 - g - 3
    again = make(seed=0)
    assert torch.equal(again.random_blocks_for(real_blocks, nb, 0)[0], m.random_blocks_for(real_blocks, nb, 0)[0])
    assert not torch.equal(
        make(seed=1).random_blocks_for(real_blocks, nb, 0)[0], again.random_blocks_for(real_blocks, nb, 0)[0]
    )


def test_appended_padding_and_a_padded_block_change_no_real_position():
    m = make()
    x, mask = padded_inputs()
    garbage = torch.randn(3, 60, D, dtype=torch.float64) * 10
    longer = torch.cat([x, garbage], 1)  # 20 blocks instead of 13: the draw must not see the tensor length
    mask_longer = torch.cat([mask, torch.zeros(3, 60, dtype=torch.bool)], 1)
    with torch.no_grad():
        y, y_longer = m(x, mask), m(longer, mask_longer)
    torch.testing.assert_close(y_longer[:, :100], y, rtol=0, atol=1e-12)
    assert (y_longer[:, 100:] == 0).all() and (y[0, 16:24] == 0).all()


def test_fully_padded_blocks_and_sequences_give_zeros_and_finite_gradients():
    m = make(torch.float32).train()
    x, mask = padded_inputs(dtype=torch.float32)
    mask[2] = False  # a sequence without one real token
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all() and (y[~mask] == 0).all()
    (y.square().sum() + y.sum()).backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_the_first_blocks_are_global():
    """Position 0 (the CLS token with pool=cls) attends to every key and every query attends to it."""
    m = make()
    x = torch.randn(1, 100, D, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        torch.testing.assert_close(y[0, : 2 * M], vanilla_with_projections(m, x, None)[0, : 2 * M], rtol=0, atol=1e-10)
        far = x.clone()
        far[0, -1] += 1.0  # the last token reaches position 0 ...
        assert (m(far)[0, 0] - y[0, 0]).abs().max() > 1e-6
        first = x.clone()
        first[0, 0] += 1.0  # ... and position 0 reaches every query
        assert ((m(first) - y)[0].abs().amax(-1) > 1e-9).all()


def test_config_sizes_the_block_from_the_task_length():
    def block(max_len):
        cfg = compose_config(["attention=bigbird", f"task.max_len={max_len}"]).attention
        return cfg.block_size

    assert [block(n) for n in (128, 2000, 16384)] == [8, 64, 64]


def test_bad_options_are_refused_and_covered_lengths_warned():
    with pytest.raises(ValueError, match="odd window_blocks"):
        build_attention("bigbird", d_model=D, n_heads=H, window_blocks=2)
    warn = declaration("bigbird").warnings
    opts = {"block_size": 64, "window_blocks": 3, "global_blocks": 2, "random_blocks": 3}
    assert "computes exact attention" in next(iter(warn(opts, 129)))
    assert list(warn(opts, 513)) == [] and list(warn(opts, 64)) == []
