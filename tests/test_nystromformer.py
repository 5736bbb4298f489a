"""Nystromformer: the reference forward with padding, the one-token-per-landmark limit, the iterative
pseudo-inverse, segments of any length with padding excluded, and independence from the rest of the batch."""

import pytest
import torch
import yaml

from lra.table import PUBLISHED
from models.attention import build_attention
from models.attention.nystromformer import iterative_pinv, landmark_means, nystrom_attention
from tests.oracles import softmax_attention, split_qkv, vanilla_with_projections
from tests.oracles_lowrank import nystrom_reference

D, H = 16, 2


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention("nystromformer", d_model=D, n_heads=H, **opts).to(dtype).eval()


def padded_inputs(b=2, n=20, dtype=torch.float32):
    x = torch.randn(b, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - 6 :] = False
    mask[0, 3] = False  # a hole inside the sequence too
    return x, mask


@pytest.mark.parametrize(
    "opts",
    [
        {"landmarks": 4},  # divides N = 20 (the reference's only case) but not the 13 real tokens of item 0
        {"landmarks": 6, "pinv_iterations": 3},  # divides neither
        {"landmarks": 5, "conv_kernel": 3},  # with the depthwise convolution of V
        {"landmarks": 16},  # more landmarks than item 0's 13 real tokens: exact there, Nystrom for item 1
        {"landmarks": 20, "conv_kernel": 5},  # landmarks = N: exact softmax, as the reference
    ],
)
def test_layer_matches_the_reference_forward_in_float64(opts):
    m = make(torch.float64, **opts)
    if m.conv is not None:
        with torch.no_grad():
            m.conv.weight.normal_()
    x, mask = padded_inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), nystrom_reference(m, x, msk)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)


def test_landmarks_at_the_length_are_vanilla():
    m = make(landmarks=20)
    x, mask = padded_inputs()
    torch.testing.assert_close(m(x, mask), vanilla_with_projections(m, x, mask), rtol=1e-5, atol=1e-6)


def test_one_token_per_segment_with_an_exact_pseudo_inverse_is_vanilla():
    # the Nystrom formula itself (not the exact shortcut): Kl = K, Ql = Q, so S pinv(S) S V = S V
    m = make(torch.float64)
    x, mask = padded_inputs(dtype=torch.float64)
    q, k, v = split_qkv(m, x)
    with torch.no_grad():
        out = nystrom_attention(q, k, v, mask, 20, torch.linalg.pinv)
        expected = softmax_attention(q, k, v, mask)
    real = mask[:, None, :].expand(-1, H, -1)  # (B, H, N)
    torch.testing.assert_close(out[real], expected[real], rtol=1e-8, atol=1e-10)


def test_few_landmarks_are_not_vanilla():
    # guards the limit tests against a layer that is always exact
    m = make(landmarks=3)
    x, mask = padded_inputs()
    assert (m(x, mask) - vanilla_with_projections(m, x, mask)).abs().max() > 1e-3


def test_iterative_pinv_converges_to_the_moore_penrose_inverse():
    g = torch.Generator().manual_seed(0)
    eye = torch.eye(8, dtype=torch.float64)
    a = torch.softmax(torch.randn(3, 8, 8, generator=g, dtype=torch.float64) + 4 * eye, -1)  # softmax rows
    exact = torch.linalg.pinv(a)
    errors = [(iterative_pinv(a, i) - exact).abs().max().item() for i in (1, 2, 4, 6)]
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < 1e-12, errors


def test_segments_cover_the_real_tokens_contiguously_in_sizes_that_differ_by_at_most_one():
    mask = torch.ones(3, 23, dtype=torch.bool)
    mask[1, 17:] = False
    mask[2, ::3] = False
    positions = torch.eye(23, dtype=torch.float64).expand(3, 1, 23, 23)  # token i = e_i: means = the weights
    weights, used = landmark_means(positions, mask, 5)
    weights = weights[:, 0]  # (B, m, N)
    member = weights > 0
    assert used.all()
    assert torch.equal(member.sum(1), mask.long())  # every real token in one segment, padding in none
    for b in range(3):
        sizes = member[b].sum(-1)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == mask[b].sum()
        order = member[b].float().argmax(0)[mask[b]]  # segment of each real token, in order
        assert torch.equal(order, order.sort().values)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5, dtype=torch.float64))  # means


def test_padding_is_excluded_from_the_landmarks_so_a_padded_sequence_equals_the_unpadded_one():
    m = make(landmarks=4, conv_kernel=3)
    x, _ = padded_inputs(b=1, n=20)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[0, 14:] = False
    torch.testing.assert_close(m(x, mask)[:, :14], m(x[:, :14], None), rtol=1e-5, atol=1e-6)


def test_the_exact_path_follows_the_real_length_so_more_padding_changes_nothing():
    # 12 real tokens, 12 landmarks: exact attention, whether the batch is padded to 12, 20 or 40
    m = make(landmarks=12)
    x, _ = padded_inputs(b=1, n=40)
    mask = torch.zeros(1, 40, dtype=torch.bool)
    mask[0, :12] = True
    alone = m(x[:, :12], None)
    torch.testing.assert_close(alone, vanilla_with_projections(m, x[:, :12], None), rtol=1e-5, atol=1e-6)
    for n in (20, 40):
        torch.testing.assert_close(m(x[:, :n], mask[:, :n])[:, :12], alone, rtol=1e-5, atol=1e-6)


def test_a_sequence_does_not_depend_on_the_others_in_its_batch():
    # the reference scales the pinv start by a max over the whole batch; ours is per sequence and head
    m = make(landmarks=4)
    x, mask = padded_inputs()
    other = x.clone()
    other[1] *= 30
    torch.testing.assert_close(m(x, mask)[0], m(other, mask)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m(x, mask)[:1], m(x[:1], mask[:1]), rtol=1e-5, atol=1e-6)


def test_bad_options_are_refused():
    for bad in ({"conv_kernel": 4}, {"conv_kernel": -1}):
        with pytest.raises(ValueError, match="odd length"):
            make(**bad)
    with pytest.raises(ValueError, match="landmarks must be >= 1"):
        make(landmarks=0)


def test_the_published_reruns_agree_with_their_printed_averages():
    """The rows of Xiong et al.'s Table 3 that lra-table does not show: each Avg is the mean of the five."""
    published = yaml.safe_load(PUBLISHED.read_text())
    reruns = [r for r in published["reruns"] if r["source"] == "nystromformer-table3"]
    assert {r["attention"] for r in reruns} == {"vanilla", "reformer", "linformer", "performer"}
    for r in reruns:
        five = [r[t] for t in ("listops", "text", "retrieval", "image", "pathfinder")]
        assert r["avg5"] == pytest.approx(sum(five) / 5, abs=0.01), r["model"]
