"""Reformer LSH attention: trax's forward with padding, the one-chunk limit, padding, rotations, sizing."""

import pytest
import torch
from omegaconf import OmegaConf

from lra import resolvers  # noqa: F401  (registers the resolvers the attention configs use)
from lra.config import compose_config
from models.attention import build_attention
from models.attention.reformer import lsh_buckets
from tests.oracles_reformer import reformer_reference, shared_qk_softmax

D, H = 16, 2


def make(dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return build_attention("reformer", d_model=D, n_heads=H, **opts).to(dtype).eval()


def padded_inputs(b=2, n=22, dtype=torch.float32):
    x = torch.randn(b, n, D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - 7 :] = False
    mask[0, 3] = False  # a hole inside the sequence too
    return x, mask


@pytest.mark.parametrize("opts", [dict(buckets=4, hashes=2, chunk=4), dict(buckets=6, hashes=3, chunk=5)])
def test_layer_matches_the_trax_forward_in_float64(opts):
    # N = 22: not a multiple of the chunk, padding at the end and inside row 0
    m = make(torch.float64, **opts)
    x, mask = padded_inputs(dtype=torch.float64)
    for msk in (mask, None):
        with torch.no_grad():
            y, ref = m(x, msk), reformer_reference(m, x, msk, m.rotations)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_training_draws_fresh_rotations_each_call_and_the_oracle_gets_the_same_draw():
    m = make(torch.float64, buckets=4, hashes=2, chunk=4).train()
    x, mask = padded_inputs(dtype=torch.float64)
    with torch.no_grad():
        y1 = m(x, mask)
        r1 = m.last_rotations
        torch.testing.assert_close(y1, reformer_reference(m, x, mask, r1), rtol=1e-10, atol=1e-10)
        y2 = m(x, mask)
        r2 = m.last_rotations
    assert torch.equal(r1, m.draw(1)) and torch.equal(r2, m.draw(2)) and int(m.steps) == 2
    assert not torch.equal(r1, r2) and not torch.equal(r1, m.rotations)
    assert (y1 - y2).abs().max() > 1e-3  # the hashing changed
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x, mask), m(x, mask), rtol=0, atol=0)
    assert torch.equal(m.last_rotations, m.draw(0)) and int(m.steps) == 2


def test_lsh_buckets_are_the_argmax_over_the_rotation_and_its_negative():
    q = torch.randn(2, 3, 40, 8, generator=torch.Generator().manual_seed(3))
    rot = torch.randn(3, 2, 8, 5, generator=torch.Generator().manual_seed(4))
    rotated = torch.einsum("bhnd,hrdk->bhrnk", q, rot)
    expected = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)
    got = lsh_buckets(q, rot, 10)
    assert torch.equal(got, expected) and set(got.unique().tolist()) > {0, 9}


@pytest.mark.parametrize("buckets", [1, 4])
def test_one_chunk_covering_the_sequence_is_shared_qk_softmax_with_the_self_mask(buckets):
    m = make(torch.float64, buckets=buckets, hashes=2, chunk=22)
    x, mask = padded_inputs(dtype=torch.float64)
    for msk in (mask, None):
        torch.testing.assert_close(m(x, msk), shared_qk_softmax(m, x, msk), rtol=1e-10, atol=1e-10)
    m32 = make(buckets=1, hashes=1, chunk=64)  # a chunk longer than N: one chunk as well
    x32, mask32 = padded_inputs()
    torch.testing.assert_close(m32(x32, mask32), shared_qk_softmax(m32, x32, mask32), rtol=1e-5, atol=1e-6)


def test_lsh_with_small_chunks_is_not_full_attention():
    # guards the limit test against a layer that ignores the chunks
    m = make(buckets=4, hashes=2, chunk=4)
    x, mask = padded_inputs()
    assert (m(x, mask) - shared_qk_softmax(m, x, mask)).abs().max() > 1e-2


def test_a_token_without_other_real_keys_attends_to_itself():
    m = make(buckets=4, hashes=2, chunk=4)
    x, _ = padded_inputs(b=1)
    mask = torch.zeros(1, 22, dtype=torch.bool)
    mask[0, 5] = True
    qk_v = m.v_proj(x)[0, 5]
    torch.testing.assert_close(m(x, mask)[0, 5], m.out_proj(qk_v), rtol=1e-5, atol=1e-6)


def test_appended_padding_moves_no_chunk_border_nor_the_wrap():
    # 20 real tokens in chunks of 8: the first chunk looks back at chunk 2 at every padded length
    m = make(buckets=4, hashes=2, chunk=8)
    x = torch.randn(1, 40, D, generator=torch.Generator().manual_seed(5))
    alone = m(x[:, :20], None)
    for n in (24, 33, 40):
        mask = torch.arange(n)[None] < 20
        torch.testing.assert_close(m(x[:, :n], mask)[:, :20], alone, rtol=1e-5, atol=1e-6)


def test_fully_padded_chunks_and_sequences_give_zeros_and_finite_gradients():
    m = make(buckets=4, hashes=2, chunk=4).train()
    x, mask = padded_inputs()
    mask[1] = False  # a sequence without one real token
    x = x.clone().requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all() and y[~mask].abs().max() == 0
    (y.square().sum() + y.sum()).backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_shared_qk_has_no_key_projection():
    m = make()
    assert m.k_proj is None and "k_proj.weight" not in m.state_dict()


def test_odd_buckets_are_refused_naming_the_option():
    with pytest.raises(ValueError, match="buckets=5.*attention.buckets to an even number"):
        make(buckets=5)


def test_state_dict_keeps_seed_steps_and_the_evaluation_rotations():
    m = make(buckets=4, hashes=2, chunk=4).train()
    m(torch.randn(1, 8, D))
    other = make(buckets=4, hashes=2, chunk=4)
    other.load_state_dict(m.state_dict())
    assert int(other.steps) == 1 and torch.equal(other.rotations, m.rotations)
    other.train()
    other(torch.randn(1, 8, D))
    assert torch.equal(other.last_rotations, m.draw(2))


@pytest.mark.parametrize("max_len,buckets", [(128, 2), (1000, 14), (2000, 30), (4000, 62), (16384, 256)])
def test_buckets_follow_the_task_length(max_len, buckets):
    cfg = compose_config(["attention=reformer", f"task.max_len={max_len}"])
    assert OmegaConf.to_container(cfg.attention, resolve=True) == {
        "name": "reformer", "buckets": buckets, "hashes": 2, "chunk": 64,
    }  # fmt: skip
