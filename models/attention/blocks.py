"""Block machinery: exact softmax attention of each query block over a few neighbouring key blocks.

The sequence of N tokens is cut into M = ceil(N / m) blocks of m tokens (the tail padded with
zeros and masked). Query block b attends, in one softmax, to the keys of blocks b - w .. b + w
(w = ``neighbours``; blocks outside the sequence are masked) and, optionally, to E extra keys that
every block shares (Longformer's global tokens, the Sparse Transformer's summary columns):

    O_i = sum_{j in W(i) u X} softmax_j(q_i k_j / sqrt(d) + bias_ij) v_j
    W(i) = { j : |block(j) - block(i)| <= w, j real, (j - i) in the band },  X = the extra keys

``reach`` keeps only the keys with |j - i| <= reach inside the window (a sliding band, as
Longformer's), and ``causal`` only j <= i. A query with no allowed key at all (a fully padded
block, a padded position with nothing real around it) gets zeros, never NaN, also in the backward:
its row attends to everything (finite) and is multiplied by zero afterwards.

Cost per query block: m x ((2w + 1) m + E) scores, so time and memory are O(N ((2w + 1) m + E) d),
linear in N for fixed m, w and E. Nothing N x N is ever built: q, k and v are viewed as
(B M, H, m, d) blocks (a view of the projection's (B, N, D) layout when N is a multiple of m), the
window keys are the 2w + 1 shifted block views concatenated along the key axis, and one
``F.scaled_dot_product_attention`` call runs on the 4-D (B M, H, m, L) problem (4-D keeps torch's
fused CPU flash kernel, which takes the boolean mask; with dropout it falls back to the math path,
still blockwise). The static band masks are cached per (m, w, reach, causal, device).

Used by ``local`` (w blocks each side), ``longformer`` (blocks of window/2, w = 1, reach = window/2,
global tokens as extra keys), ``sparse`` (w = 0, summary tokens as extra keys) and SRformer's local
term (w = 0, causal inside the segment when asked).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


def n_blocks(n: int, m: int) -> int:
    """ceil(n / m): the number of blocks of m that hold n tokens."""
    return -(-n // m)


def to_blocks(t: Tensor, m: int) -> Tensor:
    """(B, H, N, d) -> (B, M, H, m, d), zero-padded at the tail to M m tokens.

    A view when t is the head split of a (B, N, D) tensor and N is a multiple of m.
    """
    b, h, n, d = t.shape
    nb = n_blocks(n, m)
    t = t.transpose(1, 2)  # (B, N, H, d)
    if nb * m != n:
        t = F.pad(t, (0, 0, 0, 0, 0, nb * m - n))  # (B, Np, H, d)
    return t.reshape(b, nb, m, h, d).transpose(2, 3)  # (B, M, H, m, d)


def from_blocks(t: Tensor, n: int) -> Tensor:
    """(B, M, H, m, d) -> (B, H, n, d): blocks back in sequence order, the tail padding cut off."""
    b, nb, h, m, d = t.shape
    return t.transpose(2, 3).reshape(b, nb * m, h, d)[:, :n].transpose(1, 2)


def valid_blocks(valid: Tensor | None, b: int, n: int, m: int, device: torch.device) -> Tensor:
    """Key validity per block: (B, N) True = real (None: all real) -> (B, M, m), False in the tail padding."""
    nb = n_blocks(n, m)
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=device)
    return F.pad(valid, (0, nb * m - n), value=False).view(b, nb, m)


def windows(t: Tensor, neighbours: int, dim: int, fill=0) -> Tensor:
    """Concatenate, along ``dim``, the blocks b - w .. b + w next to each block b (axis 1 of t).

    t: (B, M, ...); blocks beyond either end are ``fill``. The result has axis ``dim`` 2w + 1 times longer.
    """
    if neighbours == 0:
        return t
    nb = t.shape[1]
    pad = [0, 0] * (t.dim() - 2) + [neighbours, neighbours]  # F.pad runs from the last axis back to axis 1
    padded = F.pad(t, pad, value=fill)  # (B, M + 2w, ...)
    return torch.cat([padded[:, o : o + nb] for o in range(2 * neighbours + 1)], dim=dim)


@functools.lru_cache(maxsize=64)
def band(m: int, neighbours: int, reach: int | None, causal: bool, device: torch.device) -> Tensor | None:
    """(m, (2w + 1) m) bool: query r of a block may see window slot s (key j - i = s - w m - r).

    None when every slot is allowed (no reach, not causal). Cached: read-only.
    """
    if reach is None and not causal:
        return None
    offset = torch.arange((2 * neighbours + 1) * m, device=device)[None, :] - neighbours * m
    offset = offset - torch.arange(m, device=device)[:, None]  # (m, L): j - i
    allowed = torch.ones_like(offset, dtype=torch.bool)
    if reach is not None:
        allowed &= offset.abs() <= reach
    if causal:
        allowed &= offset <= 0
    return allowed


def block_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    block: int,
    valid: Tensor | None = None,
    neighbours: int = 0,
    reach: int | None = None,
    causal: bool = False,
    extra: tuple[Tensor, Tensor, Tensor | None] | None = None,
    dropout: float = 0.0,
) -> Tensor:
    """Softmax attention of each block of ``block`` queries over its key window (and the extra keys).

    q, k, v: (B, H, N, d); valid: (B, N) True = a key that may be attended (None: all); ``neighbours``
    blocks each side; ``reach``: max |j - i| inside the window; ``causal``: j <= i; ``extra``: keys,
    values (B, H, E, d) and their validity (B, E) (None: all valid), seen by every query besides its
    window. Returns (B, H, N, d); zero for a query with no allowed key.
    """
    b, h, n, d = q.shape
    m = block
    nb = n_blocks(n, m)
    qb, kb, vb = (to_blocks(t, m) for t in (q, k, v))  # (B, M, H, m, d)
    kw, vw = windows(kb, neighbours, dim=3), windows(vb, neighbours, dim=3)  # (B, M, H, L, d)
    pattern = band(m, neighbours, reach, causal, q.device)  # (m, L) or None
    needs_mask = valid is not None or nb * m != n or neighbours > 0 or pattern is not None or extra is not None
    key_ok = windows(valid_blocks(valid, b, n, m, q.device), neighbours, dim=2, fill=False) if needs_mask else None
    if extra is not None:
        ke, ve, extra_valid = extra
        e = ke.shape[2]
        kw = torch.cat([kw, ke[:, None].expand(b, nb, h, e, d)], dim=3)  # (B, M, H, L + E, d)
        vw = torch.cat([vw, ve[:, None].expand(b, nb, h, e, d)], dim=3)
        if extra_valid is None:
            extra_valid = torch.ones(b, e, dtype=torch.bool, device=q.device)
        key_ok = torch.cat([key_ok, extra_valid[:, None].expand(b, nb, e)], dim=2)  # (B, M, L + E)
        if pattern is not None:
            pattern = F.pad(pattern, (0, e), value=True)  # the extra keys lie outside the band
    p = dropout
    q4, k4, v4 = (t.reshape(b * nb, h, t.shape[3], d) for t in (qb, kw, vw))  # (B M, H, m | L + E, d)
    if not needs_mask:
        out = F.scaled_dot_product_attention(q4, k4, v4, dropout_p=p)
        return from_blocks(out.view(b, nb, h, m, d), n)
    allowed = key_ok[:, :, None, :]  # (B, M, 1, L + E)
    if pattern is not None:
        allowed = allowed & pattern  # (B, M, m, L + E)
    row_ok = allowed.any(dim=-1, keepdim=True)  # (B, M, m | 1, 1): the query has a key
    allowed = (allowed | ~row_ok).view(b * nb, 1, allowed.shape[2], -1)  # an empty row attends to all: finite
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=allowed, dropout_p=p)  # (B M, H, m, d)
    out = out.view(b, nb, h, m, d) * row_ok[:, :, None].to(out.dtype)  # zero where nothing was allowed
    return from_blocks(out, n)
