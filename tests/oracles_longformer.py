"""Slow float64 transcription of Longformer's attention pattern (Hugging Face ``LongformerSelfAttention``).

HF's forward, non-causal, one-sided window w = attention_window / 2: a non-global query i attends in one
softmax to the keys with |i - j| <= w (``_sliding_chunks_query_key_matmul``) minus the global and padded
ones (``remove_from_windowed_attention_mask``), plus every global key (``_concat_with_global_key_attn_probs``);
a global query attends to every non-padded key (``_compute_global_attn_output_from_hidden``). Here with the
module's single q/k/v/o projections (HF's separate global projections are replaced by the same ones, as
models/attention/longformer.py states); global positions 0 .. global_tokens. Per item, head and query.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tests.oracles import merge_and_project, split_qkv


def longformer_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """The layer's output (B, N, D)."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    w, is_global = module.window // 2, [i <= module.global_tokens for i in range(n)]
    out = torch.zeros_like(q)
    for bi in range(b):
        for i in range(n):
            if is_global[i]:
                keys = [j for j in range(n) if real[bi, j]]
            else:
                windowed = [j for j in range(n) if abs(i - j) <= w and not is_global[j] and real[bi, j]]
                keys = [j for j in range(n) if is_global[j] and real[bi, j]] + windowed
            if not real[bi, i] or not keys:
                continue
            for hi in range(h):
                scores = torch.stack([q[bi, hi, i] @ k[bi, hi, j] for j in keys]) * d**-0.5
                out[bi, hi, i] = torch.softmax(scores, dim=0) @ v[bi, hi, keys]
    return merge_and_project(module, out, mask)
