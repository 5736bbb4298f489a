"""Small-size options per mechanism for the shared attention suite (B=2, N=64, D=32, H=4).

Each registered mechanism must have an entry; the suite fails if one is missing, so a new
mechanism cannot skip the shared rules.
"""

CASES: dict[str, dict] = {
    "vanilla": {},
    "vanilla[naive]": {"impl": "naive"},
    "clustered": {"num_clusters": 8, "bits": 16, "iterations": 3},
    "improved_clustered": {"num_clusters": 8, "bits": 16, "iterations": 3, "topk": 8},
    "improved_clustered[fallback]": {"num_clusters": 48, "bits": 16, "iterations": 3, "topk": 8},
}


def name_of(case: str) -> str:
    return case.split("[")[0]
