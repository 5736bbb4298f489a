"""``lra-table``'s output: three grids of strings rendered as Markdown or LaTeX, or long-form CSV.

``grids`` turns a ``lra.table_cells.Table`` into titled grids and notes, all plain text:
1. test accuracy: a cell is ``mean ± std [low, high] n=k`` over k seeds ([low, high] the 95%
   t-interval), ``mean n=1`` for one run (no std, no interval), ``-`` where there is no run,
   ``FAIL (..)`` for a failed Path-X; then Avg (5) and Avg (6) of our means. With published numbers,
   each row of ours is followed by the paper's row, labelled ``published: <model> (<first author>
   et al., <table>, arXiv <id>)``, and ``ours - published``; published numbers are never averaged
   with ours nor enter our averages.
2. the paired difference to vanilla: ``+d [low, high] n=k`` over the k seeds both rows have
   (percentage points), ``no shared seeds``, or why there is no vanilla cell to compare with.
3. parameters: the median parameter count of the cell's runs and ``(r×)`` its ratio to vanilla's.
``to_markdown`` and ``to_latex`` (booktabs, special characters escaped) print the grids; ``to_csv``
writes one row per (attention, task) instead, with the averages as extra rows.
"""

from __future__ import annotations

import csv
import io
import statistics

from lra.published import published_entry
from lra.table_cells import BASELINE, PATHX_CHANCE, Cell, Table
from lra.table_stats import Interval

MISSING = "-"
Grid = tuple[str, list[str], list[list[str]]]  # (title, header, rows)


def interval_text(iv: Interval, sign: bool = False) -> str:
    """``m ± s [low, high] n=k``, or ``m n=1`` (no spread from one value); ``sign``: a difference, no ±."""
    f = "+.2f" if sign else ".2f"
    if iv.half is None:
        return f"{iv.mean:{f}} n={iv.n}"
    spread = "" if sign else f" ± {iv.std:.2f}"
    return f"{iv.mean:{f}}{spread} [{iv.low:{f}}, {iv.high:{f}}] n={iv.n}"


def _acc(cell: Cell, failed: bool = False) -> str:
    text = interval_text(cell.interval)
    return f"FAIL ({text})" if failed else text


