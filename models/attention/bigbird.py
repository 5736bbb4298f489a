"""BigBird: block-sparse attention with window, global and random blocks (Zaheer et al. 2020).

Paper: Zaheer et al., "Big Bird: Transformers for Longer Sequences", NeurIPS 2020 (arXiv 2007.14062).
References: ``google-research/bigbird`` (``bigbird/core/attention.py``: ``bigbird_block_sparse_attention``,
``bigbird_block_rand_mask`` and the dense-mask ``bigbird_simulated_attention``), Hugging Face
``BigBirdBlockSparseAttention``, and LRA's ``lra_benchmarks/models/bigbird`` (Flax).

The sequence is cut into ``nb = ceil(N / m)`` blocks of ``m = block_size`` tokens (the tail block is
padded and masked). With ``g = global_blocks``, ``w = window_blocks`` (odd, ``h = (w - 1) / 2`` on each
side) and ``r = random_blocks``, query block i attends, in ONE softmax, to the key set

    S(i) = all blocks                                        if i < g   (global queries)
    S(i) = {0..g-1} u {i-h..i+h} u R(i)                      otherwise
    O_i  = softmax(Q_i K_S(i)^T / sqrt(d) + key_padding_bias) V_S(i)

so the global blocks attend to every key and are attended by every query (with ``pool=cls`` the CLS
token, position 0, is global). ``R(i)``: r distinct blocks drawn, per head, from the blocks that are
neither global nor in the window of i, as ``bigbird_block_rand_mask`` does (it draws a permutation of
the allowed blocks and keeps r). A window block that is global or outside the sequence is an empty
slot, so no key is counted twice. Differences from the reference, named: its two global blocks are the
first and the last (ITC); here they are the ``g`` first, as LRA's table describes the model and as the
CLS token needs. The draw is a hash ``u(seed, draw, head, i, j)`` of integers (a 32-bit mixing
function), and ``R(i)`` is the r allowed blocks of largest ``u``: a uniform random r-subset, like the
reference's permutation, computed on the device without a generator. ``draw`` is 0 in evaluation (fixed
per module and ``seed``; ``seed`` comes from torch's global RNG when the module is built and is a
buffer) and ``steps + 1`` in training (redrawn at every call; ``steps`` is a buffer, so a resumed run
draws the same).

Short sequences: Hugging Face switches to full attention when N <= (5 + 2r) m, and the Google code
refuses lengths its plan cannot fill. Here the blocks cover the sequence when ``nb <= w + g + r`` (then
every block could be in every key set), and attention is exact softmax attention, per sequence.

Padding (the references have only an attention mask per token and a fixed tensor length): every
decision is made from a sequence's extent (the last real position + 1), never from the padded tensor
length. Random blocks are drawn among the blocks that hold real tokens, and a sequence whose real
blocks are covered (``ceil(extent / m) <= w + g + r``) gets exact attention on its first
``(w + g + r) m`` positions, so padding never changes real positions. Padded keys get zero weight; a
fully padded key set (only padded query rows have one) attends to everything instead of giving NaN,
and padded query rows are zeroed after the output projection.

Cost: the gathered keys and values are ``(B, H, nb - g, g + w + r, m, d)``, the scores
``(B, H, nb - g, m, (g + w + r) m)``, and the global queries ``g m x N``: time and memory linear in N
for fixed sizes. The random draw scores ``(B, H, nb - g, nb)`` integers, quadratic in ``N / m`` but
``m^2`` times smaller than vanilla's score matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention, key_mask_for_sdpa

_M32 = 0xFFFFFFFF


def mix32(x):
    """A 32-bit integer mixing function (two xor-shift-multiply rounds) on Python ints or int64 tensors."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def draw_scores(seed: int, draw: int, n_heads: int, n_blocks: int, global_blocks: int, device=None) -> Tensor:
    """``u(seed, draw, head, i, j)`` for query blocks i >= g and key blocks j: (H, nb - g, nb) int64,
    distinct along j (the block index fills the low bits), independent of anything but its arguments."""
    base = mix32((seed & _M32) ^ mix32(draw & _M32))
    kw = {"dtype": torch.long, "device": device}
    h = torch.arange(n_heads, **kw)[:, None, None]
    i = torch.arange(global_blocks, n_blocks, **kw)[None, :, None]
    j = torch.arange(n_blocks, **kw)[None, None, :]
    return (mix32(mix32(mix32(base ^ h) ^ i) ^ j) << 20) + j


