"""The plots of ``lra-bench``: log-log against N, one line per row, failed points left out.

- speed.png / memory.png (``plot``): one panel per phase. On a timing panel a mechanism's efficiency
  length (lra.bench_numbers.efficiency_length: the shortest N from which it beats vanilla SDPA at
  every longer N) is a star on its line and named in its legend entry, ``cast (beats SDPA from 4K)``.
  Faint O(N) and O(N^2) guide lines start at the lowest point of the shortest length, so a row's
  scaling reads off against them; vanilla is black, vanilla_naive black dashed, the floor grey dotted.
- share.png (``plot_share``): each mechanism's share of its training step above the no-mixing floor,
  (t - t_floor) / t, against N (log x, linear y from 0 to 1): how much of the step its attention is.
"""

from __future__ import annotations

from pathlib import Path

from lra.bench_numbers import (
    PHASE_NAMES,
    efficiency_length,
    index,
    label,
    ok_value,
    phase_of,
    row_order,
    share_above_floor,
)
from lra.measure import BASELINE, FLOOR, NAIVE

STYLE = {BASELINE: dict(color="black"), NAIVE: dict(color="black", ls="--"), FLOOR: dict(color="grey", ls=":")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[dict], path: Path, panels: list[tuple[str, str]], title: str) -> dict[str, list[str]]:
    """Log-log against N, one line per row (failed points omitted); one panel per (key, y label).
    On a ``<phase>_median_ms`` panel each mechanism's efficiency length is starred and in its label.
    Returns each panel's line labels by key."""
    plt = _pyplot()
    idx, names = index(rows), row_order(rows)
    lengths = sorted({int(r["length"]) for r in rows})

    def guide(ax, starts: list[float]) -> None:
        """Faint O(N) and O(N^2) lines from the lowest point at the shortest length."""
        if not starts or len(lengths) < 2:
            return
        y0, n0 = min(starts), lengths[0]
        for power, ls in ((1, "-"), (2, "-.")):
            ys = [y0 * (n / n0) ** power for n in lengths]
            ax.plot(lengths, ys, color="silver", lw=0.8, ls=ls, zorder=0, label=f"O(N{'²' * (power == 2)}) guide")

    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 4.5 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    drawn: dict[str, list[str]] = {}
    for ax, (key, ylabel) in zip(axes.flat, panels):
        phase = phase_of(key) if key.endswith("_median_ms") else None
        drawn[key] = []
        for name in names:
            pts = [(n, v) for n in lengths if (v := ok_value(idx, name, n, key)) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            eff = efficiency_length(idx, name, lengths, phase) if phase and name not in (BASELINE, FLOOR) else None
            text = f"{name} (beats SDPA from {label(eff)})" if eff is not None else name
            (line,) = ax.plot(xs, ys, marker="o", label=text, **STYLE.get(name, {}))
            drawn[key].append(text)
            if eff is not None and eff in xs:
                ax.plot([eff], [ys[xs.index(eff)]], marker="*", ms=14, color=line.get_color(), zorder=3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ylim = ax.get_ylim()
        guide(ax, [v for name in names for n in lengths[:1] if (v := ok_value(idx, name, n, key)) is not None])
        ax.set_ylim(ylim)  # the guides do not stretch the axis
        ax.set_xticks(lengths, [label(n) for n in lengths])
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title + ("; ★ = efficiency length" if any(k.endswith("_median_ms") for k, _ in panels) else ""),
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def plot_share(rows: list[dict], path: Path, title: str, key: str = "train_step_median_ms") -> list[str]:
    """share.png: (t - t_floor) / t against N, one line per mechanism with a number; returns their labels."""
    plt = _pyplot()
    idx = index(rows)
    lengths = sorted({int(r["length"]) for r in rows})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = []
    for name in (m for m in row_order(rows) if m != FLOOR):
        pts = [(n, s) for n in lengths if (s := share_above_floor(idx, name, n, key)) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=name, **STYLE.get(name, {}))
            drawn.append(name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [label(n) for n in lengths])
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
    ax.set_xlabel("sequence length N")
    ax.set_ylabel(f"(t - t_floor) / t, {PHASE_NAMES[phase_of(key)]}")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"Share of the {PHASE_NAMES[phase_of(key)]} above the no-mixing floor\n{title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn
