"""Small-size options per mechanism for the shared attention suite (B=2, N=64, D=32, H=4).

Each registered mechanism must have an entry; the suite fails if one is missing, so a new
mechanism cannot skip the shared rules.
"""

CASES: dict[str, dict] = {
    "vanilla": {},
    "vanilla[naive]": {"impl": "naive"},
    "tssa": {},
    "tssa[causal]": {"causal": True},
    "srformer": {"segment_size": 16},
    "srformer[paper]": {"segment_size": 16, "scaling": "paper"},
    "srformer[spike]": {"segment_size": 16, "spike": True},
    "srformer[causal]": {"segment_size": 16, "causal": True},
    "cast": {"num_clusters": 4, "cluster_size": 16},
    "cast[sa_topk]": {"num_clusters": 4, "cluster_size": 16, "clustering": "sa_topk"},
    "clustered": {"num_clusters": 8, "bits": 16, "iterations": 3},
    "improved_clustered": {"num_clusters": 8, "bits": 16, "iterations": 3, "topk": 8},
    "linear": {},
    "linear[causal]": {"causal": True},
    "performer": {"features": 32},
    "performer[causal]": {"features": 32, "causal": True},
    "improved_clustered[fallback]": {"num_clusters": 48, "bits": 16, "iterations": 3, "topk": 8},
    "linformer": {"max_len": 80, "k": 16},
    "linformer[share_kv]": {"max_len": 64, "k": 16, "share_kv": True},
    "nystromformer": {"landmarks": 8},
    "nystromformer[uneven]": {"landmarks": 10, "conv_kernel": 5},
    "synthesizer": {"max_len": 80},
    "synthesizer[random]": {"max_len": 80, "kind": "random"},
    "local": {"window": 16},
    "local[neighbours]": {"window": 12, "neighbours": 1},
    "sparse": {"stride": 16, "summary": 4},
    "longformer": {"window": 16},
    "longformer[global]": {"window": 10, "global_tokens": 3},
    "bigbird": {"block_size": 4},
    "bigbird[window5]": {"block_size": 4, "window_blocks": 5, "global_blocks": 1, "random_blocks": 2},
    "bigbird[mixed]": {"block_size": 6},  # row 0's 44 real tokens are covered (exact), row 1 is sparse
    "reformer": {"buckets": 4, "hashes": 2, "chunk": 16},
    "reformer[one_round]": {"buckets": 8, "hashes": 1, "chunk": 8},
    "sinkhorn": {"block_size": 16, "max_len": 80},
    "sinkhorn[uneven]": {"block_size": 12, "max_len": 80},
    "sinkhorn[lra_two_softmax]": {"block_size": 16, "max_len": 80, "lra_two_softmax": True},
}


def name_of(case: str) -> str:
    return case.split("[")[0]
