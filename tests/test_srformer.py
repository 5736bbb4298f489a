"""SRformer (segmented recurrent attention): limits, the neuron, gradients and the two scalings."""

import pytest
import torch

from models.attention import build_attention
from models.attention.srformer import SpikeFn, neuron_step
from tests.oracles import softmax_attention, srformer_reference, vanilla_with_projections

B, N, D, H = 2, 64, 32, 4


def make(**opts):
    torch.manual_seed(0)
    return build_attention("srformer", d_model=D, n_heads=H, **opts).eval()


def data(n: int = N, seed: int = 1, d_model: int = D, batch: int = B) -> torch.Tensor:
    return torch.randn(batch, n, d_model, generator=torch.Generator().manual_seed(seed))


def tail_mask(n: int = N, lengths=(44, N)) -> torch.Tensor:
    return torch.arange(n)[None] < torch.tensor(lengths)[:, None]  # (B, N), True = real


@pytest.mark.parametrize("scaling", ["normalized", "paper"])
@pytest.mark.parametrize("segment_size", [N, 100])
def test_one_segment_equals_vanilla(scaling, segment_size):
    """m >= N: a single segment, C = KV - P = 0, so R = 0 and only exact attention remains."""
    m, x, mask = make(segment_size=segment_size, scaling=scaling), data(), tail_mask()
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m(x, None), vanilla_with_projections(m, x, None), rtol=1e-5, atol=1e-6)


def holes_mask(n: int) -> torch.Tensor:
    """With m = 16: item 0 padded from 38 on (segment 3 fully padded), item 1 with a hole at 20..26 (segment 1)."""
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[0, 38:] = False
    mask[1, 20:27] = False
    return mask


@pytest.mark.parametrize(
    ("scaling", "spike", "causal"),
    [
        ("normalized", False, False),
        ("paper", False, False),
        ("normalized", True, False),
        ("normalized", False, True),
        ("paper", False, True),
    ],
)
def test_matches_the_recurrence_written_out(scaling, spike, causal):
    """The whole layer (local + neuron + scaling, W_o) against a token-by-token float64 transcription.

    N = 60 with m = 16: four segments, the last one 12 tokens long (padded inside the module); the
    mask leaves a fully padded segment and a hole mid-segment. lam = 0.67 (not 0.5 = 1 - 0.5) and a
    gate of 0.8 make a swapped leak or a lost gate visible; the check that the recurrent term is large
    keeps the pin from passing on an output where no unit fired.
    """
    torch.manual_seed(0)
    m = build_attention("srformer", d_model=16, n_heads=2, segment_size=16, scaling=scaling, spike=spike, causal=causal)
    m = m.double().eval()
    with torch.no_grad():
        m.lam_raw.fill_(0.7)
        if m.gate is not None:
            m.gate.fill_(0.8)
    x = torch.randn(2, 60, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for mask in (holes_mask(60), None):
        with torch.no_grad():
            y, ref = m(x, mask), srformer_reference(m, x, mask)
            m.recurrent = False
            local_only = m(x, mask)
            m.recurrent = True
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)
        assert (y - local_only).abs().max() > 0.05 * y.abs().max()  # the neuron fired: the recurrence is tested


def block_local_oracle(m, x, mask, seg):
    """Loop over segments, exact attention inside each one, then W_o; zero at padding."""
    b, n, dm = x.shape
    q, k, v = m.project(x)  # (B, H, N, d)
    out = torch.zeros_like(q)
    for start in range(0, n, seg):
        sl = slice(start, min(start + seg, n))
        o = softmax_attention(q[:, :, sl], k[:, :, sl], v[:, :, sl], mask[:, sl])
        out[:, :, sl] = o.nan_to_num(0.0)  # a segment with no real key holds only padded queries
    y = m.out_proj(out.transpose(1, 2).reshape(b, n, dm))
    return y * mask[..., None]


@pytest.mark.parametrize("n", [64, 60])
def test_without_recurrence_equals_block_local_attention(n):
    """N = 60 with m = 16 pads the last segment internally; length 44 leaves a fully padded segment."""
    m, x = make(segment_size=16, recurrent=False), data(n=n)
    mask = tail_mask(n, (44, n))
    torch.testing.assert_close(m(x, mask), block_local_oracle(m, x, mask, 16), rtol=1e-5, atol=1e-6)


def test_neuron_step_by_hand():
    theta, lam = torch.tensor(0.5), torch.tensor(0.5)
    u0 = torch.zeros(())
    out, u1 = neuron_step(u0, torch.tensor(0.3), theta, lam)  # U = 0.3, u = 0.3/0.5 - 1 = -0.4: silent
    assert out.item() == 0.0 and u1.item() == pytest.approx(0.3)
    out, u2 = neuron_step(u1, torch.tensor(0.6), theta, lam)  # U = 0.15 + 0.6 = 0.75, u = 0.5: fires
    assert out.item() == pytest.approx(0.5) and u2.item() == pytest.approx(0.75 - 0.5)  # soft reset by theta
    out, u3 = neuron_step(u2, torch.tensor(0.0), theta, lam)  # U = 0.125, u = -0.75: leaks, silent
    assert out.item() == 0.0 and u3.item() == pytest.approx(0.125)
    spike, _ = neuron_step(u1, torch.tensor(0.6), theta, lam, spike=True)
    assert spike.item() == 1.0


