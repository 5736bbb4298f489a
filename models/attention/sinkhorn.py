"""Sparse Sinkhorn attention: block-local attention plus one softly sorted block (Tay et al. 2020).

Paper: Tay, Bahri, Yang, Metzler, Juan, "Sparse Sinkhorn Attention" (ICML 2020, arXiv 2002.11296).
References: LRA's ``sinkhorn`` model (``google-research/long-range-arena``,
``lra_benchmarks/models/sinkhorn_transformer``, Flax) and ``lucidrains/sinkhorn-transformer`` (PyTorch).

The sequence is cut into nb = ceil(N / b) blocks of ``block_size`` b (the tail is padded and masked).
Per head, with K_j, V_j the keys and values of block j (padded keys and values zeroed):

    s_j     = sum_{t in block j} k_t                      block summary: the SUM of its real keys (as LRA)
    R_ji    = (w_i . s_j) / temperature                   sorting network: a linear map d -> max_blocks
                                                          (no bias), shared by the heads, first nb outputs
    P       = Sinkhorn(R)                                 ``iterations`` rounds, in log space, of
              R <- R - logsumexp_i R  (rows), then R <- R - logsumexp_j R  (columns);  P = exp(R)
    K~_i    = sum_j P_ji K_j,   V~_i = sum_j P_ji V_j     the block sorted into slot i (a convex mixture:
                                                          the last step makes every column of P sum to 1)
    O_i     = softmax(Q_i [K_i ; K~_i]^T / sqrt(d)) [V_i ; V~_i]     ONE softmax over 2b keys (the paper)

``lra_two_softmax: true`` instead adds two separate softmaxes, as LRA's code does:
``O_i = softmax(Q_i K_i^T / sqrt(d)) V_i + softmax(Q_i K~_i^T / sqrt(d)) V~_i``.

Choices, where the references differ or are silent:
- The sorting network follows LRA's (a bias-free Dense on the block sums of the keys, xavier-uniform init):
  its output width is ``max_blocks = ceil(max_len / block_size)``, so the module takes ``max_len`` (the
  task's length, CLS token included) and uses the first nb outputs; a longer sequence is refused.
  lucidrains instead scores relu([sum Q ; sum K] W) per head and adds Gumbel noise (also in eval); LRA has
  neither, and neither has this module: it is deterministic in training too.
- LRA's code departs from the paper in ways this module does not copy: its default ``sort_activation`` is a
  row softmax rather than Sinkhorn; its Sinkhorn operator clips the final log-values to [-1, 1]; its blocks
  are a strided reshape (bs, block_size, num_blocks); and its einsum ``bskhd,bnhl->bsnhd`` sums the two
  block axes independently, so every slot receives the sum of all blocks. This module computes the
  paper's sorted blocks P K (above) over contiguous blocks, with Sinkhorn and no clip.
- With one block P = [[1]], the sorted block IS the own block and the single softmax sees every key twice:
  each weight halves and each value is counted twice, so the output equals exact softmax attention
  (the degenerate limit, ``block_size >= N``). The two-softmax switch gives twice vanilla there.

Padding (the references only mask scores): padded keys and values are zeroed, so summaries sum real keys
only and a fully padded block's summary is 0 (finite). Blocks without a real token take no part in the
sorting: their rows and columns of R are masked, except a 0 on their own diagonal entry, so P is
block-diagonal and equals, on the real blocks, the Sinkhorn of the real blocks alone; a padded block sorts
to itself. In the sorted slot i, position t is a key when some real block has a real token at t (LRA's
``sorted_padding_mask``: a mixture with P > 0 of real keys). Appending padding therefore changes nothing at
real positions. Rows without any valid key (fully padded query blocks) attend to all 2b entries to stay
finite, and every padded output row is zeroed.
Cost: O(N b d) for the blocks plus O(nb^2 b d) for the sorting (nb^2 = (N/b)^2 entries of P per head);
no N x N tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import register
from models.attention._common import QKVAttention
from models.attention.linformer import check_length, length_warnings


def sinkhorn_log(logits: Tensor, iterations: int, valid: Tensor | None = None) -> Tensor:
    """Soft permutation exp(Sinkhorn(logits)) of (..., nb, nb) logits R_ji (source block j, slot i).

    Each round normalises over slots (last axis), then over sources (axis -2), in log space and in float32
    at least. ``valid`` (B, nb) bool marks blocks with a real token; the others get -inf rows and columns
    with a 0 on the diagonal, so they map to themselves and do not change the real blocks' P.
    """
    ct = torch.promote_types(logits.dtype, torch.float32)
    r = logits.to(ct)
    if valid is not None:
        nb = r.shape[-1]
        both = valid[:, :, None] & valid[:, None, :]  # (B, nb, nb)
        eye = torch.eye(nb, dtype=torch.bool, device=r.device) & ~valid[:, :, None]
        r = r.masked_fill(~both[:, None], float("-inf")).masked_fill(eye[:, None], 0.0)
    for _ in range(iterations):
        r = r - torch.logsumexp(r, dim=-1, keepdim=True)
        r = r - torch.logsumexp(r, dim=-2, keepdim=True)
    return r.exp()


@register(
    "sinkhorn",
    minima={"block_size": 1, "iterations": 0, "max_len": 1},
    exact_at_length="block_size",
    follows_length=("max_len", "block_size"),
    warnings=length_warnings,
)
class SinkhornAttention(QKVAttention):
    """Each query block attends to its own block and to a Sinkhorn-sorted mixture of blocks (one softmax).

    ``block_size`` b; ``iterations`` Sinkhorn rounds; ``temperature`` divides the sorting logits;
    ``max_len`` the longest sequence (sizes the sorting network: ceil(max_len / b) outputs);
    ``lra_two_softmax`` adds two softmaxes as LRA's code does. Dropout applies to the attention weights.
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        block_size: int = 64,
        iterations: int = 8,
        temperature: float = 0.75,
        max_len: int = 4096,
        lra_two_softmax: bool = False,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if block_size < 1 or max_len < 1 or iterations < 0 or not temperature > 0:
            raise ValueError(
                f"sinkhorn needs block_size >= 1, max_len >= 1, iterations >= 0 and temperature > 0, got "
                f"block_size={block_size}, max_len={max_len}, iterations={iterations}, temperature={temperature}"
            )
        self.block_size, self.iterations, self.temperature = block_size, iterations, temperature
        self.max_len, self.lra_two_softmax = max_len, lra_two_softmax
        self.max_blocks = -(-max_len // block_size)
        # LRA: DenseGeneral(head_dim -> max_num_blocks), no bias, xavier_uniform kernel, shared by the heads
        self.sort_net = nn.Linear(self.head_dim, self.max_blocks, bias=False)
        nn.init.xavier_uniform_(self.sort_net.weight)

    def permutation(self, k: Tensor, mask: Tensor | None) -> Tensor:
        """P (B, H, nb, nb), P[..., j, i] = weight of block j in slot i, from zero-padded keys (B, H, nb*b, d)
        and the (B, nb*b) mask (None: every token real); columns sum to 1."""
        b, h, n, d = k.shape
        nb = n // self.block_size
        summary = k.reshape(b, h, nb, self.block_size, d).sum(dim=3)  # (B, H, nb, d)
        logits = F.linear(summary, self.sort_net.weight[:nb])  # (B, H, nb, nb)
        valid = None if mask is None else mask.view(b, nb, self.block_size).any(dim=-1)  # (B, nb)
        return sinkhorn_log(logits / self.temperature, self.iterations, valid)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """q, k, v: (B, H, N, d); mask (B, N) True = real. Returns (B, H, N, d)."""
        bsz, h, n, d = q.shape
        check_length("sinkhorn", n, self.max_len)
        bs = self.block_size
        nb = -(-n // bs)
        pad = nb * bs - n
        dense = mask is None and pad == 0  # no padding at all: no masks (SDPA's unmasked kernels)
        real = None
        if not dense:
            real = torch.ones(bsz, n, dtype=torch.bool, device=q.device) if mask is None else mask
            real = F.pad(real, (0, pad), value=False)  # (B, nb*b)
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            keep = real[:, None, :, None]
            # padded keys and values are zero: summaries and mixtures see real ones only
            k, v = k * keep, v * keep
        k, v = k.contiguous(), v.contiguous()  # (B, H, nb*b, d)
        p = self.permutation(k, real).to(k.dtype)  # (B, H, nb, nb)

        # sorted blocks: K~_i = sum_j P_ji K_j, one (nb x nb) @ (nb, b*d) product per (item, head)
        kb, vb = k.reshape(bsz, h, nb, bs * d), v.reshape(bsz, h, nb, bs * d)
        p_t = p.transpose(-1, -2)  # (B, H, slot i, source j)
        k_sorted = torch.matmul(p_t, kb).view(bsz, h, nb, bs, d)  # (B, H, nb, b, d)
        v_sorted = torch.matmul(p_t, vb).view(bsz, h, nb, bs, d)

        blocks = sorted_real = both = None
        if not dense:
            blocks = real.view(bsz, nb, bs)  # (B, nb, b)
            valid = blocks.any(dim=-1)  # (B, nb)
            sorted_real = valid[:, :, None] & blocks.any(dim=1)[:, None, :]  # (B, nb, b): a real block has t
            both = torch.cat([blocks, sorted_real], dim=-1)
        qb = q.reshape(bsz, h * nb, bs, d)  # (B, H*nb, b, d)
        kb, vb = kb.view(bsz, h, nb, bs, d), vb.view(bsz, h, nb, bs, d)
        drop = self.dropout if self.training else 0.0
        if self.lra_two_softmax:
            own = self._sdpa(qb, kb, vb, blocks, drop)
            out = own + self._sdpa(qb, k_sorted, v_sorted, sorted_real, drop)
        else:
            keys = torch.cat([kb, k_sorted], dim=3)  # (B, H, nb, 2b, d)
            values = torch.cat([vb, v_sorted], dim=3)
            out = self._sdpa(qb, keys, values, both, drop)
        return out.view(bsz, h, nb * bs, d)[:, :, :n]

    def _sdpa(self, qb: Tensor, keys: Tensor, values: Tensor, key_real: Tensor | None, drop: float) -> Tensor:
        """Blocked SDPA: qb (B, H*nb, b, d), keys/values (B, H, nb, T, d), key_real (B, nb, T) bool or None."""
        bsz, h, nb, t, d = keys.shape
        attn_mask = None
        if key_real is not None:
            key_real = key_real | ~key_real.any(dim=-1, keepdim=True)  # a keyless (padded) block sees all
            attn_mask = key_real[:, None, :, None, :].expand(bsz, h, nb, 1, t).reshape(bsz, h * nb, 1, t)
        return F.scaled_dot_product_attention(
            qb, keys.reshape(bsz, h * nb, t, d), values.reshape(bsz, h * nb, t, d), attn_mask=attn_mask, dropout_p=drop
        )  # (B, H*nb, b, d)
