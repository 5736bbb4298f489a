"""Linformer: self-attention through a learned low-rank map along the sequence (Wang et al. 2020).

Paper: Wang, Li, Khabsa, Fang, Ma, "Linformer: Self-Attention with Linear Complexity"
(arXiv 2006.04768). References: ``lucidrains/linformer`` (PyTorch) and LRA's ``linformer`` model
(``google-research/long-range-arena``, ``lra_benchmarks/models/linformer``, Flax).

Two learned matrices ``E, F: [k, max_len]`` project the keys and the values along the sequence
axis, from N tokens to k rows, before ordinary softmax attention (paper Eq. 7), per head:

    K' = E[:, :N] K,   V' = F[:, :N] V                      (k, d)
    O  = softmax(Q K'^T / sqrt(d)) V'                       (N, d)

so the score matrix is N x k: time O(N k d) and memory O(N k), linear in N for fixed k. ``E`` and
``F`` are shared by the heads (as in both references); ``share_kv: true`` uses one matrix for both
(the paper's key-value sharing, E = F, which LRA's model always does; lucidrains' ``share_kv``
also ties the key and value projections, this one does not). A sequence shorter than ``max_len``
uses the first N columns (as LRA and the `linformer` package do); a longer one is refused.
E and F start as LRA's (LeCun normal over the sequence axis: std 1 / sqrt(max_len)).

Padding (neither reference masks: LRA's code asks "does Linformer care about masks?"): keys and
values are zeroed at padded positions before the projection, so padded tokens contribute nothing
to K' and V', and a sequence padded at the end gives exactly its unpadded output. Every projected
row is a real key: the softmax over k rows needs no mask. Limit: ``k = max_len = N`` with
``E = F = I`` is exact softmax attention on a sequence without padding; with padding each zeroed
key still adds exp(0) to the softmax denominator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import register
from models.attention._common import QKVAttention, merge_heads, split_heads, zero_padding


def length_warnings(options, n: int):
    """A ``max_len`` below the sequence length would be refused at the first forward pass."""
    if options["max_len"] < n:
        yield (
            f"attention.max_len={options['max_len']} < sequence length {n}: the forward pass will refuse "
            f"sequences longer than max_len; set attention.max_len >= {n}"
        )


def check_length(name: str, n: int, max_len: int) -> None:
    """Refuse a sequence longer than the learned length axis, naming the option to raise."""
    if n > max_len:
        raise ValueError(
            f"{name}: the sequence has {n} tokens but attention.max_len={max_len}; set attention.max_len >= {n} "
            f"(configs/attention/{name}.yaml sizes it from task.max_len)"
        )


@register("linformer", minima={"max_len": 1, "k": 1}, follows_length=("max_len",), warnings=length_warnings)
class LinformerAttention(QKVAttention):
    """Softmax attention over k learned mixtures of the keys/values: ``softmax(Q (E K)^T / sqrt(d)) F V``.

    ``max_len``: the longest sequence (columns of E and F); ``k``: projected length; ``share_kv``:
    F = E. Dropout applies to the attention probabilities.
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        max_len: int = 4096,
        k: int = 256,
        share_kv: bool = False,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if max_len < 1 or k < 1:
            raise ValueError(f"linformer max_len and k must be positive integers, got max_len={max_len}, k={k}")
        self.max_len, self.k, self.share_kv = max_len, k, share_kv
        self.proj_e = nn.Parameter(torch.randn(k, max_len) * max_len**-0.5)  # (k, max_len)
        self.proj_f = None if share_kv else nn.Parameter(torch.randn(k, max_len) * max_len**-0.5)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); mask: (B, N) bool, True = real token. Returns (B, N, D), zero at padding."""
        n, h = x.shape[1], self.n_heads
        check_length("linformer", n, self.max_len)
        key, value = zero_padding(self.k_proj(x), mask), zero_padding(self.v_proj(x), mask)  # (B, N, D)
        e = self.proj_e[:, :n].to(x.dtype)  # (k, N)
        f = e if self.proj_f is None else self.proj_f[:, :n].to(x.dtype)
        # project along the sequence before splitting heads: one (k, N) x (N, D) product per item
        k_low = split_heads(torch.matmul(e, key), h)  # (B, H, k, d)
        v_low = split_heads(torch.matmul(f, value), h)  # (B, H, k, d)
        q = split_heads(self.q_proj(x), h)  # (B, H, N, d)
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k_low, v_low, dropout_p=p)  # (B, H, N, d)
        return zero_padding(self.out_proj(merge_heads(o)), mask)
