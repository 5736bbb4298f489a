"""The block machinery (models/attention/blocks.py) against dense attention under the mask its docstring defines."""

import pytest
import torch

from models.attention.blocks import block_attention, to_blocks

B, H, N, d = 2, 2, 30, 8


def qkv(n=N, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, d, generator=g, dtype=dtype) for _ in range(3)]


def holes(n=N):
    """Item 0 padded from 21 on, item 1 with positions 6..11 padded (block 1 of 6 fully padded)."""
    valid = torch.ones(B, n, dtype=torch.bool)
    valid[0, 21:] = False
    valid[1, 6:12] = False
    return valid


def dense(q, k, v, valid, m, neighbours=0, reach=None, causal=False, extra=None):
    """Softmax over the allowed keys, from an explicit (N, N + E) mask; rows without a key are zero."""
    n = q.shape[2]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    allowed = ((j // m - i // m).abs() <= neighbours) & valid[:, None, None, :]  # (B, 1, N, N)
    if reach is not None:
        allowed = allowed & ((j - i).abs() <= reach)
    if causal:
        allowed = allowed & (j <= i)
    keys, values = k, v
    if extra is not None:
        ke, ve, ev = extra
        allowed = torch.cat([allowed, ev[:, None, None, :].expand(B, 1, n, ke.shape[2])], dim=-1)
        keys, values = torch.cat([k, ke], dim=2), torch.cat([v, ve], dim=2)
    scores = (q @ keys.transpose(-1, -2) / d**0.5).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ values


@pytest.mark.parametrize(
    "opts",
    [
        {"m": 6},
        {"m": 7},  # 30 tokens in blocks of 7: the last block padded inside
        {"m": 4, "neighbours": 2},
        {"m": 5, "neighbours": 1, "reach": 5},  # Longformer's band
        {"m": 6, "causal": True},  # SRformer's causal segments
        {"m": 6, "extra": True},
        {"m": 5, "neighbours": 1, "reach": 5, "extra": True},
    ],
)
def test_blocks_equal_dense_attention_under_the_stated_mask(opts):
    q, k, v = qkv()
    valid = holes()
    opts = dict(opts)
    if opts.pop("extra", False):
        ke, ve = (t.clone() for t in qkv(n=3, seed=1)[:2])
        ev = torch.tensor([[True, False, True], [True, True, True]])
        opts["extra"] = (ke, ve, ev)
    m = opts.pop("m")
    out = block_attention(q, k, v, block=m, valid=valid, **opts)
    torch.testing.assert_close(out, dense(q, k, v, valid, m, **opts), rtol=1e-10, atol=1e-12)


def test_a_fully_padded_block_gives_zeros_and_finite_gradients():
    q, k, v = (t.requires_grad_(True) for t in qkv(dtype=torch.float32))
    valid = holes()
    out = block_attention(q, k, v, block=6, valid=valid)
    assert torch.equal(out[1, :, 6:12], torch.zeros_like(out[1, :, 6:12]))  # block 1 of item 1: no key
    out.square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_blocks_are_a_view_of_the_projection_layout():
    """No copy of q, k or v when N is a multiple of the block (the head split of a (B, N, D) tensor)."""
    x = torch.randn(B, 24, H * d)
    t = x.view(B, 24, H, d).transpose(1, 2)  # (B, H, N, d) as split_heads makes it
    assert to_blocks(t, 6).data_ptr() == x.data_ptr() and to_blocks(t, 6)._base is x
