"""``lra-table --plot`` and ``--bars``: LRA's Figure 3 and a bar chart with 95% intervals, from the table's cells.

The accuracy-speed-memory plot (Tay et al., arXiv 2011.04006, Figure 3) has one panel per task and
one for the average; in a task panel each cell (row, task) is one marker at

    x = training speed, steps/s = 1000 / step_time_ms   (the median over seeds of each run's median)
    y = mean test accuracy over seeds (%)
    marker area = AREA_PER_MB * peak memory (MB, the median over seeds)

one colour per row (mechanism, or mechanism with the settings its row was split by). The average
panel has one marker per row with all five tasks of Avg (5): y = Avg (5), x = the geometric mean
of the five tasks' steps/s (tasks of different lengths run at speeds decades apart, an arithmetic
mean would be the fastest task's), area from the mean of their peak memories. The x axis is
logarithmic in a panel whose speeds span more than a decade. A cell without a step time or a peak
memory has no place in the picture: it is left out and named (``left_out``).

The bar chart has one panel per task: a bar per row at its mean, with the 95% t-interval over
seeds as the whisker (``lra.table_stats``); a row of one seed has no whisker and reads ``n=1``.
Both are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas (no pyplot, no display), written
atomically (``lra.atomic``).
"""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lra.atomic import write_bytes_atomic
from lra.table_cells import Table

AVG = "avg5"  # the average panel's key in ``Point.task``
MAX_AREA = 900.0  # points^2 of the largest memory's marker
DECADE = 10.0  # speeds spanning more than this factor get a log x axis


@dataclass(frozen=True)
class Point:
    row: str
    task: str  # a task name, or AVG
    steps_per_s: float
    acc: float  # percent
    mem_mb: float


def points(table: Table) -> tuple[list[Point], list[str]]:
    """The markers of the accuracy-speed plot, and the cells left out (no step time or no peak memory)."""
    out, left_out = [], []
    for row in table.attentions:
        for task in table.tasks:
            c = table.get(row, task)
            if c is None:
                continue
            if c.steps_per_s is None or c.mem_mb_median is None:
                left_out.append(f"{row}/{task}")
                continue
            out.append(Point(row, task, c.steps_per_s, c.mean, c.mem_mb_median))
        five = [p for p in out if p.row == row and p.task in table.five]
        if len(five) == len(table.five) and table.avg5(row) is not None:
            speed = math.exp(statistics.fmean(math.log(p.steps_per_s) for p in five))
            out.append(Point(row, AVG, speed, table.avg5(row), statistics.fmean(p.mem_mb for p in five)))
    return out, left_out


def colours(rows: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10" if len(rows) <= 10 else "tab20"]
    return {row: cmap(i % cmap.N) for i, row in enumerate(rows)}


def _round_mb(x: float) -> float:
    """x rounded to one significant figure (a legend's reference memory)."""
    return float(f"{x:.1g}")


def accuracy_speed_figure(table: Table) -> tuple[Figure, list[Point], list[str]]:
    """LRA's Figure 3 from the table's cells: the figure, its points and the cells left out."""
    pts, left_out = points(table)
    if not pts:
        raise ValueError("no run has both a step time (step_time_ms) and a peak memory (peak_mem_mb): nothing to plot")
    panels = [t for t in [*table.tasks, AVG] if any(p.task == t for p in pts)]
    rows = [r for r in table.attentions if any(p.row == r for p in pts)]
    colour = colours(rows)
    area_per_mb = MAX_AREA / max(p.mem_mb for p in pts)
    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    spare = nrows * ncols - len(panels)  # an empty panel holds the legends, else they go below
    legend_cols = min(len(rows), 4)
    legend_rows = max(math.ceil(len(rows) / legend_cols), 3)  # the memory legend stands in 3 rows beside it
    fig = Figure(figsize=(max(4.2 * ncols, 8.4), 3.8 * nrows + (0 if spare else 0.5 + 0.22 * legend_rows)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, task in zip(axes.flat, panels):
        here = [p for p in pts if p.task == task]
        for row in rows:
            mine = [p for p in here if p.row == row]
            if mine:
                ax.scatter(
                    [p.steps_per_s for p in mine],
                    [p.acc for p in mine],
                    s=[area_per_mb * p.mem_mb for p in mine],
                    color=colour[row],
                    alpha=0.7,
                    edgecolors="black",
                    linewidths=0.6,
                    gid="cells",
                )
        speeds = [p.steps_per_s for p in here]
        if max(speeds) > DECADE * min(speeds):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, 50 ...
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(0.2)
        ax.set_title("Avg (5)" if task == AVG else table.titles.get(task, task))
        ax.set_xlabel("training speed (steps/s" + (", geometric mean)" if task == AVG else ")"))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [Line2D([], [], ls="", marker="o", markersize=8, color=colour[r], label=r) for r in rows]
    top = max(p.mem_mb for p in pts)
    sizes = [
        Line2D(
            [], [], ls="", marker="o", markersize=math.sqrt(area_per_mb * mb), color="grey", alpha=0.5, label=f"{mb:g}"
        )
        for mb in sorted({_round_mb(top * f) for f in (0.1, 0.4, 1.0)})
    ]
    fig.suptitle("Accuracy against training speed; marker area = peak memory")
    if spare:
        ax = axes.flat[len(panels)]
        ncol, size = (1, 10) if len(rows) <= 8 else (2, 8)
        legend = ax.legend(
            handles=handles, title="attention", loc="upper left", ncol=ncol, fontsize=size, frameon=False
        )
        ax.add_artist(legend)
        ax.legend(handles=sizes, title="peak memory (MB)", loc="lower left", ncol=len(sizes), frameon=False)
        fig.tight_layout()
    else:
        fig.legend(handles=handles, title="attention", loc="lower left", ncol=legend_cols, frameon=False)
        fig.legend(handles=sizes, title="peak memory (MB)", loc="lower right", ncol=1, frameon=False, labelspacing=1.2)
        fig.tight_layout(rect=(0, (0.5 + 0.22 * legend_rows) / fig.get_figheight(), 1, 1))
    return fig, pts, left_out


def bars_figure(table: Table) -> Figure:
    """One panel per task: mean test accuracy per row, whiskers the 95% t-interval (none for one seed)."""
    tasks = [t for t in table.tasks if any(table.get(r, t) for r in table.attentions)]
    rows = table.attentions
    colour = colours(rows)
    ncols = min(len(tasks), 3 if len(rows) <= 8 else 2)  # many rows: wider panels, names still legible
    nrows = math.ceil(len(tasks) / ncols)
    width = max(4.5, 0.45 * len(rows) + 1.5)
    fig = Figure(figsize=(width * ncols, 4.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        here = [(i, r, table.get(r, task)) for i, r in enumerate(rows) if table.get(r, task)]
        for i, row, c in here:
            iv = c.interval
            ax.bar(i, iv.mean, color=colour[row], yerr=iv.half, capsize=4, edgecolor="black", linewidth=0.5)
            if iv.half is None:
                ax.annotate("n=1", (i, iv.mean), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)), rows, rotation=40, ha="right", fontsize=8)
        ax.set_title(table.titles.get(task, task))
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 108)  # 0-100 and room for "n=1"; an interval of few seeds can reach past 0 or 100: cut there
        ax.set_yticks(range(0, 101, 20))
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.suptitle("Test accuracy: mean over seeds, whiskers the 95% t-interval (n=1: one seed, no interval)")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """The figure as a PNG at ``path``, written atomically."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    write_bytes_atomic(path, buf.getvalue(), durable=False)  # an image, cheap to make again
