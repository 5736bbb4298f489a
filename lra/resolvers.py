"""OmegaConf resolvers the configs use to size attention mechanisms from the task's length.

``configs/attention/*.yaml`` derive their block sizes from ``${task.max_len}`` (N), so one
attention file suits 128 tokens (mini LRA) as well as 2K, 4K or 16K, and a sweep
``attention=vanilla,cast`` gets each mechanism sized for the task it runs on. An explicit
override (``attention.num_clusters=8``) replaces the rule. The rules, in the attention files:

- cast: ``cluster_size = sqrt_pow2(N)``, ``num_clusters = ceil_div(N, cluster_size)``, so
  ``Nc * kappa ~ N`` split as evenly as powers of two allow (32 x 64 at 2K);
- clustered / improved_clustered: ``num_clusters = min(100, N // 8)`` (the reference's 100 at
  every LRA length; shorter sequences keep about 8 queries per cluster);
- srformer: ``segment_size = min(64, N // 8)`` (the default 64 at every LRA length, at least 8
  segments on shorter ones);
- local / sparse / longformer: ``window = min_int(256, floor_div(N, 4))``, ``stride = min_int(128,
  floor_div(N, 4))``, ``window = min_int(256, floor_div(N, 2))``: LRA's sizes at every LRA length, several
  blocks (not one block, which is exact attention) on a 128-token mini task;
- bigbird: ``block_size = min_int(64, floor_div(sum_int(N, 1), 16))`` (LRA's 64 at every LRA length,
  16 blocks on a 128-token mini task, more than the 8 that make it exact);
- reformer: ``buckets = sum_int(floor_div(N, 128), floor_div(N, 128))`` = 2 max(1, N // 128) (about N / 64,
  even, as the paper's chunk of 64);
- sinkhorn: ``block_size = min_int(64, floor_div(N, 4))`` and ``max_len = sum_int(N, 1)`` (its sorting
  network has one output per block of the longest sequence, CLS token included);
- linformer / synthesizer: ``max_len = sum_int(N, 1)``, the length their learned tables cover (N + 1:
  the CLS token that ``pool=cls`` prepends).

Importing this module registers the resolvers (``lra.train`` and ``lra.bench_plan`` import it).
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import OmegaConf


def sqrt_pow2(n: int) -> int:
    """The smallest power of two whose square is at least ``n`` (64 for 2000 or 4096, 16 for 128)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"sqrt_pow2 needs a positive length, got {n}")
    return 1 << ((n - 1).bit_length() + 1) // 2


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)``; a divisor below 1 counts as 1, so an impossible size given by the user
    (``attention.cluster_size=0``) reaches the config check, which names it, instead of failing here."""
    a, b = int(a), max(1, int(b))
    return -(-a // b)


def floor_div(a: int, b: int) -> int:
    """``a // b``, at least 1 (a size of 0 is never meant)."""
    return max(1, int(a) // int(b))


def sum_int(*values: int) -> int:
    """The sum of the arguments, as an int."""
    return sum(int(v) for v in values)


def min_int(*values: int) -> int:
    """The smallest of the arguments, as an int."""
    return min(int(v) for v in values)


RESOLVERS: dict[str, Callable[..., int]] = {
    "sqrt_pow2": sqrt_pow2,
    "ceil_div": ceil_div,
    "floor_div": floor_div,
    "min_int": min_int,
    "sum_int": sum_int,
}


def register() -> None:
    """Register every resolver with OmegaConf (idempotent)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
