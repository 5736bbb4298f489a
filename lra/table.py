"""``lra-table``: paper-style tables (the layout of LRA Table 1) from result.json files.

    lra-table multirun/2025-06-01/                      # every result.json below, Markdown
    lra-table 'multirun/**/*listops*' --format latex --out table.tex
    lra-table runs/ multirun/ --compare published --efficiency
    lra-table multirun/ --format csv > results.csv      # long-form rows, one per (attention, task)
    lra-table multirun/ --where trainer.max_steps=1500  # only the runs with that setting

Rows are attention mechanisms, columns the six LRA tasks, then two averages:
- Avg (5): the LRA paper's mean over ListOps, Text, Retrieval, Image, Pathfinder (Path-X
  excluded), shown only when all five are present;
- Avg (6): the six-task mean of later papers (e.g. S4, arXiv 2111.00396, Table 10), where a
  missing or failed Path-X counts as 50. Failed means a mean test accuracy of at most
  50 + ``--pathx-fail-tol`` points (default 1): chance on the balanced two-class task, within
  sampling noise (one binomial standard error on 20,000 test images is 0.35 points).
A cell with no run is "-" and never enters an average.

A cell holds runs of the same settings only (``lra.table_select``): runs of one (attention, task)
whose resolved configs differ in a key that can change the number (``trainer.max_steps``,
``trainer.precision``, an attention option, ...) get separate rows named by those keys, and a
note says what differs; a job run twice counts once (its newest run), naming the runs left out.
``--where trainer.max_steps=1500`` keeps the runs whose resolved config has that value.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import logging
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lra.data import tasks as task_registry
from lra.results import REPO, load_result
from lra.table_select import drop_repeats, select, split_rows

log = logging.getLogger("lra.table")

# live views of the task registry (lra/data/registry.py): the columns in order, their titles, the tasks of Avg (5)
TASKS = task_registry.TASK_NAMES
TITLES = task_registry.TITLES
FIVE = task_registry.AVERAGED
PATHX_CHANCE = 50.0
PATHX_FAIL_TOL = 1.0
PUBLISHED = REPO / "results" / "published.yaml"
MISSING = "-"


@dataclass
class Cell:
    """Every run of one (row, task). Accuracies are test accuracies in percent, one per run."""

    attention: str = ""
    acc: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    mem_mb: list[float] = field(default_factory=list)

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
    def step_ms_median(self) -> float | None:
        return statistics.median(self.step_ms) if self.step_ms else None

    @property
    def mem_mb_median(self) -> float | None:
        return statistics.median(self.mem_mb) if self.mem_mb else None


def find_results(patterns: list[str]) -> list[Path]:
    """Every result.json under the given folders, files or glob patterns (``**`` recurses)."""
    found: dict[Path, Path] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matches:
            raise FileNotFoundError(f"{pattern}: no such file or folder")
        for match in map(Path, matches):
            files = sorted(match.rglob("result.json")) if match.is_dir() else [match]
            found.update((f.resolve(), f) for f in files)
    return list(found.values())


def load_records(files: list[Path], *, skip_incomplete: bool = False) -> list[tuple[Path, dict]]:
    """(path, record) for each file; an incomplete or unreadable record raises ValueError naming
    the file, or with ``skip_incomplete`` is left out with a warning."""
    records = []
    for path in files:
        try:
            record = load_result(path)
            if not isinstance(record["test_acc"], int | float):
                raise ValueError(f"{path}: incomplete result record, test_acc is {record['test_acc']!r}")
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            message = str(e) if str(path) in str(e) else f"{path}: unreadable result record ({e})"
            if not skip_incomplete:
                raise ValueError(message) from None
            log.warning("skipped %s", message)
            continue
        records.append((path, record))
    return records


def aggregate(records: list[tuple[Path, dict]]) -> tuple[dict[tuple[str, str], Cell], list[str]]:
    """The cells by (row, task) and notes on what was left out or split (``lra.table_select``): a
    repeated (settings, seed) counts once, runs of one (attention, task) with different settings
    get rows of their own."""
    records, notes = drop_repeats(records)
    rows, split_notes = split_rows(records)
    cells: dict[tuple[str, str], Cell] = {}
    for row, _, r in rows:
        cell = cells.setdefault((row, r["task"]), Cell(attention=r["attention"]))
        cell.acc.append(100 * r["test_acc"])
        cell.val.append(100 * r["val_acc"])
        cell.seeds.append(r["seed"])
        if r["step_time_ms"] is not None:
            cell.step_ms.append(r["step_time_ms"])
        if r["peak_mem_mb"] is not None:
            cell.mem_mb.append(r["peak_mem_mb"])
    return cells, notes + split_notes


@dataclass
class Table:
    """The aggregated cells and the two averages of the LRA table."""

    cells: dict[tuple[str, str], Cell]
    fail_tol: float = PATHX_FAIL_TOL
    notes: list[str] = field(default_factory=list)  # runs left out as repeats, cells split by settings

    @property
    def attentions(self) -> list[str]:
        """Row labels (an attention, or an attention with the settings it was split by): the baseline
        first, then alphabetical."""
        attention = {row: c.attention for (row, _), c in self.cells.items()}
        return sorted(attention, key=lambda row: (attention[row] != "vanilla", attention[row], row))

    def attention_of(self, row: str) -> str:
        return next(c.attention for (r, _), c in self.cells.items() if r == row)

    @property
    def tasks(self) -> list[str]:
        """The six LRA tasks, then any other task names found in the records."""
        return [*TASKS, *sorted({t for _, t in self.cells} - set(TASKS))]

    def get(self, attention: str, task: str) -> Cell | None:
        return self.cells.get((attention, task))

    def pathx_failed(self, attention: str) -> bool:
        """A Path-X cell at or below chance + tolerance (a missing one is not "failed", just missing)."""
        cell = self.get(attention, "pathx")
        return cell is not None and cell.mean <= PATHX_CHANCE + self.fail_tol

    def avg5(self, attention: str) -> float | None:
        """Mean over the five tasks of the LRA paper's average; None unless all five are present."""
        cells = [self.get(attention, t) for t in FIVE]
        return None if None in cells else statistics.fmean(c.mean for c in cells)

    def avg6(self, attention: str) -> float | None:
        """Six-task mean with a missing or failed Path-X counted as 50; None unless the other five are present."""
        if self.avg5(attention) is None:
            return None
        pathx = self.get(attention, "pathx")
        value = PATHX_CHANCE if pathx is None or self.pathx_failed(attention) else pathx.mean
        return (5 * self.avg5(attention) + value) / 6


