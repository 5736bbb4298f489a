"""``lra-table``'s output: one grid of strings rendered as Markdown or LaTeX, or long-form CSV.

``grid`` turns a ``lra.table_cells.Table`` into a header, rows and notes, all plain text: a cell
is ``mean`` for one run or ``mean ± std (n=k)`` over seeds, ``-`` where there is no run, ``FAIL (..)``
for a failed Path-X; with published numbers, each row of ours is followed by the paper's row and
``ours - published``. ``to_markdown`` and ``to_latex`` (booktabs, special characters escaped) print
that grid; ``to_csv`` writes one row per (attention, task) instead, with the averages as extra rows.
"""

from __future__ import annotations

import csv
import io
import statistics

from lra.published import published_entry
from lra.table_cells import PATHX_CHANCE, Cell, Table

MISSING = "-"


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
    titles = table.titles
    header = ["Attention", *(titles.get(t, t) for t in tasks), "Avg (5)", "Avg (6)"]
    header += [f"{titles.get(t, t)} {unit}" for t in eff_tasks for unit in ("ms", "MB")]
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
        entry = published_entry(published, a, table.attention_of(a))
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
        entry = published_entry(published, a, attention) or {}
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
