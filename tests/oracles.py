"""Independent reference computations the tests compare against.

Each oracle is written from the formula (the module docstrings and README state them), looping over
batch items, heads, segments or tokens with explicit indices, and never calls the module's own
attention code: only its parameters (projections, W_kv, theta, ...) are read. Run them in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Exact attention on split heads, written out the plain way. q, k, v: (B, H, N, d); mask (B, N)."""
    d = q.shape[-1]
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / d**0.5
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.einsum("bhij,bhjd->bhid", torch.softmax(scores, dim=-1), v)


def split_qkv(module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v (B, H, N, d) from ``module``'s own q/k/v projections."""
    b, n, dm = x.shape
    h = module.n_heads

    def split(t):
        return t.view(b, n, h, dm // h).transpose(1, 2)

    return split(module.q_proj(x)), split(module.k_proj(x)), split(module.v_proj(x))


def merge_and_project(module, o: Tensor, mask: Tensor | None) -> Tensor:
    """Heads (B, H, N, d) merged, ``module.out_proj``, zero at padding: (B, N, D)."""
    b, h, n, d = o.shape
    y = module.out_proj(o.transpose(1, 2).reshape(b, n, h * d))
    return y if mask is None else y * mask[..., None]


def vanilla_with_projections(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """Exact softmax attention using ``module``'s own q/k/v/out projections. Returns (B, N, D)."""
    return merge_and_project(module, softmax_attention(*split_qkv(module, x), mask), mask)


def _softmax_rows(q_i: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """sum_t softmax_t(q_i . k_t / sqrt(d)) v_t for one query q_i (d,), keys/values (T, d)."""
    scores = torch.stack([q_i @ k_t for k_t in keys]) / math.sqrt(q_i.shape[0])
    return torch.softmax(scores, dim=0) @ values


def srformer_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """SRformer's output, segment by segment and token by token, with ``module``'s weights. (B, N, D).

    Per head: local softmax inside the segment (causal: keys t <= i); K, V zero at padding;
    P_s = sum_{t in s} k_t v_t^T; C_s = sum_{r != s} P_r (causal: sum_{r < s} P_r); ``normalized``
    divides C_s by its RMS over the d x d entries. Neuron: U <- lam U + D_s with
    D_s[a, e] = sum_f C_s[a, f] W_kv[e, f] (nn.Linear applied to each row of C_s); u = U / theta - 1;
    R_s = relu(u) (spike: [u > 0]); U <- U - theta [u > 0]. Recurrent term of query i in segment s:
    ``normalized``: g sum_a q_a R_s[a, e] / (sqrt(d) (rms(R_s) + eps));
    ``paper``: sum_a q_a R_s[a, e] / (||K[:, e]|| + eps), the norm over the real tokens (causal: of
    the earlier segments).
    """
    b, n, _ = x.shape
    eps, m, causal, normalized = 1e-6, module.segment_size, module.causal, module.scaling == "normalized"
    q, k, v = split_qkv(module, x)
    h, d = q.shape[1], q.shape[-1]
    valid = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    w_kv = module.kv_map.weight  # (d, d), rows = output features
    theta = torch.log1p(torch.exp(module.theta_raw)) + 1e-3  # softplus(theta_raw) + 1e-3
    lam = 1 / (1 + torch.exp(-module.lam_raw))  # sigmoid(lam_raw)
    segments = [list(range(s, min(s + m, n))) for s in range(0, n, m)]
    out = torch.zeros_like(q)
    for bi in range(b):
        real = {i for i in range(n) if valid[bi, i]}
        for hi in range(h):
            kk, vv, qq = k[bi, hi], v[bi, hi], q[bi, hi]
            p = [sum((torch.outer(kk[t], vv[t]) for t in seg if t in real), q.new_zeros(d, d)) for seg in segments]
            membrane = q.new_zeros(d, d)
            for s, seg in enumerate(segments):
                others = range(s) if causal else [r for r in range(len(segments)) if r != s]
                c = sum((p[r] for r in others), q.new_zeros(d, d))
                if normalized:
                    c = c / (c.square().mean().sqrt() + eps)
                drive = torch.einsum("af,ef->ae", c, w_kv)
                membrane = lam * membrane + drive
                u = membrane / theta - 1
                r = (u > 0).to(u.dtype) if module.spike else u.clamp_min(0)
                membrane = membrane - theta * (u > 0).to(u.dtype)
                earlier = [t for t in real if t < seg[0]] if causal else real
                k_norm = torch.stack([sum((kk[t, e] ** 2 for t in earlier), q.new_zeros(())) for e in range(d)]).sqrt()
                for i in seg:
                    if i not in real:
                        continue
                    keys = [t for t in seg if t in real and (t <= i or not causal)]
                    local = _softmax_rows(qq[i], kk[keys], vv[keys])
                    rec = torch.einsum("a,ae->e", qq[i], r)
                    if normalized:
                        rec = module.gate * rec / (math.sqrt(d) * (r.square().mean().sqrt() + eps))
                    else:
                        rec = rec / (k_norm + eps)
                    out[bi, hi, i] = local + rec
    return merge_and_project(module, out, mask)


def tssa_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """TSSA's output token by token, with ``module``'s U, tau and output projection. (B, N, D).

    W = x U (bias included) per head, zero at padding. Non-causal: W_hat = W / ||W|| (norm over the
    tokens, per head and channel); Pi[h, i] = softmax_h(tau_h sum_c W_hat[h, i, c]^2), zero at padding;
    s[h, c] = sum_i Pi[h, i] W[h, i, c]^2 / (sum_i Pi[h, i] + 1e-8); Y = -Pi W / (1 + s).
    Causal: every sum over tokens runs over j <= i (the norm squared clamped at 1e-24).
    """
    b, n, dm = x.shape
    h = module.n_heads
    valid = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    w = module.u_proj(x).view(b, n, h, dm // h) * valid[:, :, None, None]  # (B, N, H, d)
    y = torch.zeros_like(w)
    for bi in range(b):
        total = sum(w[bi, t].square() for t in range(n))  # (H, d): ||W||^2 per head and channel
        prefix = torch.zeros_like(total)
        pi = []  # token j's memberships (H,); causal: from the prefix t <= j, as seen at step j
        for j in range(n):
            prefix = prefix + w[bi, j].square()  # (H, d): sum_{t <= j} W[t]^2
            norm_sq = (prefix if module.causal else total).clamp_min(1e-24)
            logits = [module.tau[hh] * (w[bi, j, hh].square() / norm_sq[hh]).sum() for hh in range(h)]
            pi.append(torch.softmax(torch.stack(logits), dim=0) * valid[bi, j])
        for hh in range(h):
            num = [pi[j][hh] * w[bi, j, hh].square() for j in range(n)]  # (d,) per token
            den = [pi[j][hh] for j in range(n)]
            num_sum, den_sum = sum(num), sum(den)
            num_prefix, den_prefix = torch.zeros_like(num[0]), torch.zeros_like(den[0])
            for i in range(n):
                num_prefix, den_prefix = num_prefix + num[i], den_prefix + den[i]  # sums over j <= i
                stat = num_prefix / (den_prefix + 1e-8) if module.causal else num_sum / (den_sum + 1e-8)  # (d,)
                y[bi, i, hh] = -pi[i][hh] * w[bi, i, hh] / (1 + stat)
    out = module.out_proj(y.reshape(b, n, dm))
    return out * valid[..., None]


def clustered_loop(q, k, v, clusters, valid, num_clusters: int, topk: int | None) -> Tensor:
    """Clustered attention (topk=None) or improved clustered attention, per batch item, head, cluster, query.

    q, k, v (B, H, N, d); clusters (B, H, N) the cluster of each query; valid (B, N) True = real.
    Centroid Qc_j = mean of its real queries; Ac_j = softmax over the real keys of Qc_j k / sqrt(d).
    Plain: O_i = Ac_j V. Improved: T_j = the topk keys of Ac_j, m_j = sum_{T_j} Ac_j,
    O_i = m_j softmax_{T_j}(q_i k / sqrt(d)) V_{T_j} + sum_{s not in T_j} Ac_j[s] v_s. Zero at padding.
    """
    out = torch.zeros_like(q)
    scale = q.shape[-1] ** -0.5
    for b in range(q.shape[0]):
        keys = valid[b].nonzero().squeeze(1)
        for h in range(q.shape[1]):
            kk, vv = k[b, h, keys], v[b, h, keys]
            for j in range(num_clusters):
                members = [i for i in range(q.shape[2]) if clusters[b, h, i] == j and valid[b, i]]
                if not members:
                    continue
                ac = torch.softmax(kk @ q[b, h, members].mean(0) * scale, dim=0)  # (real keys,)
                top = ac.topk(min(topk, len(keys))).indices if topk else torch.zeros(0, dtype=torch.long)
                rest = torch.ones(len(keys), dtype=torch.bool)
                rest[top] = False
                for i in members:
                    a = ac[top].sum() * torch.softmax(kk[top] @ q[b, h, i] * scale, dim=0)
                    out[b, h, i] = a @ vv[top] + ac[rest] @ vv[rest]
    return out


def clustered_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """The clustered / improved clustered layer, given the clustering ``module.cluster`` draws. (B, N, D).

    A sequence with at most C real tokens gets exact attention over its real keys instead.
    """
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    valid = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    c = module.num_clusters
    if n > c:  # the module's own random draw, for the whole batch as its forward makes it
        out = clustered_loop(q, k, v, module.cluster(q, valid), valid, c, getattr(module, "topk", None))
    else:
        out = torch.zeros_like(q)
    for bi in range(b):
        if int(valid[bi].sum()) <= c:
            out[bi] = softmax_attention(q[bi : bi + 1], k[bi : bi + 1], v[bi : bi + 1], valid[bi : bi + 1])[0]
    return merge_and_project(module, out, mask)


def slow_rounds(ag: torch.Tensor, kappa: int) -> list[int]:
    """The rounds of single assignment, token by token, for one (N, Nc) affinity matrix."""
    n, nc = ag.shape
    assign, members = [-1] * n, [[] for _ in range(nc)]
    while True:
        open_ = [j for j in range(nc) if len(members[j]) < kappa]
        free = [i for i in range(n) if assign[i] < 0 and ag[i, 0] > float("-inf")]
        if not open_ or not free:
            return assign
        proposals = {j: [] for j in open_}
        for i in free:
            proposals[max(open_, key=lambda j, i=i: ag[i, j])].append(i)
        for j, bidders in proposals.items():
            bidders.sort(key=lambda i, j=j: -ag[i, j])
            for i in bidders[: kappa - len(members[j])]:
                assign[i] = j
                members[j].append(i)


def slow_cast(q, k, v, s, mask, kappa, clustering):
    """CAST steps 1-5 (models/attention/cast.py) for one head, token by token. q, k, v (N, d); s (Nc, d)."""
    n, d = q.shape
    nc = s.shape[0]
    real = [i for i in range(n) if mask[i]]
    aq, ak = q @ s.T / d**0.5, k @ s.T / d**0.5
    if clustering == "topk":
        clusters = [sorted(real, key=lambda i, j=j: -(aq[i, j] + ak[i, j]))[:kappa] for j in range(nc)]
    else:
        ag = (aq + ak).masked_fill(~mask[:, None], float("-inf"))
        assign = slow_rounds(ag, kappa)
        clusters = [[i for i in real if assign[i] == j] for j in range(nc)]
    r_inter = []
    for j, members in enumerate(clusters):
        if not members:  # an empty sum
            r_inter.append(q.new_zeros(d))
            continue
        a = torch.softmax(torch.stack([ak[i, j] for i in members]), 0)
        r_inter.append(sum(a[t] * v[i] for t, i in enumerate(members)))
    out = q.new_zeros(n, d)
    for i in real:
        w = torch.softmax(aq[i], 0)
        for j, members in enumerate(clusters):
            if i in members:
                a = torch.softmax(torch.stack([q[i] @ k[t] / d**0.5 for t in members]), 0)
                out[i] += w[j] * sum(a[u] * v[t] for u, t in enumerate(members))
            else:
                out[i] += w[j] * r_inter[j]
    return out


def cast_reference(module, x: Tensor, mask: Tensor | None) -> Tensor:
    """The CAST layer: :func:`slow_cast` per batch item and head with ``module``'s own weights. (B, N, D)."""
    b, n, _ = x.shape
    q, k, v = split_qkv(module, x)
    valid = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    kappa = min(module.cluster_size, n)
    out = torch.zeros_like(q)
    for bi in range(b):
        for hi in range(q.shape[1]):
            s = module.surrogates[hi]
            out[bi, hi] = slow_cast(q[bi, hi], k[bi, hi], v[bi, hi], s, valid[bi], kappa, module.clustering)
    return merge_and_project(module, out, mask)
