"""The cells of ``lra-table``: every run of one (row, task), the two LRA averages and the row order.

A cell holds the test accuracies (percent) of the runs ``lra.table_select`` put together (the seeds of
one setting); its value is their mean, with the sample standard deviation over seeds. The averages:

    Avg (5) = mean over the five tasks of the LRA paper (``five``), None unless all five have a cell
    Avg (6) = (5 * Avg (5) + x) / 6, x = Path-X's mean, or 50 when Path-X is missing or failed

Path-X *failed* means a mean at most ``PATHX_CHANCE + fail_tol`` (chance on its balanced two classes,
within sampling noise). Rows are in LRA Table 1's order (``row_order``): the baseline, then the
mechanisms in the order of results/published.yaml's ``accuracy`` list, then the others alphabetically;
rows of one attention split by settings follow each other, sorted by their labels.

Each cell also has its 95% t-interval over seeds and, against the baseline cell of its task
(``baseline``), the paired difference over shared seeds (``lra.table_stats``) and the parameter ratio

    params ratio = median params of the row's runs / median params of the baseline's runs

The baseline cell of (row, task) is vanilla's cell of that task with the same model dimensions
(``model`` in the record); when vanilla has several such rows (split by settings), the one whose
settings agree with the row's on the keys those rows differ in, else none (the reason is given).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lra.table_select import drop_repeats, settings_of, split_rows
from lra.table_stats import Interval, paired_difference, t_interval

BASELINE = "vanilla"
PATHX_CHANCE = 50.0
PATHX_FAIL_TOL = 1.0


def row_order(attention: str, order: tuple[str, ...] | list[str]) -> tuple[int, str]:
    """Sort key of an attention: the baseline, then its place in ``order``, then alphabetical after them."""
    if attention == BASELINE:
        return (-1, "")
    return (order.index(attention), "") if attention in order else (len(order), attention)


@dataclass
class Cell:
    """Every run of one (row, task). Accuracies are test accuracies in percent, one per run."""

    attention: str = ""
    acc: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    mem_mb: list[float] = field(default_factory=list)
    params: list[int] = field(default_factory=list)
    model: dict = field(default_factory=dict)  # the record's model dimensions
    settings: dict = field(default_factory=dict)  # lra.table_select.settings_of, the same for every run

    @property
    def n(self) -> int:
        return len(self.acc)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.acc)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (None for a single run)."""
        return statistics.stdev(self.acc) if self.n > 1 else None

    @property
    def interval(self) -> Interval:
        """Mean, std and 95% t-interval of the test accuracies over seeds (no interval for one run)."""
        return t_interval(self.acc)

    @property
    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.acc))

    @property
    def params_median(self) -> float | None:
        return statistics.median(self.params) if self.params else None

    @property
    def steps_per_s(self) -> float | None:
        """Training speed: 1000 / the median over seeds of the median step time (ms)."""
        return None if not self.step_ms else 1000 / statistics.median(self.step_ms)

    @property
    def step_ms_median(self) -> float | None:
        return statistics.median(self.step_ms) if self.step_ms else None

    @property
    def mem_mb_median(self) -> float | None:
        return statistics.median(self.mem_mb) if self.mem_mb else None


def aggregate(records: list[tuple[Path, dict]]) -> tuple[dict[tuple[str, str], Cell], list[str]]:
    """The cells by (row, task) and notes on what was left out or split (``lra.table_select``): a
    repeated (settings, seed) counts once, runs of one (attention, task) with different settings
    get rows of their own."""
    records, notes = drop_repeats(records)
    rows, split_notes = split_rows(records)
    cells: dict[tuple[str, str], Cell] = {}
    for row, _, r in rows:
        cell = cells.setdefault(
            (row, r["task"]), Cell(attention=r["attention"], model=r.get("model") or {}, settings=settings_of(r))
        )
        cell.acc.append(100 * r["test_acc"])
        cell.val.append(100 * r["val_acc"])
        cell.seeds.append(r["seed"])
        if r["step_time_ms"] is not None:
            cell.step_ms.append(r["step_time_ms"])
        if r["peak_mem_mb"] is not None:
            cell.mem_mb.append(r["peak_mem_mb"])
        if isinstance(r.get("params"), int):
            cell.params.append(r["params"])
    return cells, notes + split_notes