def load_published(path: str | Path = PUBLISHED) -> dict[str, dict[str, dict]]:
    """results/published.yaml as {"accuracy": {attention: entry}, "efficiency": {...}}, with each
    entry's ``source`` (and ``avg6_source``) replaced by the source it names."""
    data = yaml.safe_load(Path(path).read_text())
    sources = data["sources"]

    def resolve(entry: dict) -> dict:
        out = dict(entry)
        for key in ("source", "avg6_source"):
            if key in entry:
                if entry[key] not in sources:
                    raise KeyError(f"{path}: {entry['attention']} names unknown source '{entry[key]}'")
                out[key] = {"id": entry[key], **sources[entry[key]]}
        return out

    return {kind: {e["attention"]: resolve(e) for e in data[kind]} for kind in ("accuracy", "efficiency")}


# --- one grid of strings, rendered as Markdown or LaTeX --------------------------------------


def _acc(cell: Cell, failed: bool = False) -> str:
    text = f"{cell.mean:.2f}" if cell.n == 1 else f"{cell.mean:.2f} ± {cell.std:.2f} (n={cell.n})"
    return f"FAIL ({text})" if failed else text


def _num(x: float | None, digits: int = 2, sign: bool = False) -> str:
    return MISSING if x is None else f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _published_value(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    return value if isinstance(value, int | float) else None


def _published_rows(entry: dict, tasks: list[str], mine: list[float | None], n_blank: int) -> list[list[str]]:
    """The published row and the difference row (ours - published) under one of ours; ``mine`` holds
    our task means then our two averages."""
    label, blank = f"published ({entry['model']})", [MISSING] * n_blank
    if entry.get("status", "reported") != "reported":
        return [[f"{label}: {entry['status']}", *[MISSING] * len(mine), *blank]]
    keys = [*tasks, "avg5", "avg6"]
    theirs = [_published_value(entry, k) for k in keys]
    shown = [_num(v) if v is not None else str(entry.get(k, MISSING)) for k, v in zip(keys, theirs)]
    diff = [_num(None if m is None or p is None else m - p, sign=True) for m, p in zip(mine, theirs)]
    return [[label, *shown, *blank], ["ours - published", *diff, *blank]]


def grid(
    table: Table, *, efficiency: bool = False, published: dict | None = None
) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, notes) of the table; every cell is plain text."""
    tasks = table.tasks
    eff_tasks = [t for t in tasks if any(table.get(a, t) for a in table.attentions)] if efficiency else []
    header = ["Attention", *(TITLES.get(t, t) for t in tasks), "Avg (5)", "Avg (6)"]
    header += [f"{TITLES.get(t, t)} {unit}" for t in eff_tasks for unit in ("ms", "MB")]
    rows, used_sources = [], {}
    for a in table.attentions:
        cells = [table.get(a, t) for t in tasks]
        ours = [MISSING if c is None else _acc(c, t == "pathx" and table.pathx_failed(a)) for t, c in zip(tasks, cells)]
        avgs = [table.avg5(a), table.avg6(a)]
        eff = []
        for t in eff_tasks:
            c = table.get(a, t)
            eff += [_num(c and c.step_ms_median, 1), _num(c and c.mem_mb_median, 0)]
        rows.append([a, *ours, *(_num(x) for x in avgs), *eff])
        entry = (published or {}).get("accuracy", {}).get(table.attention_of(a))
        if entry is not None:
            for key in ("source", "avg6_source"):
                if key in entry:
                    used_sources[entry[key]["id"]] = entry[key]
            mine = [None if c is None else c.mean for c in cells] + avgs
            rows += _published_rows(entry, tasks, mine, 2 * len(eff_tasks))
    notes = [
        "Test accuracy (%): mean ± sample std over n seeds (no ± = one run); - = no run, never averaged.",
        "Avg (5): mean over ListOps, Text, Retrieval, Image, Pathfinder as in the LRA paper (Path-X excluded);"
        " shown only when all five are present.",
        "Avg (6): mean over all six tasks as in later papers (S4, arXiv 2111.00396, Table 10); a missing or failed"
        f" Path-X counts as 50. Failed = mean test accuracy <= {PATHX_CHANCE + table.fail_tol:.1f}"
        f" (chance + {table.fail_tol:g} point).",
    ]
    if eff_tasks:
        notes.append(
            "ms: median optimizer-step time; MB: peak memory (CUDA allocator peak on GPU, process peak"
            " RSS on CPU); each the median over seeds."
        )
    for s in used_sources.values():
        notes.append(f"published: {s['title']}, {s['table']}, arXiv {s['arxiv']}.")
    notes += table.notes
    return header, rows, notes


def to_markdown(header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(header), "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|", *map(line, rows), ""]
    return "\n".join(out + [f"- {n}" for n in notes]) + "\n"


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters; ± and <= become math."""
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return escaped.replace("±", r"$\pm$").replace("<=", r"$\le$")


