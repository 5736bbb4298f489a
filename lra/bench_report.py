"""The outputs of ``lra-bench``: points.csv, table.md (LRA Table 2 style), speed.png, memory.png, README.md.

Everything here works on the benchmark's row dicts (one per attention row and length, as in
points.csv); a row whose ``status`` is not ``ok`` shows its status in the tables and is left out
of the plots (lra.bench_plot). The numbers the tables show are derived in lra.bench_numbers. Relative
columns divide by the ``vanilla`` (SDPA) row at the same length; without an ``ok`` vanilla point there
they read "-".
"""

from __future__ import annotations

import csv
import platform
from pathlib import Path

from lra.atomic import write_atomic, write_text_atomic
from lra.bench_numbers import attention_cost, flags, index, label, load_value, ok_value, relative, row_order, slope
from lra.bench_plot import plot

FIRST_COLUMNS = ("row", "attention", "length", "status", "failed_phase", "detail", "options")


def write_csv(path: Path, rows: list[dict]) -> None:
    """All rows, every key as a column (identifying columns first), written via a temporary file."""
    present = {k for r in rows for k in r}
    keys = [k for k in FIRST_COLUMNS if k in present] + sorted(present - set(FIRST_COLUMNS))

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    write_atomic(path, write, needed=100 * len(rows) * len(keys), text=True)


def read_csv(path: Path) -> list[dict]:
    """points.csv back as dicts, numbers as floats where they parse."""

    def num(v: str):
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: num(v) for k, v in r.items()} for r in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------
# table.md
# ---------------------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _times(rel: float | None) -> str:
    return "-" if rel is None else f"{rel:.2f}x"


def _grid(names: list[str], lengths: list[int], cell) -> list[str]:
    lines = ["| attention | " + " | ".join(label(n) for n in lengths) + " |"]
    lines.append("|---|" + "---:|" * len(lengths))
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(name, n) for n in lengths) + " |")
    return lines


def _status_or(idx: dict, name: str, n: int, key: str, text) -> str:
    """``text()`` where (name, n) has ``key``, else the point's status ("-" for no point)."""
    if ok_value(idx, name, n, key) is not None:
        return text()
    r = idx.get((name, n))
    return "-" if r is None else str(r["status"])


