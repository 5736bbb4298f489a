"""Local attention: exact softmax inside blocks of the sequence (LRA's ``local`` model).

Paper: Parmar et al., "Image Transformer" (ICML 2018, arXiv 1802.05751), block-local
self-attention, in 1D as LRA ran it (Tay et al., "Long Range Arena", arXiv 2011.04006). Reference
code: LRA's ``lra_benchmarks/models/local`` (``LocalAttention``, Flax) and ``lucidrains/local-attention``
(``LocalAttention`` with ``look_backward`` / ``look_forward``).

The sequence is cut into blocks of ``window`` tokens (the tail padded and masked); the queries of
block b attend to the keys of blocks b - w .. b + w (w = ``neighbours``; LRA's model has w = 0):

    O_i = sum_{j : |block(j) - block(i)| <= w, j real} softmax_j(q_i k_j / sqrt(d)) v_j

with ``models.attention.blocks.block_attention`` (the block machinery SRformer's local term uses
too): time and memory O(N (2w + 1) window d), linear in N. A window of at least N is one block:
exact softmax attention (the limit); the block is capped at N so a short sequence pads nothing.

Where LRA's code differs: it reshapes the (B, N) token axis into (B, window, N / window) and
attends along the first of those, so its "blocks" group the tokens with the same index modulo
N / window (a strided pattern), while its padding mask is cut into contiguous blocks. We follow
the design the LRA paper and Parmar et al. state, contiguous blocks, as lucidrains' code does.
Padding: the reference masks padded keys (lucidrains) and blocks past the end; so do we, and a
query whose window holds no real key (a fully padded block) gets zeros. Blocks start at position 0,
so padding appended at the end never moves a real token to another block.
"""

from __future__ import annotations

from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention
from models.attention.blocks import block_attention


@register(
    "local",
    minima={"window": 1, "neighbours": 0},
    exact_at_length="window",
    follows_length=("window",),
)
class LocalAttention(QKVAttention):
    """Block-local softmax attention: blocks of ``window`` queries over their block and ``neighbours`` each side.

    forward(x (B, N, D), mask (B, N) bool, True = real token) -> (B, N, D), zero at padding.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, window: int = 256, neighbours: int = 0):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if window < 1 or neighbours < 0:
            raise ValueError(
                f"local needs window >= 1 and neighbours >= 0, got window={window}, neighbours={neighbours}"
            )
        self.window, self.neighbours = window, neighbours

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        block = min(self.window, q.shape[2])  # one block covers a short sequence: nothing to pad
        p = self.dropout if self.training else 0.0
        return block_attention(q, k, v, block=block, valid=mask, neighbours=self.neighbours, dropout=p)
