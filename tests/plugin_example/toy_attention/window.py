"""Sliding-window softmax attention, written as a package of its own would write it.

Each query attends to the real keys within ``window`` positions of it, with its own projections:

    O_i = sum_{j : |i - j| <= w, m_j} softmax_j(q_i . k_j / sqrt(d)) v_j,   then heads merged and W_o,

where ``m`` is the mask (True = real token) and ``d = d_model / n_heads``. With ``w >= N`` every key is in
reach and it is exact softmax attention. Outputs at padded positions are zero. It builds the (N, N) band
as a boolean mask for ``scaled_dot_product_attention``, so its memory is quadratic: an example of the
interface, not an efficient mechanism.

The harness reads two class attributes: ``declares`` (the fields of ``models.attention.Declaration``)
and, for ``SizedWindowAttention``, ``config_file`` (a YAML file beside this module whose window follows
``task.max_len``). Without a ``config_file`` the config is the constructor's keyword defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WindowAttention(nn.Module):
    declares = {"minima": {"window": 1}, "exact_at_length": "window"}

    def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, window: int = 16):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.n_heads, self.dropout, self.window = n_heads, dropout, window
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); mask: (B, N) bool, True = real token. Returns (B, N, D), zero at padding."""
        b, n, d_model = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # each (B, H, N, d)
        pos = torch.arange(n, device=x.device)
        band = (pos[:, None] - pos[None, :]).abs() <= self.window  # (N, N)
        allowed = band if mask is None else band & mask[:, None, None, :]  # (B, 1, N, N)
        allowed = allowed | torch.eye(n, dtype=torch.bool, device=x.device)  # a padded query keeps one key
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)  # (B, H, N, d)
        y = self.out(o.transpose(1, 2).reshape(b, n, d_model))
        return y if mask is None else y.masked_fill(~mask[..., None], 0.0)


class SizedWindowAttention(WindowAttention):
    """The same mechanism with its window sized from the task (sized_window.yaml: N / 4)."""

    declares = {"minima": {"window": 1}, "exact_at_length": "window", "follows_length": ("window",)}
    config_file = "sized_window.yaml"
