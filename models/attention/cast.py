"""CAST: Clustering self-Attention using Surrogate Tokens (van Engelenhoven et al., PRL 2024, arXiv 2402.04239).

Learnable surrogate tokens ``S`` (one set of Nc per head) cluster the sequence: every cluster holds
kappa tokens, which attend to each other exactly; every token also sees the other clusters through
one summary vector each, and mixes them with softmax weights over its affinities to the surrogates.
Cost O(N*Nc*d + Nc*kappa^2*d), memory O(N*Nc + Nc*kappa^2): linear in N for fixed Nc and kappa.

``CASTAttention.attend`` runs five numbered steps (1 affinities, 2 assignment, 3 intra-cluster
attention, 4 cluster summaries, 5 combination), each with its formula. Shapes: q, k, v (B, H, N, d);
mask (B, N), True = real token. Non-causal only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import register
from models.attention._common import QKVAttention

CLUSTERINGS = ("topk", "sa_topk")


def topk_clusters(ag: Tensor, kappa: int) -> tuple[Tensor, Tensor]:
    """Step 2, ``topk``: cluster j takes the kappa tokens with the largest ``ag[:, j]``.

    ag: (..., N, Nc) cluster affinities, -inf at padded tokens. Returns the member indices
    (..., Nc, kappa) and whether each member is a real token (..., Nc, kappa); a cluster picks
    padded tokens (last, since they score -inf) only when fewer than kappa real ones exist.
    """
    scores, idx = ag.transpose(-1, -2).topk(kappa, dim=-1)  # (..., Nc, kappa)
    return idx, scores > float("-inf")


def sa_topk_assign(ag: Tensor, kappa: int) -> Tensor:
    """Step 2, ``sa_topk`` (single assignment): each real token joins at most one cluster of <= kappa.

    ag: (..., N, Nc), -inf at padded tokens. Returns the cluster of every token (..., N), -1 for
    padded tokens and for tokens left over when kappa * Nc < N.

    Vectorised greedy filling in rounds: every free token proposes to its best cluster that still
    has room, and every cluster accepts its best proposals up to its remaining capacity. A token a
    cluster rejects finds that cluster full and moves on, so each round either places every free
    token or fills at least one cluster: at most Nc + 1 rounds. With kappa * Nc >= N every real token
    ends up assigned exactly once.
    """
    *lead, n, nc = ag.shape
    ag = ag.detach()
    real = ag[..., 0] > float("-inf")  # (..., N)
    assign = torch.full((*lead, n), -1, dtype=torch.long, device=ag.device)  # (..., N)
    count = torch.zeros((*lead, nc), dtype=torch.long, device=ag.device)  # (..., Nc)
    clusters = torch.arange(nc, device=ag.device)
    sink = torch.full((*lead, 1), -1, dtype=torch.long, device=ag.device)  # write slot for rejections
    for _ in range(nc + 1):
        free = real & (assign < 0)  # (..., N)
        is_open = count < kappa  # (..., Nc)
        if not (free.any(-1) & is_open.any(-1)).any():
            break
        # every free token proposes to its best open cluster
        choice = ag.masked_fill(~is_open[..., None, :], float("-inf")).argmax(-1)  # (..., N)
        proposes = free[..., None, :] & (choice[..., None, :] == clusters[:, None])  # (..., Nc, N)
        bids = ag.transpose(-1, -2).masked_fill(~proposes, float("-inf"))  # (..., Nc, N)
        # every cluster accepts its best proposals up to its remaining capacity
        best, who = bids.topk(min(kappa, n), dim=-1)  # (..., Nc, kappa)
        rank = torch.arange(best.shape[-1], device=ag.device)
        accept = (best > float("-inf")) & (rank < (kappa - count)[..., None])  # (..., Nc, kappa)
        target = torch.where(accept, who, n).flatten(-2)  # (..., Nc*kappa), n = the sink slot
        value = clusters[:, None].expand(best.shape[-2:]).expand_as(best).flatten(-2)  # (..., Nc*kappa)
        assign = torch.cat([assign, sink], -1).scatter(-1, target, value)[..., :n]
        count = count + accept.sum(-1)
    return assign


def members_of(assign: Tensor, ag: Tensor, kappa: int) -> tuple[Tensor, Tensor]:
    """Turn cluster labels (..., N) into member indices (..., Nc, kappa) and a validity mask.

    Members are listed by descending affinity; empty slots (a cluster with fewer than kappa
    members) point at some token and are marked invalid.
    """
    nc = ag.shape[-1]
    member = assign[..., None, :] == torch.arange(nc, device=ag.device)[:, None]  # (..., Nc, N)
    scores = ag.detach().transpose(-1, -2).masked_fill(~member, float("-inf"))  # (..., Nc, N)
    idx = scores.topk(kappa, dim=-1).indices  # (..., Nc, kappa)
    return idx, member.gather(-1, idx)


def sa_topk_clusters(ag: Tensor, kappa: int) -> tuple[Tensor, Tensor]:
    """Step 2, ``sa_topk``: as ``topk_clusters`` but every real token is in at most one cluster."""
    return members_of(sa_topk_assign(ag, kappa), ag, kappa)


def _at_least_f32(x: Tensor) -> Tensor:
    """Upcast half/bfloat16 to float32 (softmax statistics stay float32 under autocast); keep float64."""
    return x.float() if x.element_size() < 4 else x


def _masked_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """Float32 softmax over the last axis restricted to ``valid``; an all-invalid row gives zeros.

    Such rows softmax over everything and are then zeroed, so neither values nor gradients are NaN.
    """
    allowed = valid | ~valid.any(-1, keepdim=True)
    return torch.softmax(_at_least_f32(logits).masked_fill(~allowed, float("-inf")), dim=-1) * valid


def _token_rows(x: Tensor) -> Tensor:
    """(B, H, N, d) -> (B*N*H, d), one row per (batch, token, head); a view for split_heads output."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b * n * h, d)