def length_warnings(options, n: int):
    """Blocks that cover the sequence make bigbird exact attention (block_size >= n is validate's warning)."""
    m, cover = options["block_size"], options["window_blocks"] + options["global_blocks"] + options["random_blocks"]
    if m < n <= cover * m:
        yield (
            f"attention.block_size={m}: {cover} blocks (window + global + random) cover the {n} tokens, so "
            f"bigbird computes exact attention at this length; set attention.block_size <= {max(1, (n - 1) // cover)}"
        )


def _reset_host_copies(module, incompatible_keys) -> None:
    module.host_seed, module.host_steps = None, None
    module.cache.clear()


@register(
    "bigbird",
    minima={"block_size": 1, "window_blocks": 1, "global_blocks": 0, "random_blocks": 0},
    exact_at_length="block_size",
    follows_length=("block_size",),
    warnings=length_warnings,
)
class BigBirdAttention(QKVAttention):
    """Block-sparse softmax attention: each query block sees ``window_blocks`` neighbours, the
    ``global_blocks`` first blocks and ``random_blocks`` random blocks of ``block_size`` tokens. Buffers:
    ``seed``, ``steps``. ``dropout`` applies to the attention probabilities."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        block_size: int = 64,
        window_blocks: int = 3,
        global_blocks: int = 2,
        random_blocks: int = 3,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if block_size < 1 or window_blocks < 1 or window_blocks % 2 == 0 or global_blocks < 0 or random_blocks < 0:
            raise ValueError(
                "bigbird needs block_size >= 1, an odd window_blocks >= 1 (the block and as many on each side), "
                f"global_blocks >= 0 and random_blocks >= 0; got block_size={block_size}, "
                f"window_blocks={window_blocks}, global_blocks={global_blocks}, random_blocks={random_blocks}"
            )
        self.block_size, self.window_blocks = block_size, window_blocks
        self.global_blocks, self.random_blocks = global_blocks, random_blocks
        seed = int(torch.randint(0, 2**31, (), dtype=torch.long, device="cpu"))  # torch's global CPU RNG
        self.register_buffer("seed", torch.tensor(seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.host_seed: int | None = seed  # CPU copies: no device sync per forward
        self.host_steps: int | None = 0
        self.cache: dict = {}  # (n_blocks, device) -> structural slots; eval draw scores
        self.register_load_state_dict_post_hook(_reset_host_copies)

    @property
    def cover(self) -> int:
        """Blocks in one key set: at or below this many blocks a sequence gets exact attention."""
        return self.window_blocks + self.global_blocks + self.random_blocks

    def next_draw(self) -> int:
        """The draw of this call: 0 in evaluation, ``steps + 1`` in training (counting the call)."""
        if not self.training:
            return 0
        if self.host_steps is None:
            self.host_steps = int(self.steps)
        self.host_steps += 1
        self.steps.add_(1)
        return self.host_steps

    def structure(self, n_blocks: int, device) -> tuple[Tensor, Tensor, Tensor]:
        """Global and window slots of query blocks g..nb-1: indices (nq, g + w), validity (nq, g + w), and
        the blocks a random draw may take (nq, nb) bool (neither global nor in the window)."""
        key = ("structure", n_blocks, device)
        if key not in self.cache:
            g, half = self.global_blocks, self.window_blocks // 2
            i = torch.arange(g, n_blocks, device=device)[:, None]  # (nq, 1)
            window = i + torch.arange(-half, half + 1, device=device)  # (nq, w)
            glob = torch.arange(g, device=device).expand(len(i), g)  # (nq, g)
            ok = torch.cat([torch.ones_like(glob, dtype=torch.bool), (window >= g) & (window < n_blocks)], 1)
            idx = torch.cat([glob, window.clamp(0, n_blocks - 1)], 1)
            j = torch.arange(n_blocks, device=device)
            allowed = (j >= g) & ((j - i).abs() > half)  # (nq, nb)
            self.cache[key] = (idx, ok, allowed)
        return self.cache[key]

    def random_blocks_for(self, real_blocks: Tensor, n_blocks: int, draw: int) -> tuple[Tensor, Tensor]:
        """The random key blocks of query blocks g..nb-1 for each sequence: (B, H, nq, r) indices and
        validity. ``real_blocks`` (B,): blocks holding real tokens; only those are drawn."""
        device = real_blocks.device
        key = ("scores", n_blocks, device)
        if draw == 0 and key in self.cache:
            scores = self.cache[key]  # evaluation's fixed draw
        else:
            if self.host_seed is None:
                self.host_seed = int(self.seed)
            scores = draw_scores(self.host_seed, draw, self.n_heads, n_blocks, self.global_blocks, device)
            if draw == 0:
                self.cache[key] = scores
        _, _, allowed = self.structure(n_blocks, device)
        j = torch.arange(n_blocks, device=device)
        allowed = allowed & (j < real_blocks[:, None, None])  # (B, nq, nb)
        s = torch.where(allowed[:, None], scores, -1)  # (B, H, nq, nb)
        top, idx = s.topk(self.random_blocks, dim=-1)  # (B, H, nq, r)
        return idx, top >= 0

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, h, n, d = q.shape
        m, g, p = self.block_size, self.global_blocks, self.dropout if self.training else 0.0
        short = self.cover * m  # a sequence within this many tokens gets exact attention
        draw = self.next_draw()
        if n <= short:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask_for_sdpa(mask), dropout_p=p)
        nb = -(-n // m)
        nq, pad = nb - g, nb * m - n
        valid = torch.ones(b, n, dtype=torch.bool, device=q.device) if mask is None else mask
        extent = (valid * torch.arange(1, n + 1, device=q.device)).amax(-1)  # (B,) last real position + 1
        real_blocks = -(-extent // m)  # (B,)
        idx, ok, _ = self.structure(nb, q.device)  # (nq, g + w)
        rand_idx, rand_ok = self.random_blocks_for(real_blocks, nb, draw)  # (B, H, nq, r)
        idx = torch.cat([idx.expand(b, h, nq, -1), rand_idx], -1)  # (B, H, nq, kb)
        ok = torch.cat([ok.expand(b, h, nq, -1), rand_ok], -1)
        kb = idx.shape[-1]
        bi = torch.arange(b, device=q.device)[:, None, None, None]
        hi = torch.arange(h, device=q.device)[None, :, None, None]
        k_blocks = F.pad(k, (0, 0, 0, pad)).view(b, h, nb, m, d)
        v_blocks = F.pad(v, (0, 0, 0, pad)).view(b, h, nb, m, d)
        k_sel = k_blocks[bi, hi, idx].view(b, h * nq, kb * m, d)  # gathered key blocks
        v_sel = v_blocks[bi, hi, idx].view(b, h * nq, kb * m, d)
        tokens = F.pad(valid, (0, pad), value=False).view(b, nb, m)
        key_ok = (tokens[bi, idx] & ok[..., None]).view(b, h, nq, kb * m)  # (B, H, nq, kb*m)
        key_ok = key_ok | ~key_ok.any(-1, keepdim=True)  # an empty key set (padded queries only): no NaN
        q_sel = F.pad(q, (0, 0, 0, pad))[:, :, g * m :].reshape(b, h * nq, m, d)
        out = F.scaled_dot_product_attention(
            q_sel, k_sel, v_sel, attn_mask=key_ok.view(b, h * nq, 1, kb * m), dropout_p=p
        ).view(b, h, nq * m, d)  # (B, H, (nb - g) m, d)
        if g:
            glob = F.scaled_dot_product_attention(
                q[:, :, : g * m], k, v, attn_mask=key_mask_for_sdpa(mask), dropout_p=p
            )
            out = torch.cat([glob, out], 2)
        out = out[:, :, :n]  # (B, H, N, d)
        if mask is None:
            return out
        # sequences whose real blocks are covered: exact attention on their first `short` positions
        exact = F.scaled_dot_product_attention(
            q[:, :, :short], k[:, :, :short], v[:, :, :short], attn_mask=key_mask_for_sdpa(mask[:, :short]), dropout_p=p
        )
        head = torch.where((real_blocks <= self.cover)[:, None, None, None], exact, out[:, :, :short])
        return torch.cat([head, out[:, :, short:]], 2)