def test_surrogate_gradient_is_piecewise_linear():
    u = torch.linspace(-2, 2, 81, dtype=torch.float64, requires_grad=True)
    out = SpikeFn.apply(u)
    assert torch.equal(out, (u > 0).double())
    (g,) = torch.autograd.grad(out.sum(), u)
    # autograd of a primitive of 0.3 max(0, 1 - |u|): 0.3 (c - sign(c) c^2 / 2) with c = clamp(u, -1, 1)
    c = u.clamp(-1, 1)
    (ref,) = torch.autograd.grad((0.3 * (c - c.sign() * c.square() / 2)).sum(), u)
    torch.testing.assert_close(g, ref)
    torch.testing.assert_close(g, 0.3 * (1 - u.detach().abs()).clamp_min(0))


@pytest.mark.parametrize("spike", [False, True])
def test_neuron_parameters_learn_once_the_threshold_is_crossed(spike):
    x, mask = data(), tail_mask()

    def grads(theta_raw=None):
        m = make(segment_size=16, spike=spike).train()
        if theta_raw is not None:
            m.theta_raw.data.fill_(theta_raw)  # theta ~ 1e4: no unit ever fires
        y = m(x, mask)
        (y[mask] ** 2).mean().backward()
        named = dict(m.named_parameters())
        return {n: named[n].grad.abs().sum().item() for n in ("theta_raw", "lam_raw", "kv_map.weight")}

    fired = grads()
    assert all(g > 0 for g in fired.values()), fired
    if not spike:  # relu below threshold passes no gradient; the spike's surrogate is non-zero for |u| < 1
        silent = grads(theta_raw=1e4)
        assert all(g == 0 for g in silent.values()), silent


def test_padded_sequence_equals_unpadded():
    m, x = make(segment_size=16), data(n=50)
    padded = torch.cat([x, 50 * torch.randn(B, 14, D)], dim=1)
    mask = tail_mask(64, (50, 50))
    y = m(padded, mask)
    torch.testing.assert_close(y[:, :50], m(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scaling", ["normalized", "paper"])
def test_causal_output_ignores_the_future(scaling):
    m, x = make(segment_size=16, causal=True, scaling=scaling), data()
    changed = x.clone()
    changed[:, 40:] = 10 * torch.randn(B, N - 40, D)
    y1, y2 = m(x), m(changed)
    torch.testing.assert_close(y1[:, :40], y2[:, :40], rtol=1e-6, atol=1e-7)
    assert (y1[:, 40:] - y2[:, 40:]).abs().max() > 1e-3


def test_recurrent_term_is_used():
    """With several segments the output differs from block-local attention."""
    m, x, mask = make(segment_size=16), data(), tail_mask()
    assert (m(x, mask) - block_local_oracle(m, x, mask, 16)).abs().max() > 1e-3


def _ratio_at_init(scaling: str, n: int) -> float:
    """RMS(recurrent) / RMS(local) at init: d_model 256, 4 heads, m 64, batch 1, unit-variance inputs."""
    torch.manual_seed(0)
    m = build_attention("srformer", d_model=256, n_heads=4, segment_size=64, scaling=scaling).eval()
    with torch.no_grad():
        local, rec = m.terms(*m.project(data(n=n, d_model=256, batch=1)), None)
    return (rec.square().mean().sqrt() / local.square().mean().sqrt()).item()


def test_normalized_scaling_is_length_independent_and_paper_scaling_grows():
    """Why ``normalized`` is the default: the paper's term grows like sqrt(N) relative to the local one."""
    norm = [_ratio_at_init("normalized", n) for n in (1024, 16384)]
    assert 1 / 3 < norm[1] / norm[0] < 3, norm
    assert 0.1 < norm[0] < 10, norm  # comparable terms at init
    paper = [_ratio_at_init("paper", n) for n in (1024, 16384)]
    assert paper[0] > 100 and paper[1] / paper[0] > 2.5, paper  # sqrt(16) = 4


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="segment_size"):
        make(segment_size=0)
    with pytest.raises(ValueError, match="normalized"):
        make(scaling="rms")


def test_parameters_start_where_the_spec_says():
    m = make()
    assert m.theta.item() == pytest.approx(0.1) and m.lam.item() == pytest.approx(0.5)
    assert m.gate.item() == pytest.approx(0.1) and m.kv_map.bias is None
    assert make(scaling="paper").gate is None
