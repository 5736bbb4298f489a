"""Performer: FAVOR+ attention, Choromanski et al., "Rethinking Attention with Performers", ICLR 2021
(arXiv 2009.14794). References: google-research ``performer/fast_attention`` (jax,
``nonnegative_softmax_kernel_feature_creator`` and ``FastAttentionviaLowRankDecomposition``) and
lucidrains/performer-pytorch (``softmax_kernel``, ``gaussian_orthogonal_random_matrix``).

Softmax's kernel ``exp(q . k / sqrt(d))`` is estimated without bias by positive random features: with
``x~ = d^(-1/4) x`` and the rows ``w_r`` of a random ``W: [m, d]``,

    phi(x)_r = m^(-1/2) (exp(w_r . x~ - |x~|^2 / 2 - M) + eps_f),   E[phi(q) . phi(k)] ~ exp(q . k / sqrt(d))

and then ``O_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / R_i``, ``R_i = phi(q_i)^T sum_j phi(k_j)``
(``linear.feature_attention``), in O(N m d). ``M`` is the reference's stabiliser: for a query the max of
its own ``w_r . q~`` over r; for the keys one max over every real key and r, per sequence and head (the
jax reference's axes), so it cancels between numerator and denominator up to ``eps_f = 1e-4``. The jax
reference also adds ``2e-6`` to any ``|R_i| <= 1e-6``. Unlike lucidrains' key stabiliser (one max over
the whole batch), no sequence depends on another.

Features: orthogonal random features, ``ceil(m / d)`` independent blocks ``Q^T`` from the QR
decomposition of ``d x d`` Gaussian matrices (rows orthonormal within a block), each row rescaled by the
norm of an independent Gaussian ``d``-vector (a chi(d) length, as a Gaussian row has); one ``W`` shared
by the heads, as both references. Draw ``r`` of a module comes from a CPU generator seeded by
``(seed, r)``; ``seed`` is taken from torch's global RNG when the module is built (so every layer differs
and a seeded run is reproducible) and kept as a buffer. In training the module counts its forward calls
in the buffer ``steps`` and uses draw ``steps // redraw_every`` (``redraw_every = 0``: never redraw);
evaluation uses the current features and counts nothing. Since ``seed``, ``steps`` and ``W`` are in the
state dict, a resumed run redraws at the same steps with the same draws. (With gradient accumulation a
step here is one forward call.)

Padding (the jax reference ignores its mask; lucidrains zeroes padded keys, which still add
``phi(0)``): padded keys are left out of the key stabiliser and their features are zeroed, so padding
never changes real positions. Causal (``causal=True``): the sums run over keys j <= i (prefix sums by
chunks); the key stabiliser stays the one max over the sequence, as in the jax reference, so a later
key can change an earlier output through ``eps_f`` (LRA's tasks are all non-causal).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention
from models.attention.linear import feature_attention

FEATURE_EPS = 1e-4  # eps_f added to every feature, as both references
DENOM_EPS = 1e-6  # the jax reference's numerical_stabilizer for R
_GOLDEN = 0x9E3779B97F4A7C15  # spreads draw indices over the seed space


def orthogonal_features(m: int, d: int, seed: int, index: int) -> Tensor:
    """Draw ``index`` of ``W: [m, d]`` for ``seed``, float64 on the CPU: ceil(m/d) orthogonal blocks (QR of
    Gaussian d x d matrices), rows rescaled to chi(d) lengths."""
    generator = torch.Generator().manual_seed((seed + index * _GOLDEN) % 2**64)
    cpu = {"dtype": torch.float64, "device": "cpu", "generator": generator}  # also under a meta-device build
    blocks = -(-m // d)
    q, _ = torch.linalg.qr(torch.randn(blocks, d, d, **cpu))  # (blocks, d, d), orthonormal columns
    w = q.transpose(-1, -2).reshape(blocks * d, d)[:m]  # (m, d): rows orthonormal within each block
    lengths = torch.randn(m, d, **cpu).norm(dim=1)  # (m,), chi(d)
    return w * lengths[:, None]


def positive_features(x: Tensor, w: Tensor, mask: Tensor | None = None, *, is_query: bool) -> Tensor:
    """FAVOR+ features ``phi(x)`` (B, H, N, m) of x (B, H, N, d) under ``W = w`` (m, d).

    Queries: stabiliser per token (max over r). Keys: one stabiliser per sequence and head over the real
    keys (``mask`` (B, N), True = real); padded keys get zero features.
    """
    d = x.shape[-1]
    x = x * d**-0.25  # x~
    dash = x @ w.to(x.dtype).T  # (B, H, N, m): w_r . x~
    half_sq = x.square().sum(dim=-1, keepdim=True) / 2  # (B, H, N, 1): |x~|^2 / 2
    if is_query:
        stab = dash.amax(dim=-1, keepdim=True)  # (B, H, N, 1)
    else:
        real = dash if mask is None else dash.masked_fill(~mask[:, None, :, None], float("-inf"))
        stab = real.amax(dim=(-2, -1), keepdim=True)  # (B, H, 1, 1)
        stab = torch.where(torch.isfinite(stab), stab, torch.zeros_like(stab))  # a sequence without real keys
    ratio = w.shape[0] ** -0.5
    # m^-1/2 (exp(dash - |x~|^2/2 - M) + eps_f) in three passes over (B, H, N, m): m^-1/2 moves into the exponent
    phi = (dash - (half_sq + stab - math.log(ratio))).exp_() + FEATURE_EPS * ratio
    if not is_query and mask is not None:
        phi = phi * mask[:, None, :, None]
    return phi


def _reset_host_steps(module, incompatible_keys) -> None:
    module.host_steps = None  # re-read the loaded ``steps`` buffer at the next training step


@register("performer", minima={"features": 1, "redraw_every": 0}, causal=True)
class PerformerAttention(QKVAttention):
    """FAVOR+ with ``features`` m positive orthogonal random features, redrawn every ``redraw_every``
    training steps (0 = never); ``causal`` runs the prefix-sum form. Buffers: ``projection`` W (m, d),
    ``seed``, ``steps``. ``dropout`` drops entries of the attention output before W_o (neither reference
    has an attention matrix to drop from)."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        features: int = 256,
        redraw_every: int = 1000,
        causal: bool = False,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if features < 1 or redraw_every < 0:
            raise ValueError(
                f"performer needs features >= 1 and redraw_every >= 0 (0 = never), got features={features}, "
                f"redraw_every={redraw_every}"
            )
        self.features, self.redraw_every, self.causal = features, redraw_every, causal
        seed = int(torch.randint(0, 2**62, (), dtype=torch.long, device="cpu"))  # torch's global CPU RNG
        self.register_buffer("seed", torch.tensor(seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("projection", orthogonal_features(features, self.head_dim, seed, 0).float())
        self.host_steps: int | None = None  # a CPU copy of ``steps``: no device sync per forward
        self.register_load_state_dict_post_hook(_reset_host_steps)

    def draw(self, index: int) -> Tensor:
        """Draw ``index`` of this module's features, ``W: [m, d]`` in float64 on the CPU."""
        return orthogonal_features(self.features, self.head_dim, int(self.seed), index)

    def count_step(self) -> None:
        """One training step: switch to draw ``steps // redraw_every`` when ``steps`` reaches a multiple."""
        if self.host_steps is None:
            self.host_steps = int(self.steps)
        step = self.host_steps
        if self.redraw_every and step and step % self.redraw_every == 0:
            self.projection.copy_(self.draw(step // self.redraw_every))
        self.host_steps = step + 1
        self.steps.add_(1)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        if self.training:
            self.count_step()
        ct = torch.promote_types(q.dtype, torch.float32)  # features and sums in float32 at least
        w = self.projection
        phi_q = positive_features(q.to(ct), w, is_query=True)  # (B, H, N, m)
        phi_k = positive_features(k.to(ct), w, mask, is_query=False)  # (B, H, N, m), zero at padding
        num, den = feature_attention(phi_q, phi_k, v.to(ct), self.causal)  # (B, H, N, d), (B, H, N)
        den = torch.where(den.abs() <= DENOM_EPS, den + 2 * DENOM_EPS, den)  # the jax reference's stabiliser
        out = num / den[..., None]
        if self.dropout > 0 and self.training:
            out = F.dropout(out, self.dropout)
        return out.to(v.dtype)