def cast_warnings(options, n: int):
    """Nc * kappa below N leaves tokens in no cluster (legal, but CAST sizes Nc * kappa to about N)."""
    covered = options["num_clusters"] * options["cluster_size"]
    if covered < n:
        yield (
            f"attention.num_clusters * attention.cluster_size = {covered} < sequence length {n}: at least "
            f"{n - covered} tokens per sequence are in no cluster and see only cluster summaries "
            "(CAST sizes Nc * kappa to about N)"
        )


@register(
    "cast",
    minima={"num_clusters": 1, "cluster_size": 1},
    exact_at_length="cluster_size",
    follows_length=("num_clusters", "cluster_size"),
    warnings=cast_warnings,
)
class CASTAttention(QKVAttention):
    """Clustered attention around learnable surrogate tokens S (H, Nc, d).

    ``num_clusters`` Nc, ``cluster_size`` kappa (clamped to the sequence length at forward time, so
    short sequences work: with kappa >= N every cluster holds the whole sequence), ``clustering``
    ``topk`` (a token may sit in several clusters or none) or ``sa_topk`` (at most one cluster).
    Dropout applies to the intra-cluster attention probabilities.
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        num_clusters: int = 32,
        cluster_size: int = 64,
        clustering: str = "topk",
    ):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)
        if clustering not in CLUSTERINGS:
            raise ValueError(f"cast clustering must be one of {CLUSTERINGS}, got '{clustering}'")
        if num_clusters < 1 or cluster_size < 1:
            raise ValueError(
                f"cast num_clusters and cluster_size must be positive integers, got "
                f"num_clusters={num_clusters}, cluster_size={cluster_size}"
            )
        self.num_clusters, self.cluster_size, self.clustering = num_clusters, cluster_size, clustering
        # surrogate tokens, initialised like an embedding
        self.surrogates = nn.Parameter(torch.randn(n_heads, num_clusters, self.head_dim) * 0.02)  # (H, Nc, d)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, h, n, d = q.shape
        kappa = min(self.cluster_size, n)
        scale = d**-0.5
        s = self.surrogates.to(q.dtype)
        # 1. affinities to the surrogates, Aq = Q S^T / sqrt(d), Ak = K S^T / sqrt(d)
        aq = _at_least_f32(torch.einsum("bhnd,hcd->bhnc", q, s)) * scale  # (B, H, N, Nc)
        ak = _at_least_f32(torch.einsum("bhnd,hcd->bhnc", k, s)) * scale  # (B, H, N, Nc)
        ag = (aq + ak).detach()  # selection only: indices carry no gradient
        if mask is not None:
            ag = ag.masked_fill(~mask[:, None, :, None], float("-inf"))
        # 2. assignment: member indices I_j and which members are real tokens
        cluster = topk_clusters if self.clustering == "topk" else sa_topk_clusters
        idx, valid = cluster(ag, kappa)  # (B, H, Nc, kappa) each
        nc = idx.shape[2]

        # rows of the (B, N, H, d) layout that QKVAttention's projections produce: gathering rows
        # there needs no transposed copy of q, k, v, and the output scatter lands in merged-head order
        rows = (torch.arange(b, device=q.device).view(b, 1, 1, 1) * n + idx) * h
        rows = (rows + torch.arange(h, device=q.device).view(1, h, 1, 1)).flatten()  # (B*H*Nc*kappa,)

        # 3. intra-cluster attention, one SDPA over B*H*Nc groups of kappa tokens
        qm, km, vm = (_token_rows(t).index_select(0, rows).view(b, h * nc, kappa, d) for t in (q, k, v))
        key_mask = valid | ~valid.any(-1, keepdim=True)  # an empty group attends to all (zeroed below)
        p = self.dropout if self.training else 0.0
        r_intra = F.scaled_dot_product_attention(
            qm, km, vm, attn_mask=key_mask.view(b, h * nc, 1, kappa), dropout_p=p
        ).view(b, h, nc, kappa, d)  # (B, H, Nc, kappa, d)

        # 4. summaries R_inter_j = sum_{i in I_j} softmax_i(Ak[i, j]) V_i
        ak_m = ak.transpose(-1, -2).gather(-1, idx)  # (B, H, Nc, kappa)
        w_sum = _masked_softmax(ak_m, valid).to(v.dtype)  # (B, H, Nc, kappa)
        r_inter = torch.einsum("bhck,bhckd->bhcd", w_sum, vm.view(b, h, nc, kappa, d))  # (B, H, Nc, d)

        # 5. combination O_i = sum_j W_ij (R_intra_j[i] if i in I_j else R_inter_j), W = softmax_j(Aq)
        w = torch.softmax(aq, dim=-1).to(v.dtype)  # (B, H, N, Nc)
        out = torch.einsum("bhnc,bhcd->bnhd", w, r_inter).reshape(b * n * h, d)  # (B*N*H, d)
        w_m = w.transpose(-1, -2).gather(-1, idx) * valid  # (B, H, Nc, kappa)
        delta = w_m[..., None] * (r_intra - r_inter[:, :, :, None, :])  # (B, H, Nc, kappa, d)
        out = out.index_add_(0, rows, delta.reshape(-1, d))  # in place: out is a fresh tensor
        return out.view(b, n, h, d).transpose(1, 2)  # (B, H, N, d); 6. merge and W_o in QKVAttention.forward
