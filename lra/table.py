"""``lra-table``: paper-style tables (the layout of LRA Table 1) from result.json files.

    lra-table multirun/2025-06-01/                      # every result.json below, Markdown
    lra-table 'multirun/**/*listops*' --format latex --out table.tex
    lra-table runs/ multirun/ --compare published --efficiency
    lra-table multirun/ --format csv > results.csv      # long-form rows, one per (attention, task)
    lra-table multirun/ --where trainer.max_steps=1500  # only the runs with that setting
    lra-table multirun/ --plot acc-speed.png --bars acc-bars.png   # LRA's Figure 3 and a bar chart

Rows are attention mechanisms in LRA Table 1's order (the baseline, then the order of
results/published.yaml's ``accuracy`` list, then the others alphabetically), columns the six LRA
tasks, then two averages (``lra.table_cells``):
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

Each accuracy cell shows the 95% t-interval over seeds; a second table gives each row's paired
difference to vanilla over the seeds both have, a third the parameter counts and their ratio to
vanilla's (``lra.table_stats``, ``lra.table_render``). ``--plot`` and ``--bars`` draw the table's cells
(``lra.table_plot``).

Records are read through ``lra.results.load_result``: older records (no ``schema``) are read with
the fields they have, one from a newer harness is refused naming the file. Rendering is
``lra.table_render``, published numbers ``lra.published``.
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from pathlib import Path

from lra.atomic import write_text_atomic
from lra.data import tasks as task_registry
from lra.errors import UserError
from lra.published import PUBLISHED, load_published, published_order
from lra.results import RESULT_FILE, NewerSchema, load_result
from lra.table_cells import PATHX_FAIL_TOL, Table, aggregate
from lra.table_plot import accuracy_speed_figure, bars_figure, save_png
from lra.table_render import render
from lra.table_select import select

log = logging.getLogger("lra.table")

# live views of the task registry (lra/data/registry.py): the columns in order, their titles, the tasks of Avg (5)
TASKS = task_registry.TASK_NAMES
TITLES = task_registry.TITLES
FIVE = task_registry.AVERAGED


def find_results(patterns: list[str]) -> list[Path]:
    """Every result.json under the given folders, files or glob patterns (``**`` recurses)."""
    found: dict[Path, Path] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matches:
            raise FileNotFoundError(f"{pattern}: no such file or folder")
        for match in map(Path, matches):
            files = sorted(match.rglob(RESULT_FILE)) if match.is_dir() else [match]
            found.update((f.resolve(), f) for f in files)
    return list(found.values())


def load_records(files: list[Path], *, skip_incomplete: bool = False) -> list[tuple[Path, dict]]:
    """(path, record) for each file, read by ``lra.results.load_result`` (any schema up to this
    harness's); an incomplete or unreadable record raises ValueError naming the file, or with
    ``skip_incomplete`` is left out with a warning. A record of a newer schema always raises
    (``NewerSchema``): leaving it out would drop a finished run from the table without need."""
    records = []
    for path in files:
        try:
            record = load_result(path)
            if not isinstance(record["test_acc"], int | float):
                raise ValueError(f"{path}: incomplete result record, test_acc is {record['test_acc']!r}")
        except NewerSchema:
            raise
        except ValueError as e:
            message = str(e) if str(path) in str(e) else f"{path}: unreadable result record ({e})"
            if not skip_incomplete:
                raise ValueError(message) from None
            log.warning("skipped %s", message)
            continue
        records.append((path, record))
    return records


def make_table(records: list[tuple[Path, dict]], *, fail_tol: float = PATHX_FAIL_TOL) -> Table:
    """The cells of the records (``lra.table_cells.aggregate``) with this benchmark's tasks and row order."""
    cells, notes = aggregate(records)
    return Table(
        cells, tasks_known=TASKS, five=FIVE, titles=TITLES, order=published_order(), fail_tol=fail_tol, notes=notes
    )


def png_path(flag: str, path: Path) -> Path:
    """``path`` checked as a place for a PNG (its folder made); SystemExit with one line if it is not."""
    if path.suffix.lower() != ".png":
        raise SystemExit(f"lra-table: {flag} {path}: plots are written as PNG, give a file name ending in .png")
    if path.is_dir():
        raise SystemExit(f"lra-table: {flag} {path}: is a folder, give a file name ending in .png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"lra-table: {flag} {path}: cannot make its folder {path.parent} ({e.strerror})") from None
    return path


def write_plot(flag: str, path: Path, fig) -> None:
    try:
        save_png(fig, path)
    except (OSError, UserError) as e:
        raise SystemExit(f"lra-table: {flag} {path}: cannot write it ({getattr(e, 'strerror', None) or e})") from None
    log.info("wrote %s", path)


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
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw accuracy against training speed (steps/s), marker area = peak memory, one panel per task"
        " and one for Avg (5) (LRA's Figure 3)",
    )
    p.add_argument(
        "--bars", type=Path, metavar="FILE.png", help="draw a bar chart per task: mean accuracy, 95%% t-interval"
    )
    a = p.parse_args(argv)
    plot, bars = (a.plot and png_path("--plot", a.plot)), (a.bars and png_path("--bars", a.bars))
    paths = a.paths or [d for d in ("runs", "multirun") if Path(d).is_dir()]
    try:
        records = load_records(find_results(paths), skip_incomplete=a.skip_incomplete)
    except (FileNotFoundError, ValueError) as e:
        skippable = isinstance(e, ValueError) and not isinstance(e, NewerSchema)
        hint = "\n(--skip-incomplete leaves such files out with a warning)" if skippable else ""
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
    table = make_table(records, fail_tol=a.pathx_fail_tol)
    text = render(table, a.format, efficiency=a.efficiency, published=published)
    if plot:
        try:
            fig, _, left_out = accuracy_speed_figure(table)
        except ValueError as e:
            raise SystemExit(f"lra-table: --plot {plot}: {e}") from None
        if left_out:
            log.warning("--plot: left out (no step time or peak memory): %s", ", ".join(left_out))
        write_plot("--plot", plot, fig)
    if bars:
        write_plot("--bars", bars, bars_figure(table))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(a.out, text)
        log.info("wrote %s (%d runs)", a.out, len(records))
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