def _num(x: float | None, digits: int = 2, sign: bool = False) -> str:
    return MISSING if x is None else f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _published_value(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    return value if isinstance(value, int | float) else None


def cite(source: dict) -> str:
    """A short citation of a published source: first author et al., table, arXiv id; or the source's own
    ``cite`` where the numbers are quoted from another paper than the one that made them."""
    if source.get("cite"):
        return source["cite"]
    return f"{source['authors'].split(',')[0]} et al., {source['table']}, arXiv {source['arxiv']}"


def _published_rows(entry: dict, tasks: list[str], mine: list[float | None], n_blank: int) -> list[list[str]]:
    """The published row and the difference row (ours - published) under one of ours; ``mine`` holds
    our task means then our two averages."""
    cites = [cite(entry[k]) for k in ("source",) if k in entry]
    if "avg6_source" in entry:  # the six-task mean printed by a later paper
        cites.append(f"Avg (6): {cite(entry['avg6_source'])}")
    cited = f" ({'; '.join(cites)})" if cites else ""
    label, blank = f"published: {entry['model']}{cited}", [MISSING] * n_blank
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
    """(header, rows, notes) of the accuracy table; every cell is plain text."""
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
        "Test accuracy (%): mean ± sample std [95% t-interval] over n seeds; n=1: one run, no std and no"
        " interval; - = no run, never averaged.",
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


def paired_grid(table: Table) -> Grid:
    """Each non-baseline row minus vanilla per task over shared seeds, in percentage points."""
    header = [f"vs {BASELINE}", *(table.titles.get(t, t) for t in table.tasks)]
    rows = []
    for a in table.attentions:
        if table.attention_of(a) == BASELINE:
            continue
        cells = []
        for t in table.tasks:
            diff, why = table.paired(a, t)
            cells.append(MISSING if why == "no run" else why if diff is None else interval_text(diff, sign=True))
        rows.append([a, *cells])
    title = (
        f"Paired difference to {BASELINE} (test accuracy, points): mean of ours - {BASELINE} over the n seeds"
        " both have [95% t-interval]"
    )
    return title, header, rows


def params_grid(table: Table) -> Grid:
    """Each row's median parameter count per task and its ratio to vanilla's (same task and model size)."""
    header = ["Params", *(table.titles.get(t, t) for t in table.tasks)]
    rows = []
    for a in table.attentions:
        cells = []
        for t in table.tasks:
            c, ratio = table.get(a, t), table.params_ratio(a, t)
            if c is None or c.params_median is None:
                cells.append(MISSING)
            else:
                cells.append(f"{c.params_median:,.0f}" + ("" if ratio is None else f" ({ratio:.2f}×)"))
        rows.append([a, *cells])
    return f"Parameters (× = ratio to {BASELINE} of the same task and model size)", header, rows


def comparison_notes(table: Table) -> list[str]:
    """Where a row is compared with a vanilla cell whose settings differ outside the attention's own."""
    notes = []
    for a in table.attentions:
        for t in table.tasks:
            if table.attention_of(a) != BASELINE and table.get(a, t) and (keys := table.baseline_differs(a, t)):
                notes.append(f"{a}/{t} vs {BASELINE}: the runs also differ in {', '.join(keys)}")
    return notes


def grids(table: Table, *, efficiency: bool = False, published: dict | None = None) -> tuple[list[Grid], list[str]]:
    """The accuracy, paired-difference and parameter grids and the notes under them."""
    header, rows, notes = grid(table, efficiency=efficiency, published=published)
    out = [("", header, rows)]
    paired = paired_grid(table)
    if paired[2]:
        out.append(paired)
    return out + [params_grid(table)], notes + comparison_notes(table)


def to_markdown(parts: list[Grid], notes: list[str]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = []
    for title, header, rows in parts:
        out += [title, ""] if title else []
        out += [line(header), "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|", *map(line, rows), ""]
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
    """Escape LaTeX's special characters; ±, <= and × become math."""
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return escaped.replace("±", r"$\pm$").replace("<=", r"$\le$").replace("×", r"$\times$")


def to_latex(parts: list[Grid], notes: list[str]) -> str:
    """A booktabs table (needs \\usepackage{booktabs}): one tabular per grid."""

    def line(cells: list[str]) -> str:
        return " & ".join(map(latex_escape, cells)) + r" \\"

    out = [r"% generated by lra-table; needs \usepackage{booktabs}", r"\begin{table}[ht]", r"\centering"]
    for title, header, rows in parts:
        out += [r"\medskip", r"\textbf{" + latex_escape(title) + "}", ""] if title else []
        out += [
            r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
            r"\toprule",
            line(header),
            r"\midrule",
            *map(line, rows),
            r"\bottomrule",
            r"\end{tabular}",
            "",
        ]
    out += [
        r"\smallskip",
        r"\footnotesize",
        " \\\\\n".join(map(latex_escape, notes)),
        r"\end{table}",
    ]
    return "\n".join(out) + "\n"


def to_csv(table: Table, published: dict | None = None) -> str:
    """Long-form rows: one per (attention, task) with runs, plus avg5/avg6 rows where computable.
    ``mean``/``std``/``ci_low``/``ci_high``/``val_mean`` are accuracies in percent (the interval empty for one
    run); ``vs_vanilla`` and its interval are the paired difference in points over ``shared_seeds`` seeds."""
    fields = [
        "attention",
        "settings",
        "task",
        "n",
        "mean",
        "std",
        "ci_low",
        "ci_high",
        "val_mean",
        "seeds",
        "pathx_failed",
        "step_time_ms",
        "peak_mem_mb",
        "params",
        "params_ratio",
        "vs_vanilla",
        "vs_vanilla_low",
        "vs_vanilla_high",
        "shared_seeds",
    ] + (["published", "diff", "published_source"] if published else [])
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
            iv, (diff, why) = c.interval, table.paired(a, t)
            compared = attention != BASELINE and why in ("", "no shared seeds")
            row = {
                "attention": attention,
                "settings": variant,
                "task": t,
                "n": c.n,
                "mean": c.mean,
                "std": c.std,
                "ci_low": iv.low,
                "ci_high": iv.high,
                "val_mean": statistics.fmean(c.val),
                "seeds": ";".join(map(str, c.seeds)),
                "pathx_failed": table.pathx_failed(a) if t == "pathx" else None,
                "step_time_ms": c.step_ms_median,
                "peak_mem_mb": c.mem_mb_median,
                "params": c.params_median,
                "params_ratio": table.params_ratio(a, t),
                "vs_vanilla": diff.mean if compared and diff else None,
                "vs_vanilla_low": diff.low if compared and diff else None,
                "vs_vanilla_high": diff.high if compared and diff else None,
                "shared_seeds": (diff.n if diff else 0) if compared else None,
            }
            w.writerow(_with_published(row, c.mean, entry.get(t), published, entry.get("source")))
        for name, value in (("avg5", table.avg5(a)), ("avg6", table.avg6(a))):
            if value is not None:
                row = {"attention": attention, "settings": variant, "task": name, "mean": value}
                source = entry.get("avg6_source" if name == "avg6" else "source", entry.get("source"))
                w.writerow(_with_published(row, value, entry.get(name), published, source))
    return buf.getvalue()


def _with_published(row: dict, ours: float, theirs, published: dict | None, source: dict | None) -> dict:
    """The row with published, diff (ours - published) and the published number's source added, floats
    rounded to 6 decimals."""
    if published and theirs is not None:
        row["published"] = theirs
        row["diff"] = ours - theirs if isinstance(theirs, int | float) else None
        row["published_source"] = None if source is None else cite(source)
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def render(table: Table, fmt: str, *, efficiency: bool = False, published: dict | None = None) -> str:
    if fmt == "csv":
        return to_csv(table, published)
    parts = grids(table, efficiency=efficiency, published=published)
    return to_latex(*parts) if fmt == "latex" else to_markdown(*parts)
