"""Longformer attention: a sliding window plus global tokens, by overlapping blocks (never N x N).

Paper: Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer" (arXiv 2004.05150).
Reference code: ``allenai/longformer`` and Hugging Face ``LongformerSelfAttention`` (PyTorch,
chunked), LRA's ``lra_benchmarks/models/longformer`` (Flax, an N x N mask).

With c = window // 2 and G = {0, ..., global_tokens} (position 0 is the CLS token with
``pool=cls``; ``global_tokens`` more from the start), per head:

    non-global query i:  keys { j real : |i - j| <= c }  u  { j real : j in G }    (each key once)
    global query i in G: every real key
    O_i = sum_j softmax_j(q_i k_j / sqrt(d)) v_j over those keys, in one softmax

The window is HF's (``attention_window`` = window, c on each side; HF refuses odd windows, here an
odd window has c = window // 2 on each side, as LRA's mask has for odd sizes; for even sizes LRA's
mask reaches c - 1 to the left and c to the right). Global keys join the window keys as HF does it:
removed from the band and added as a separate key set, so a global key inside the band counts once.

Computation (``models.attention.blocks.block_attention``): blocks of c queries, each over its own
block and one neighbour each side (3c keys) with the band |i - j| <= c, plus the G global keys
shared by every block: O(N (3c + G) d) time and memory, linear in N. The G global rows are one
SDPA over all N keys, O(G N d). Window >= 2N: c >= N, every key in the band: exact attention (the
limit); the block is capped at N.

Projections: one set (W_q, W_k, W_v, W_o) for both patterns. HF and LRA compute the global rows
with separate ``query_global``/``key_global``/``value_global`` projections; we keep LRA's other
mechanisms' single set so the layer has vanilla's parameters and its limit is vanilla with the
same weights; the pattern (what attends to what) is the reference's. Padding (HF masks padded keys
in both parts; so do we): padded keys are excluded everywhere; a query with no real key gets zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention, key_mask_for_sdpa
from models.attention.blocks import block_attention


def window_warnings(options, n: int):
    """A window of at least 2N reaches every key: exact attention."""
    if options["window"] >= 2 * n:
        yield (
            f"attention.window={options['window']} >= 2 x sequence length {n}: longformer computes exact "
            "attention at this length (each token sees window/2 on each side)"
        )


@register(
    "longformer",
    minima={"window": 2, "global_tokens": 0},
    follows_length=("window",),
    warnings=window_warnings,
)
class LongformerAttention(QKVAttention):
    """Sliding-window attention (window/2 each side) with global tokens 0 .. ``global_tokens``.

    forward(x (B, N, D), mask (B, N) bool, True = real token) -> (B, N, D), zero at padding.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, window: int = 256, global_tokens: int = 0):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if window < 2 or global_tokens < 0:
            raise ValueError(
                f"longformer needs window >= 2 and global_tokens >= 0, got window={window}, "
                f"global_tokens={global_tokens}"
            )
        self.window, self.global_tokens = window, global_tokens

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, _, n, _ = q.shape
        c = min(self.window // 2, n)  # reach on each side; one block covers a short sequence
        g = min(self.global_tokens + 1, n)  # global positions 0 .. g - 1
        p = self.dropout if self.training else 0.0
        valid = torch.ones(b, n, dtype=torch.bool, device=q.device) if mask is None else mask
        in_band = valid & (torch.arange(n, device=q.device) >= g)  # global keys come through the shared set
        extra = (k[:, :, :g], v[:, :, :g], valid[:, :g])
        local = block_attention(q, k, v, block=c, valid=in_band, neighbours=1, reach=c, extra=extra, dropout=p)
        glob = F.scaled_dot_product_attention(q[:, :, :g], k, v, attn_mask=key_mask_for_sdpa(mask), dropout_p=p)
        return torch.cat([glob, local[:, :, g:]], dim=2)  # (B, H, N, d): the global rows see everything