def to_latex(header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""

    def line(cells: list[str]) -> str:
        return " & ".join(map(latex_escape, cells)) + r" \\"

    out = [
        r"% generated by lra-table; needs \usepackage{booktabs}",
        r"\begin{table}[ht]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        line(header),
        r"\midrule",
        *map(line, rows),
        r"\bottomrule",
        r"\end{tabular}",
        "",
        r"\smallskip",
        r"\footnotesize",
        " \\\\\n".join(map(latex_escape, notes)),
        r"\end{table}",
    ]
    return "\n".join(out) + "\n"


def to_csv(table: Table, published: dict | None = None) -> str:
    """Long-form rows: one per (attention, task) with runs, plus avg5/avg6 rows where computable.
    ``mean``/``std``/``val_mean`` are accuracies in percent."""
    fields = [
        "attention",
        "settings",
        "task",
        "n",
        "mean",
        "std",
        "val_mean",
        "seeds",
        "pathx_failed",
        "step_time_ms",
        "peak_mem_mb",
    ] + (["published", "diff"] if published else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for a in table.attentions:
        attention = table.attention_of(a)
        variant = a[len(attention) :].strip().removeprefix("(").removesuffix(")")
        entry = (published or {}).get("accuracy", {}).get(attention, {})
        for t in table.tasks:
            c = table.get(a, t)
            if c is None:
                continue
            row = {
                "attention": attention,
                "settings": variant,
                "task": t,
                "n": c.n,
                "mean": c.mean,
                "std": c.std,
                "val_mean": statistics.fmean(c.val),
                "seeds": ";".join(map(str, c.seeds)),
                "pathx_failed": table.pathx_failed(a) if t == "pathx" else None,
                "step_time_ms": c.step_ms_median,
                "peak_mem_mb": c.mem_mb_median,
            }
            w.writerow(_with_published(row, c.mean, entry.get(t), published))
        for name, value in (("avg5", table.avg5(a)), ("avg6", table.avg6(a))):
            if value is not None:
                row = {"attention": attention, "settings": variant, "task": name, "mean": value}
                w.writerow(_with_published(row, value, entry.get(name), published))
    return buf.getvalue()


def _with_published(row: dict, ours: float, theirs, published: dict | None) -> dict:
    """The row with published and diff (ours - published) added, floats rounded to 6 decimals."""
    if published and theirs is not None:
        row["published"] = theirs
        row["diff"] = ours - theirs if isinstance(theirs, int | float) else None
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def render(table: Table, fmt: str, *, efficiency: bool = False, published: dict | None = None) -> str:
    if fmt == "csv":
        return to_csv(table, published)
    parts = grid(table, efficiency=efficiency, published=published)
    return to_latex(*parts) if fmt == "latex" else to_markdown(*parts)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="lra-table: %(message)s")
    p = argparse.ArgumentParser(
        prog="lra-table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="RUN_DIRS_OR_GLOBS",
        help="folders searched recursively for result.json, result files, or glob patterns"
        " (default: runs/ and multirun/ where they exist)",
    )
    p.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    p.add_argument(
        "--compare",
        metavar="published|FILE",
        help="put published numbers beside ours: 'published' = results/published.yaml, or a YAML file",
    )
    p.add_argument("--efficiency", action="store_true", help="add step time (ms) and peak memory (MB) per task")
    p.add_argument("--out", type=Path, help="write the table here instead of standard output")
    p.add_argument(
        "--skip-incomplete",
        action="store_true",
        help="leave out incomplete result.json files with a warning instead of stopping",
    )
    p.add_argument(
        "--pathx-fail-tol",
        type=float,
        default=PATHX_FAIL_TOL,
        help="Path-X counts as failed at a mean test accuracy <= 50 + this (points; default %(default)s)",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs whose resolved config has KEY=VALUE (dotted, e.g. trainer.max_steps=1500; KEY!=VALUE"
        " excludes); repeat to combine",
    )
    a = p.parse_args(argv)
    paths = a.paths or [d for d in ("runs", "multirun") if Path(d).is_dir()]
    try:
        records = load_records(find_results(paths), skip_incomplete=a.skip_incomplete)
    except (FileNotFoundError, ValueError) as e:
        hint = "\n(--skip-incomplete leaves such files out with a warning)" if isinstance(e, ValueError) else ""
        raise SystemExit(f"lra-table: {e}{hint}") from None
    if not records:
        raise SystemExit(f"lra-table: no result.json under {', '.join(paths) or 'the current folder'}")
    try:
        selected = select(records, a.where)
    except ValueError as e:
        raise SystemExit(f"lra-table: {e}") from None
    if not selected:
        raise SystemExit(f"lra-table: none of the {len(records)} runs has {' and '.join(a.where)}")
    records = selected
    published = None
    if a.compare:
        published = load_published(PUBLISHED if a.compare == "published" else a.compare)
    cells, notes = aggregate(records)
    table = Table(cells, a.pathx_fail_tol, notes)
    text = render(table, a.format, efficiency=a.efficiency, published=published)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        log.info("wrote %s (%d runs)", a.out, len(records))
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
