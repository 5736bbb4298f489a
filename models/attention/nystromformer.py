"""Nystromformer: softmax attention from m landmarks and a Moore-Penrose pseudo-inverse (Xiong et al. 2021).

Paper: Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh, "Nystromformer: A Nystrom-based Algorithm
for Approximating Self-Attention", AAAI 2021 (arXiv 2102.03902). Reference: ``mlpen/Nystromformer``,
``LRA/code/attention_nystrom.py`` (PyTorch).

With ``Q, K`` scaled by ``d^-1/4`` each and landmarks ``Ql, Kl`` (m x d) the means of Q and K over m
segments of the sequence (paper Eq. 14), per head:

    O = softmax(Q Kl^T) pinv(softmax(Ql Kl^T)) softmax(Ql K^T) V  [+ conv(V)]
          (N, m)           (m, m)                (m, N)

The pseudo-inverse is the reference's iterative one (paper Eq. 13), ``pinv_iterations`` steps of
``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4`` from ``Z0 = A^T / max_j sum_i A_ij``. The
reference takes that max over the whole batch (its default "original" init), so one sequence's
output depends on the others in its batch; here it is per sequence and head (the reference's
other init option). Time O(N m d + m^3), memory O(N m): linear in N for fixed m. ``conv_kernel > 0``
adds the reference's depthwise convolution of V along the sequence (one kernel of that odd length
per head, shared by the head's channels, zero padding); LRA's runs use 35.

Segments and padding. The reference reshapes the N tokens into m equal segments, so it needs m to
divide N, and it averages the zeroed padded q, k into the landmarks. Here the real tokens of each
sequence, in order, are cut into m contiguous segments of floor(n/m) or ceil(n/m) tokens (token of
rank r among the n real ones goes to segment floor(r m / n)): any N works, padding is excluded
from the means, and a padded sequence gives exactly its unpadded output. Padded keys are masked
out of ``softmax(Ql K^T)``. A sequence with at most ``landmarks`` real tokens gets exact softmax
attention, as the reference does when the landmarks equal the length (limit: one token per segment
with an exact pseudo-inverse is exact attention too); the choice is made per sequence from its real
length, never from the padded length, so padding a batch further changes no output. (Inside
``nystrom_attention`` a sequence with fewer real tokens than landmarks has its unused landmarks
masked out of ``softmax(Q Kl^T)`` and identity rows and columns in ``softmax(Ql Kl^T)``, so the
pseudo-inverse of the used block is unchanged.) Statistics are float32 at least.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import register
from models.attention._common import QKVAttention, key_mask_for_sdpa


def iterative_pinv(a: Tensor, iterations: int) -> Tensor:
    """Moore-Penrose pseudo-inverse of (..., m, m) ``a`` by the reference's iteration (paper Eq. 13)."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    z = a.transpose(-1, -2) / a.sum(-2).amax(-1)[..., None, None]  # per matrix: max column sum
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def landmark_means(x: Tensor, mask: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Means of x (B, H, N, d) over m contiguous segments of each sequence's real tokens, (B, H, m, d),
    and which segments hold a token (B, m). mask: (B, N) bool, True = real token.

    The real token of rank r (of n) goes to segment floor(r m / n), so segment s holds the ranks from
    ceil(s n / m) on. One ``index_add`` of the token rows into B*m segment rows (padding into a spare
    row): O(N d), no (m, N) weight matrix.
    """
    b, h, n, d = x.shape
    n_real = mask.sum(-1, keepdim=True)  # (B, 1)
    rank = mask.long().cumsum(-1) - 1  # (B, N)
    segment = rank.clamp(min=0) * m // n_real.clamp(min=1)  # (B, N)
    row = torch.where(mask, segment + torch.arange(b, device=x.device)[:, None] * m, b * m)  # (B, N)
    tokens = x.transpose(1, 2).reshape(b * n, h * d)  # (B*N, H*d): a view for split_heads output
    sums = x.new_zeros(b * m + 1, h * d).index_add(0, row.flatten(), tokens)[:-1]  # (B*m, H*d)
    first_rank = (torch.arange(m + 1, device=x.device) * n_real + m - 1) // m  # (B, m + 1): ceil(s n / m)
    count = first_rank[:, 1:] - first_rank[:, :-1]  # (B, m)
    means = sums.view(b, m, h, d) / count.clamp(min=1)[:, :, None, None].to(x.dtype)
    return means.transpose(1, 2), count > 0  # (B, H, m, d), (B, m)


def nystrom_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, landmarks: int, pinv: Callable[[Tensor], Tensor]
) -> Tensor:
    """The Nystrom approximation on split heads, q, k, v (B, H, N, d) -> (B, H, N, d).

    ``landmarks`` m <= N segments per sequence; ``pinv`` maps (..., m, m) to its pseudo-inverse.
    """
    b, _, n, d = q.shape
    ct = torch.promote_types(q.dtype, torch.float32)
    mask = torch.ones(b, n, dtype=torch.bool, device=q.device) if mask is None else mask
    scale = d**-0.25
    q, k = q.to(ct) * scale, k.to(ct) * scale
    q_l, used = landmark_means(q, mask, landmarks)  # (B, H, m, d), (B, m): padding excluded
    k_l, _ = landmark_means(k, mask, landmarks)
    used = used | ~used.any(-1, keepdim=True)  # a fully padded sequence: keep softmax finite
    col = used[:, None, None, :]  # (B, 1, 1, m)
    kernel_1 = torch.softmax((q @ k_l.transpose(-1, -2)).masked_fill(~col, float("-inf")), -1)  # (B, H, N, m)
    pair = used[:, None, :, None] & col  # (B, 1, m, m)
    scores_2 = (q_l @ k_l.transpose(-1, -2)).masked_fill(~col, float("-inf"))
    eye = torch.eye(landmarks, dtype=torch.bool, device=q.device)
    kernel_2 = torch.where(pair, torch.softmax(scores_2, -1), eye.to(ct))  # (B, H, m, m); I at unused
    key_mask = key_mask_for_sdpa(mask)  # (B, 1, 1, N)
    kernel_3 = torch.softmax((q_l @ k.transpose(-1, -2)).masked_fill(~key_mask, float("-inf")), -1)  # (B, H, m, N)
    out = (kernel_1 @ pinv(kernel_2)) @ (kernel_3 @ v.to(ct))  # (B, H, N, d)
    return out.to(v.dtype)


@register(
    "nystromformer",
    minima={"landmarks": 1, "pinv_iterations": 0, "conv_kernel": 0},
    exact_at_length="landmarks",
)
class NystromAttention(QKVAttention):
    """Nystrom-approximated softmax attention with ``landmarks`` segment-mean landmarks.

    ``pinv_iterations``: steps of the iterative pseudo-inverse; ``conv_kernel``: odd length of the
    depthwise convolution of V added to the output (0 = none). Dropout applies to the attention
    probabilities of the exact path only (the reference has no attention dropout).
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        landmarks: int = 64,
        pinv_iterations: int = 6,
        conv_kernel: int = 0,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if landmarks < 1 or pinv_iterations < 0:
            raise ValueError(
                f"nystromformer landmarks must be >= 1 and pinv_iterations >= 0, got landmarks={landmarks}, "
                f"pinv_iterations={pinv_iterations}"
            )
        if conv_kernel < 0 or (conv_kernel > 0 and conv_kernel % 2 == 0):
            raise ValueError(f"nystromformer conv_kernel must be 0 (off) or an odd length, got {conv_kernel}")
        self.landmarks, self.pinv_iterations, self.conv_kernel = landmarks, pinv_iterations, conv_kernel
        self.conv = None
        if conv_kernel:  # depthwise over the sequence: one (conv_kernel, 1) kernel per head
            self.conv = nn.Conv2d(
                n_heads, n_heads, (conv_kernel, 1), padding=(conv_kernel // 2, 0), bias=False, groups=n_heads
            )

    def exact(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask_for_sdpa(mask), dropout_p=p)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, _, n, _ = q.shape
        real = torch.full((b,), n, device=q.device) if mask is None else mask.sum(-1)  # (B,) real tokens
        short = real <= self.landmarks  # one landmark per token: exact attention, as the reference
        if bool(short.all()):
            out = self.exact(q, k, v, mask)
        else:
            pinv = functools.partial(iterative_pinv, iterations=self.pinv_iterations)
            out = nystrom_attention(q, k, v, mask, self.landmarks, pinv)
            if bool(short.any()):  # decided by each sequence's real length, so padding changes nothing
                rows = short.nonzero().squeeze(1)
                sub = None if mask is None else mask[rows]
                out = out.index_copy(0, rows, self.exact(q[rows], k[rows], v[rows], sub).to(out.dtype))
        if self.conv is not None:
            v_real = v if mask is None else v * mask[:, None, :, None]
            out = out + self.conv(v_real)  # (B, H, N, d)
        return out