@dataclass
class Table:
    """The aggregated cells and the two averages of the LRA table."""

    cells: dict[tuple[str, str], Cell]
    tasks_known: Sequence[str]  # the benchmark's tasks in column order (lra.table.TASKS)
    five: Sequence[str]  # the tasks of the LRA paper's average (lra.table.FIVE)
    titles: Mapping[str, str]  # column titles by task (lra.table.TITLES)
    order: tuple[str, ...] = ()  # attentions in LRA Table 1's order (lra.published.published_order)
    fail_tol: float = PATHX_FAIL_TOL
    notes: list[str] = field(default_factory=list)  # runs left out as repeats, cells split by settings

    @property
    def attentions(self) -> list[str]:
        """Row labels (an attention, or an attention with the settings it was split by), by ``row_order``."""
        attention = {row: c.attention for (row, _), c in self.cells.items()}
        return sorted(attention, key=lambda row: (*row_order(attention[row], self.order), row))

    def attention_of(self, row: str) -> str:
        return next(c.attention for (r, _), c in self.cells.items() if r == row)

    @property
    def tasks(self) -> list[str]:
        """The benchmark's tasks, then any other task names found in the records."""
        return [*self.tasks_known, *sorted({t for _, t in self.cells} - set(self.tasks_known))]

    def get(self, attention: str, task: str) -> Cell | None:
        return self.cells.get((attention, task))

    def pathx_failed(self, attention: str) -> bool:
        """A Path-X cell at or below chance + tolerance (a missing one is not "failed", just missing)."""
        cell = self.get(attention, "pathx")
        return cell is not None and cell.mean <= PATHX_CHANCE + self.fail_tol

    def avg5(self, attention: str) -> float | None:
        """Mean over the five tasks of the LRA paper's average; None unless all five are present."""
        cells = [self.get(attention, t) for t in self.five]
        return None if None in cells else statistics.fmean(c.mean for c in cells)

    def avg6(self, attention: str) -> float | None:
        """Six-task mean with a missing or failed Path-X counted as 50; None unless the other five are present."""
        if self.avg5(attention) is None:
            return None
        pathx = self.get(attention, "pathx")
        value = PATHX_CHANCE if pathx is None or self.pathx_failed(attention) else pathx.mean
        return (5 * self.avg5(attention) + value) / 6

    def baseline(self, row: str, task: str) -> tuple[Cell | None, str]:
        """The baseline cell that (row, task) is compared with, or None and why there is none."""
        cell = self.get(row, task)
        if cell is None:
            return None, "no run"
        found = [c for (r, t), c in self.cells.items() if t == task and c.attention == BASELINE]
        if not found:
            return None, f"no {BASELINE} run"
        found = [c for c in found if c.model == cell.model]
        if not found:
            return None, f"no {BASELINE} run of the same model size"
        if len(found) > 1:
            keys = {k for c in found for k in c.settings if len({str(x.settings.get(k)) for x in found}) > 1}
            found = [c for c in found if all(str(c.settings.get(k)) == str(cell.settings.get(k)) for k in keys)]
            if len(found) != 1:
                return None, f"{BASELINE} has several rows ({', '.join(sorted(keys))} differ)"
        return found[0], ""

    def paired(self, row: str, task: str) -> tuple[Interval | None, str]:
        """Row minus baseline over the seeds both have (points), or None and why."""
        base, why = self.baseline(row, task)
        if base is None:
            return None, why
        diff = paired_difference(self.cells[(row, task)].by_seed, base.by_seed)
        return (diff, "") if diff is not None else (None, "no shared seeds")

    def params_ratio(self, row: str, task: str) -> float | None:
        """Median params of the row over the baseline's, same task and model size (None if either is unknown)."""
        base, _ = self.baseline(row, task)
        mine = self.get(row, task)
        if base is None or mine is None or not base.params_median or mine.params_median is None:
            return None
        return mine.params_median / base.params_median

    def baseline_differs(self, row: str, task: str) -> list[str]:
        """Settings other than the attention's own in which (row, task) differs from its baseline cell."""
        base, _ = self.baseline(row, task)
        if base is None:
            return []
        mine = self.cells[(row, task)].settings
        keys = set(mine) | set(base.settings)
        return sorted(k for k in keys if not k.startswith("attention.") and mine.get(k) != base.settings.get(k))
