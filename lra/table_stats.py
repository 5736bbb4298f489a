"""The statistics of ``lra-table``: a 95% t-interval over seeds and the paired difference to a baseline.

Over n seeds with accuracies x_1..x_n (percent):

    mean = sum(x_i) / n,   s = sqrt(sum((x_i - mean)^2) / (n - 1))
    interval = mean ± t_{0.975, n-1} * s / sqrt(n)       (Student's t, ``scipy.stats.t.ppf``)

e.g. [50, 60, 70]: mean 60, s = 10, t_{0.975,2} = 4.303, half-width 4.303 * 10 / sqrt(3) = 24.84.
One seed has no spread to estimate: no std and no interval (None), never a made-up one.

The paired comparison takes the seeds both rows have, d_i = ours_i - baseline_i, and gives the mean
of d with the same t-interval over the d_i: seed i of both rows shares its data order and
initialisation seed, so the pairing removes the part of the seed-to-seed spread the two rows share.
No shared seed: no comparison (None); one shared seed: the difference without an interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its sample std and two-sided t-interval (None for n = 1)."""

    mean: float
    n: int
    std: float | None
    half: float | None  # half-width of the interval

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean, sample std and the ``level`` t-interval of ``values`` (at least one value)."""
    if not values:
        raise ValueError("t_interval: no values")
    n, mean = len(values), statistics.fmean(values)
    if n == 1:
        return Interval(mean, 1, None, None)
    std = statistics.stdev(values)
    return Interval(mean, n, std, float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n))


def paired_difference(ours: Mapping[int, float], baseline: Mapping[int, float]) -> Interval | None:
    """Mean and t-interval of ours[seed] - baseline[seed] over the seeds both have; None if none shared."""
    shared = sorted(set(ours) & set(baseline))
    return t_interval([ours[s] - baseline[s] for s in shared]) if shared else None