def build_table(rows: list[dict], lengths: list[int], *, slope_from: int | None = None) -> str:
    """The markdown tables (no header about the machine): speed, memory, attention cost, scaling."""
    idx, names = index(rows), row_order(rows)
    reasons, flagged = flags(rows)

    def mark(name: str, n: int, phase: str | None, text: str) -> str:
        """A timing cell with ``!`` where a flag concerns it (memory cells are never marked)."""
        numeric = text not in ("-", str(idx.get((name, n), {}).get("status")))
        return f"{text} !" if numeric and (name, n, phase) in flagged else text

    def with_rel(key: str, spec: str):
        phase = None if "mem" in key else key.split("_")[0]

        def cell(name: str, n: int) -> str:
            def text():
                return f"{ok_value(idx, name, n, key):{spec}} ({_times(relative(idx, name, n, key))})"

            return mark(name, n, phase, _status_or(idx, name, n, key, text))

        return cell

    def cost(name: str, n: int) -> str:
        text = _status_or(idx, name, n, "train_median_ms", lambda: _fmt(attention_cost(idx, name, n), ".2f"))
        return mark(name, n, "train", text)

    out = ["### Training speed: steps per second (x vanilla SDPA at the same length)", ""]
    out += _grid(names, lengths, with_rel("train_steps_per_s", ".3g"))
    out += ["", "### Peak memory, training step: MB (x vanilla SDPA at the same length)", ""]
    out += _grid(names, lengths, with_rel("train_peak_mem_mb", ".0f"))
    out += ["", "### Attention cost: (step - floor) / (vanilla SDPA step - floor)", ""]
    out += ["Training step time; floor = the same encoder with the attention replaced by the identity.", ""]
    out += _grid(names, lengths, cost)
    out += ["", "### Inference: forwards per second (x vanilla SDPA at the same length)", ""]
    out += _grid(names, lengths, with_rel("infer_forwards_per_s", ".3g"))
    out += ["", "### Peak memory, inference: MB (x vanilla SDPA at the same length)", ""]
    out += _grid(names, lengths, with_rel("infer_peak_mem_mb", ".0f"))
    fit = [n for n in lengths if slope_from is None or n >= slope_from]
    fit = fit if len(fit) >= 2 else lengths
    span = ", ".join(label(n) for n in fit)
    out += ["", f"### Scaling: log-log slope against N over {span} (1 = linear, 2 = quadratic; failures left out)", ""]
    out += ["| attention | training step time | training memory | inference time | inference memory |"]
    out += ["|---|---:|---:|---:|---:|"]
    for name in names:
        keys = ("train_median_ms", "train_peak_mem_mb", "infer_median_ms", "infer_peak_mem_mb")
        out.append(f"| {name} | " + " | ".join(_fmt(slope(idx, name, fit, k), ".2f") for k in keys) + " |")
    out += ["", "A cell that is not a number is the point's status: oom, timeout, error, crash, or skipped (not"]
    out += ["run after an oom or timeout at a shorter length); inference runs first, so a point that failed in"]
    out += ["training still has its inference numbers. Relative values need vanilla at the same length."]
    missing = sorted({f"{r['row']} ({r.get('detail', '')})" for r in rows if r.get("status") == "unavailable"})
    if missing:
        out += ["", "Not measured: " + "; ".join(missing) + "."]
    out += ["", "### Flags", ""]
    if reasons:
        out += ["A timing marked ! may be wrong (a busy machine or noise); measure it again.", ""]
        out += [f"- {r}" for r in reasons]
    else:
        load = "" if any(load_value(r, "load_start") is not None for r in rows) else " (no load average recorded)"
        out += [f"None: the floor is the fastest row and no attention share is negative at every length{load}."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------
def _header(m: dict) -> list[str]:
    return [
        f"Device: {m['device_name']}{_threads(m)}; torch {m['torch']}; {m['dtype']}; batch {m['batch']:g}; "
        f"{m['warmup']:g} warm-up + {m['repeats']:g} timed calls per phase (median shown, all in points.csv).",
        f"Model: LRA Text encoder, {m['n_layers']:g} layers, d_model {m['d_model']:g}, {m['n_heads']:g} heads, "
        f"MLP {m['d_mlp']:g}. Machine, date and command: README.md.",
        "",
    ]


def _threads(meta: dict) -> str:
    t = meta.get("threads")
    return "" if t in (None, "", "default") else f", {int(t)} torch thread{'s' * (int(t) > 1)}"


def write_readme(out: Path, info: dict, reasons: list[str] | None = None) -> None:
    cfg, m = info["cfg"], info["meta"]
    load = lambda la: " / ".join(f"{x:.2f}" for x in la)  # noqa: E731
    per_length = {k: dict(v) for k, v in (cfg.per_length or {}).items()}
    text = [
        f"# Efficiency benchmark on {m['device_name']}",
        "",
        "Produced by (from the repository root):",
        "",
        f"    {info['command']}",
        "",
        f"- Date: {info['started']}; the sweep took {info['wall_s'] / 60:.1f} min.",
        f"- Machine: {m['device_name']}{_threads(m)}, {platform.system()} {platform.machine()}; torch {m['torch']}.",
        f"- Load average (1/5/15 min) before: {load(info['load_before'])}; after: {load(info['load_after'])}.",
        f"- Protocol: LRA Text encoder ({m['n_layers']} layers, d_model {m['d_model']}, {m['n_heads']} heads, "
        f"MLP {m['d_mlp']}, vocabulary {cfg.vocab_size}), batch {m['batch']}, {m['dtype']}, attention dropout "
        f"{cfg.model.attn_dropout}, {m['warmup']} warm-up + {m['repeats']} timed calls per phase, "
        f"timeout {cfg.timeout_s:g} s per point"
        + (f", CPU memory cap {cfg.cpu_mem_limit_gb:g} GB per point" if info["device"] == "cpu" else "")
        + ".",
        f"- Per-length options: {per_length or 'none'}.",
        "- Peak memory: "
        + (
            "CUDA max_memory_allocated after a reset (weights and optimizer state included)."
            if info["device"].startswith("cuda")
            else "the point's process peak resident set during the phase (high-water mark reset before it) "
            "minus its resident set before the model and inputs were built, taken after one step of a tiny "
            "model (so weights, gradients, optimizer state and activations count; the torch libraries and "
            "their lazily initialised state do not)."
        ),
        f"- Flags: {len(reasons or [])}" + "".join(f"\n  - {r}" for r in reasons or []),
        "",
        "Files: `points.csv` (every raw number and status), `table.md`, `speed.png`, `memory.png`.",
    ]
    write_text_atomic(out / "README.md", "\n".join(text) + "\n")


def write_table_and_plots(out: Path, rows: list[dict], *, lengths: list[int], meta: dict, slope_from: int) -> None:
    """table.md, speed.png and memory.png in ``out`` from the rows (``meta``: the columns every row shares)."""
    table = build_table(rows, lengths, slope_from=slope_from)
    write_text_atomic(
        out / "table.md", "\n".join(["# Speed and memory against sequence length", "", *_header(meta), table])
    )
    title = f"{meta['device_name']}{_threads(meta)}, batch {meta['batch']:g}, {meta['dtype']}"
    plot(
        rows,
        out / "speed.png",
        [("train_median_ms", "training step (ms)"), ("infer_median_ms", "inference forward (ms)")],
        title,
    )  # noqa: E501
    plot(
        rows,
        out / "memory.png",
        [("train_peak_mem_mb", "peak memory, training (MB)"), ("infer_peak_mem_mb", "peak memory, inference (MB)")],
        title,
    )  # noqa: E501


def write_all(out: Path, rows: list[dict], *, lengths: list[int], info: dict) -> None:
    """points.csv is written as the sweep goes; this writes table.md, the two plots and README.md."""
    write_table_and_plots(out, rows, lengths=lengths, meta=info["meta"], slope_from=info["cfg"].slope_from)
    write_readme(out, info, flags(rows)[0])


def main(argv: list[str] | None = None) -> None:
    """Rebuild table.md and the plots of a results folder from its points.csv (README.md is kept)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("folder", type=Path, help="an lra-bench out_dir holding points.csv")
    p.add_argument("--slope-from", type=int, default=4096, help="fit log-log slopes over lengths >= this")
    a = p.parse_args(argv)
    rows = read_csv(a.folder / "points.csv")
    meta = {k: rows[0][k] for k in ("device_name", "threads", "torch", "dtype", "batch", "warmup", "repeats",
                                     "n_layers", "d_model", "n_heads", "d_mlp")}  # fmt: skip
    lengths = sorted({int(r["length"]) for r in rows})
    write_table_and_plots(a.folder, rows, lengths=lengths, meta=meta, slope_from=a.slope_from)


if __name__ == "__main__":
    main()
