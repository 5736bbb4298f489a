"""speed.png and memory.png of ``lra-bench``: log-log against N, one line per row, failed points left out.

Faint O(N) and O(N^2) guide lines start at the lowest point of the shortest length, so a row's
scaling reads off against them; vanilla is black, vanilla_naive black dashed, the floor grey dotted.
"""

from __future__ import annotations

from pathlib import Path

from lra.bench_numbers import index, label, ok_value, row_order
from lra.measure import BASELINE, FLOOR, NAIVE

STYLE = {BASELINE: dict(color="black"), NAIVE: dict(color="black", ls="--"), FLOOR: dict(color="grey", ls=":")}


def plot(rows: list[dict], path: Path, panels: list[tuple[str, str]], title: str) -> None:
    """Log-log against N, one line per row (failed points omitted); one panel per (key, y label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        for name in names:
            pts = [(n, v) for n in lengths if (v := ok_value(idx, name, n, key)) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", label=name, **STYLE.get(name, {}))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ylim = ax.get_ylim()
        guide(ax, [v for name in names for n in lengths[:1] if (v := ok_value(idx, name, n, key)) is not None])
        ax.set_ylim(ylim)  # the guides do not stretch the axis
        ax.set_xticks(lengths, [label(n) for n in lengths])
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
