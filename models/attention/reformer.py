"""Reformer: LSH attention with shared query-keys (Kitaev, Kaiser, Levskaya 2020, arXiv 2001.04451).

References: google/trax ``trax/layers/research/efficient_attention.py`` (``PureLSHSelfAttention``,
``hash_vecs``, ``attend``, ``mask_self_attention``), which this module follows; lucidrains/reformer-pytorch
(``LSHAttention``) and Hugging Face ``LSHSelfAttention`` are PyTorch ports of the same steps. (LRA's own
``lra_benchmarks/models/reformer`` has no self-mask, no padding mask and multiplies the scores by sqrt(d);
it is not followed.)

Shared QK: ``q_proj`` gives one vector per token and head, used as the query; the key is the same vector
length-normalised (trax's ``length_normalized`` then ``/ sqrt(d)``), so the layer has no ``k_proj``:

    k_j = q_j / sqrt(|q_j|^2 + d * 1e-6)           (unit length up to the eps)
    s_ij = q_i . k_j                               (no further 1/sqrt(d): |k_j| = 1 already)

Per hash round r (``hashes`` rounds) and head, angular LSH with a random rotation ``R_r: [d, buckets/2]``:
``h_r(i) = argmax([q_i R_r ; -q_i R_r])`` (``buckets = 1``: every token in bucket 0). Tokens are sorted by
(bucket, position), the sorted sequence is cut into chunks of ``chunk`` tokens and each chunk attends to
itself and the previous chunk (look-one-back; the first chunk looks back at the last one, wrapping as
the references do). Scores get ``-1e5`` where key = query (trax's self-mask: a token attends to itself
only when nothing else is available) and ``-1e9`` at padded keys (trax's ``masked``). Each round gives
``o_r(i) = sum_j softmax_j(s_ij) v_j`` and its log-sum-exp ``l_r(i)``; the rounds combine as

    o(i) = sum_r softmax_r(l_r(i)) o_r(i).

Padding (trax's ``masked`` form): a padded token goes to its own bucket ``buckets``, after every real
bucket, so each round's sorted order starts with the real tokens in an order that does not depend on
the padding. Two choices (ours) keep real positions unchanged by appended padding: (1) each round is
chunked on its own (the references chunk the concatenation of all rounds, so the first chunk of round r
looks back at round r - 1, and chunk borders move with N); the sorted sequence is padded to a multiple
of ``chunk`` (the references require N to be one); (2) the wrap goes to the last chunk that holds a
real token, not to the last chunk. Without padding and with N a multiple of ``chunk`` and one round
this is trax's computation. A query whose window has no real key but itself attends to itself; a fully
padded sequence has every score at -1e9 (a finite, uniform softmax), and its rows are zeroed.

Duplicates: when the real tokens fit in one chunk, that chunk looks back at itself, and the references
see every key of the window twice. That changes no output in exact arithmetic (both copies share the
weight of one) but not in float32: a token alone with itself gets two weights exp(-log 2) computed
next to -1e5, off by 0.4%. Here the second copy is masked like padding: the output is the references'
up to rounding, and every round's l_r drops by the same log 2, so the round weights are unchanged.

Limit: ``chunk >= N`` (one chunk) with any ``buckets`` is softmax attention with shared QK and the
self-mask over the whole sequence (``exact_at_length``); so is ``buckets = 1`` with one chunk.

Rotations: ``R`` of shape (H, hashes, d, buckets/2), standard normal, one per head and round (HF's
layout; trax draws per head and example), shared by the batch. Draw ``i`` comes from a CPU generator
seeded by ``(seed, i)``; ``seed`` is drawn from torch's global RNG when the module is built. Evaluation
uses draw 0 (the buffer ``rotations``); each training forward call uses a fresh draw ``1 + steps`` and
counts ``steps`` (a buffer, so a resumed run continues the sequence); ``last_rotations`` holds the
draw of the latest call, so a test can hand it to an oracle. Attention dropout drops the chunk weights.

Cost per round: O(N * 2 chunk * d) scores and O(N buckets d) hashing (buckets ~ N / 64 makes the hash
the quadratic-looking part, N^2 d / 128 multiply-adds, as in every reference); memory O(N * chunk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import register
from models.attention._common import QKVAttention, merge_heads, split_heads, zero_padding

SELF_PENALTY = 1e5  # trax mask_self_attention: dots - 1e5 where key = query
PAD_PENALTY = 1e9  # trax: dots - 1e9 at masked keys
NORM_EPS = 1e-6  # trax length_normalized epsilon (added to the mean square)
_GOLDEN = 0x9E3779B97F4A7C15  # spreads draw indices over the seed space


def draw_rotations(n_heads: int, hashes: int, d: int, buckets: int, seed: int, index: int) -> Tensor:
    """Draw ``index`` of the rotations (H, hashes, d, max(buckets // 2, 1)), float32 on the CPU."""
    generator = torch.Generator().manual_seed((seed + index * _GOLDEN) % 2**64)
    return torch.randn(n_heads, hashes, d, max(buckets // 2, 1), generator=generator, device="cpu")


def lsh_buckets(q: Tensor, rotations: Tensor, buckets: int) -> Tensor:
    """Bucket ids (B, H, R, N) of q (B, H, N, d): ``argmax([qR; -qR])`` per round (0 with one bucket).

    Always in float32, so a float64 layer hashes as its float32 copy does."""
    b, h, n, _ = q.shape
    if buckets == 1:
        return torch.zeros(b, h, rotations.shape[1], n, dtype=torch.long, device=q.device)
    rotated = torch.einsum("bhnd,hrdk->bhrnk", q.float(), rotations.float())  # (B, H, R, N, buckets/2)
    top, top_at = rotated.max(dim=-1)
    low, low_at = rotated.min(dim=-1)
    # argmax over [x; -x] without building it: the first half wins ties, as argmax takes the first maximum
    return torch.where(top >= -low, top_at, low_at + buckets // 2)


def reset_host_steps(module, incompatible_keys) -> None:
    module.host_steps = module.host_seed = None  # re-read the loaded buffers at the next training step


def reformer_warnings(options, n: int):
    """An odd bucket count above 1 cannot be an angular hash (it is refused when the layer is built)."""
    if options["buckets"] > 1 and options["buckets"] % 2:
        yield f"attention.buckets={options['buckets']} is odd: angular LSH needs 1 or an even number of buckets"


@register(
    "reformer",
    minima={"buckets": 1, "hashes": 1, "chunk": 1},
    exact_at_length="chunk",
    follows_length=("buckets",),
    warnings=reformer_warnings,
)
class ReformerAttention(QKVAttention):
    """LSH attention (trax's ``LSHSelfAttention``) with ``buckets`` buckets, ``hashes`` rounds and chunks
    of ``chunk`` sorted tokens, each attending to itself and the previous chunk. Keys are the normalised
    queries (no ``k_proj``). Buffers: ``seed``, ``steps``, ``rotations`` (the evaluation draw)."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        buckets: int = 64,
        hashes: int = 2,
        chunk: int = 64,
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if buckets < 1 or (buckets > 1 and buckets % 2) or hashes < 1 or chunk < 1:
            raise ValueError(
                f"reformer needs buckets = 1 or even, hashes >= 1 and chunk >= 1, got buckets={buckets}, "
                f"hashes={hashes}, chunk={chunk}; set attention.buckets to an even number"
            )
        self.k_proj = None  # shared QK: the keys are the normalised queries
        self.buckets, self.hashes, self.chunk = buckets, hashes, chunk
        seed = int(torch.randint(0, 2**62, (), dtype=torch.long, device="cpu"))  # torch's global CPU RNG
        self.register_buffer("seed", torch.tensor(seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.host_steps: int | None = None  # CPU copies of ``steps`` and ``seed``: no device sync per forward
        self.host_seed: int | None = seed
        self.register_buffer("rotations", self.draw(0))
        self.last_rotations: Tensor | None = None
        self.register_load_state_dict_post_hook(reset_host_steps)

    def draw(self, index: int) -> Tensor:
        """Draw ``index`` of this module's rotations (H, hashes, d, buckets/2), float32 on the CPU."""
        if self.host_seed is None:
            self.host_seed = int(self.seed)
        return draw_rotations(self.n_heads, self.hashes, self.head_dim, self.buckets, self.host_seed, index)

    def current_rotations(self) -> Tensor:
        """Evaluation: the fixed draw 0. Training: draw ``1 + steps``, then count the step."""
        if not self.training:
            return self.rotations
        if self.host_steps is None:
            self.host_steps = int(self.steps)
        fresh = self.draw(1 + self.host_steps).to(self.rotations.device)
        self.host_steps += 1
        self.steps.add_(1)
        return fresh

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); mask: (B, N) bool, True = real token. Returns (B, N, D), zero at padding."""
        q, v = split_heads(self.q_proj(x), self.n_heads), split_heads(self.v_proj(x), self.n_heads)
        rotations = self.current_rotations()
        self.last_rotations = rotations
        o = lsh_attention(q, v, mask, rotations, self.buckets, self.chunk, self.dropout if self.training else 0.0)
        return zero_padding(self.out_proj(merge_heads(o)), mask)


def lsh_attention(
    q: Tensor, v: Tensor, mask: Tensor | None, rotations: Tensor, buckets: int, chunk: int, dropout: float = 0.0
) -> Tensor:
    """Multi-round LSH attention on split heads. q, v: (B, H, N, d); mask (B, N) True = real;
    rotations (H, R, d, buckets/2). Returns (B, H, N, d)."""
    b, h, n, d = q.shape
    rounds = rotations.shape[1]
    ct = torch.promote_types(q.dtype, torch.float32)  # hashing, scores and softmax in float32 at least
    c = min(chunk, n)  # a chunk longer than the sequence holds all of it either way
    n_chunks = -(-n // c)
    n_pad = n_chunks * c
    real = torch.ones(b, n, dtype=torch.bool, device=q.device) if mask is None else mask
    if n_pad > n:
        q, v = F.pad(q, (0, 0, 0, n_pad - n)), F.pad(v, (0, 0, 0, n_pad - n))
        real = F.pad(real, (0, n_pad - n), value=False)
    q = q.to(ct)

    with torch.no_grad():
        bucket = lsh_buckets(q, rotations, buckets)  # (B, H, R, Np)
        bucket = bucket.masked_fill(~real[:, None, None, :], buckets)  # padding: its own, last bucket
        positions = torch.arange(n_pad, device=q.device)
        order = torch.argsort(bucket * n_pad + positions, dim=-1)  # (B, H, R, Np): sorted -> position
        undo = torch.empty_like(order).scatter_(-1, order, positions.expand_as(order))  # position -> sorted
        length = real.sum(dim=-1)  # (B,) real tokens; they come first in every round's sorted order
        sorted_real = positions < length[:, None]  # (B, Np)
        # the chunk each chunk looks back at: the previous one; the first wraps to the last real chunk
        last_real = ((length + c - 1) // c - 1).clamp(min=0)  # (B,)
        back = (torch.arange(n_chunks, device=q.device) - 1).expand(b, n_chunks).clone()  # (B, C)
        back[:, 0] = last_real

    flat = order.reshape(b, h, rounds * n_pad, 1)
    sq = torch.gather(q, 2, flat.expand(-1, -1, -1, d)).view(b, h, rounds, n_chunks, c, d)
    sv = torch.gather(v, 2, flat.expand(-1, -1, -1, d)).view(b, h, rounds, n_chunks, c, d)
    sk = sq * torch.rsqrt(sq.square().sum(dim=-1, keepdim=True) + d * NORM_EPS)  # trax: rms-norm / sqrt(d)

    def with_previous(t: Tensor) -> Tensor:  # (B, H, R, C, c, e) -> (B, H, R, C, 2c, e): [previous, own]
        idx = back.view(b, 1, 1, n_chunks, 1, 1).expand(-1, h, rounds, -1, c, t.shape[-1])
        return torch.cat([torch.gather(t, 3, idx), t], dim=-2)

    keys, values = with_previous(sk), with_previous(sv.to(ct))  # (B, H, R, C, 2c, d)
    scores = sq @ keys.transpose(-1, -2)  # (B, H, R, C, c, 2c)
    scores[..., c:].diagonal(dim1=-2, dim2=-1).sub_(SELF_PENALTY)  # self-mask: the diagonal of the own chunk
    own_real = sorted_real.view(b, 1, 1, n_chunks, 1, c)
    prev_real = torch.gather(own_real, 3, back.view(b, 1, 1, n_chunks, 1, 1).expand(-1, 1, 1, -1, 1, c))
    # one real chunk: the first chunk looks back at itself; its second copy is masked (see the docstring)
    prev_real[:, :, :, 0] &= (back[:, 0] != 0).view(b, 1, 1, 1, 1)
    key_real = torch.cat([prev_real, own_real], dim=-1)  # (B, 1, 1, C, 1, 2c)
    scores.masked_fill_(~key_real, -PAD_PENALTY)  # in place: the matmul's backward does not need its output
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # (B, H, R, C, c, 1)
    probs = (scores - lse).exp_()
    if dropout > 0:
        probs = F.dropout(probs, dropout)
    so = (probs @ values).view(b, h, rounds, n_pad, d)  # sorted outputs per round
    # unsort: the output of each position in each round, and its log-sum-exp
    back_idx = undo.unsqueeze(-1)  # (B, H, R, Np, 1)
    o = torch.gather(so, 3, back_idx.expand(-1, -1, -1, -1, d))  # (B, H, R, Np, d)
    lse = torch.gather(lse.view(b, h, rounds, n_pad, 1), 3, back_idx)  # (B, H, R, Np, 1)
    weights = torch.softmax(lse, dim=2)  # over the rounds
    out = (weights * o).sum(dim=2)  # (B, H, Np, d)
    return out[:, :, :n].to(v.dtype)
