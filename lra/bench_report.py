"""The outputs of ``lra-bench``: points.csv, points.json, table.md, speed.png, memory.png, share.png, README.md.

Everything here works on the benchmark's row dicts (one per attention row and length, as in
points.csv; points.json holds the same rows); a row whose ``status`` is not ``ok`` shows its status
in the tables and is left out of the plots (lra.bench_plot). The numbers the tables show are derived
in lra.bench_numbers. table.md shows the efficiency lengths first; then per phase (lra.measure.PHASES)
median [p20, p80] ms, tokens/s and peak memory (and CUDA's reserved memory), each with its ratio to
the ``vanilla`` (SDPA) row at the same length ("-" without an ``ok`` vanilla point there); then the
training step's attention cost and share above the floor, log-log slopes and the flags.

Format change: points.csv before the phases (columns ``train_*`` and ``infer_*``, memory
``*_peak_mem_mb``) reads as ``train_step_*`` and ``inference_*`` (``*_mem_mb``), p20 and p80 computed
from the recorded ``*_times_ms`` (``read_csv``), so ``python -m lra.bench_report <folder>`` rebuilds
an older folder's table and plots in today's format.
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

from lra.atomic import write_atomic, write_text_atomic
from lra.bench_numbers import (
    PHASE_NAMES,
    attention_cost,
    efficiency_text,
    flags,
    index,
    label,
    load_value,
    ok_value,
    relative,
    row_order,
    share_above_floor,
    slope,
)
from lra.bench_plot import plot, plot_share
from lra.measure import BASELINE, FLOOR, PHASES, percentile

FIRST_COLUMNS = ("row", "attention", "length", "status", "failed_phase", "phases_done", "detail", "options")
OLD_PHASES = {"train": "train_step", "infer": "inference"}  # points.csv before the phases


def write_csv(path: Path, rows: list[dict]) -> None:
    """All rows, every key as a column (identifying columns first), written via a temporary file."""
    present = {k for r in rows for k in r}
    keys = [k for k in FIRST_COLUMNS if k in present] + sorted(present - set(FIRST_COLUMNS))

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    write_atomic(path, write, needed=100 * len(rows) * len(keys), text=True)


def write_json(path: Path, rows: list[dict]) -> None:
    """The same rows as points.csv, as a JSON list (numbers stay numbers)."""
    write_text_atomic(path, json.dumps(rows, indent=1, default=str) + "\n")


def upgrade(r: dict) -> dict:
    """A points.csv row from before the phases in today's columns (``train_*`` -> ``train_step_*``,
    ``infer_*`` -> ``inference_*``, ``*_peak_mem_mb`` -> ``*_mem_mb``, p20/p80 from ``*_times_ms``)."""
    if "phases_done" in r:
        return r
    out = {}
    for k, v in r.items():
        old = k.split("_", 1)[0]
        if old in OLD_PHASES and k not in ("train_steps_per_s", "infer_forwards_per_s"):
            k = OLD_PHASES[old] + k[len(old) :]
        out[k.replace("_peak_mem_mb", "_mem_mb")] = v
    failed = OLD_PHASES.get(str(r.get("failed_phase", "")), "")
    out["failed_phase"] = failed
    out["phases_done"] = "inference" if failed == "train_step" else ""
    for phase in OLD_PHASES.values():
        times = str(out.get(f"{phase}_times_ms", ""))
        ms = [float(t) for t in times.split(";") if t]
        if ms:
            out.update({f"{phase}_p20_ms": percentile(ms, 20), f"{phase}_p80_ms": percentile(ms, 80)})
    return out


def read_csv(path: Path) -> list[dict]:
    """points.csv back as dicts, numbers as floats where they parse; older folders upgraded."""

    def num(v: str):
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [upgrade({k: num(v) for k, v in r.items()}) for r in csv.DictReader(f)]


def phases_in(rows: list[dict]) -> list[str]:
    """The phases some row has a median for, in PHASES order."""
    return [p for p in PHASES if any(r.get(f"{p}_median_ms") not in (None, "") for r in rows)]


# ---------------------------------------------------------------------------------------------
# table.md
# ---------------------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _ms(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _mb(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def _times(rel: float | None) -> str:
    return "-" if rel is None else f"{rel:.2f}x"


def _grid(names: list[str], columns: list[str], cell) -> list[str]:
    lines = ["| attention | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    return lines + [f"| {name} | " + " | ".join(cell(name, i) for i in range(len(columns))) + " |" for name in names]


def _status_or(idx: dict, name: str, n: int, key: str, text) -> str:
    """``text()`` where (name, n) has ``key``, else the point's status ("-" for no point)."""
    if ok_value(idx, name, n, key) is not None:
        return text()
    r = idx.get((name, n))
    return "-" if r is None else str(r["status"])


def build_table(rows: list[dict], lengths: list[int], *, slope_from: int | None = None) -> str:
    """The markdown tables (no header about the machine): per phase time, tokens/s and memory; the
    efficiency lengths; the training step's attention cost and share above the floor; slopes; flags."""
    idx, names, phases = index(rows), row_order(rows), phases_in(rows)
    reasons, flagged = flags(rows)
    cols = [label(n) for n in lengths]

    def mark(name: str, n: int, phase: str | None, text: str) -> str:
        """A timing cell with ``!`` where a flag concerns it (memory cells are never marked)."""
        numeric = text not in ("-", str(idx.get((name, n), {}).get("status")))
        return f"{text} !" if numeric and (name, n, phase) in flagged else text

    def with_rel(key: str, fmt, phase: str | None, spread: str = ""):
        def cell(name: str, i: int) -> str:
            n = lengths[i]

            def text():
                v = fmt(ok_value(idx, name, n, key))
                if spread:
                    lo, hi = (ok_value(idx, name, n, f"{spread}_{q}_ms") for q in ("p20", "p80"))
                    v += f" [{_ms(lo)}, {_ms(hi)}]" if lo is not None and hi is not None else ""
                return f"{v} ({_times(relative(idx, name, n, key))})"

            return mark(name, n, phase, _status_or(idx, name, n, key, text))

        return cell

    def per_n(fn, digits: str = ".2f"):
        def cell(name: str, i: int) -> str:
            n = lengths[i]
            text = _status_or(idx, name, n, "train_step_median_ms", lambda: _fmt(fn(idx, name, n), digits))
            return mark(name, n, "train_step", text)

        return cell

    mechanisms = [m for m in names if m not in (BASELINE, FLOOR)]
    out = ["### Efficiency length: the shortest N from which it beats vanilla SDPA at every longer N", ""]
    out += ["Measured lengths only; vanilla out of memory or time there counts as slower (lra/bench_numbers.py).", ""]
    out += _grid(mechanisms, [f"{PHASE_NAMES[p]} (`{p}`)" for p in phases],
                 lambda m, i: efficiency_text(idx, m, lengths, phases[i]))  # fmt: skip
    for p in phases:
        what = PHASE_NAMES[p].capitalize() + f" (`{p}`)"
        out += ["", f"### {what}: median [p20, p80] ms (x vanilla SDPA at the same length)", ""]
        out += _grid(names, cols, with_rel(f"{p}_median_ms", _ms, p, spread=p))
        out += ["", f"### {what}: tokens/s (x vanilla SDPA at the same length)", ""]
        out += _grid(names, cols, with_rel(f"{p}_tokens_per_s", lambda v: f"{v:.0f}", p))
        out += ["", f"### {what}: peak memory, MB (x vanilla SDPA at the same length)", ""]
        out += _grid(names, cols, with_rel(f"{p}_mem_mb", _mb, None))
        if any(r.get(f"{p}_reserved_mb") not in (None, "") for r in rows):
            out += ["", f"### {what}: peak memory reserved by the CUDA allocator, MB (x vanilla SDPA)", ""]
            out += _grid(names, cols, with_rel(f"{p}_reserved_mb", _mb, None))
    if "train_step" in phases:
        out += ["", "### Attention cost: (step - floor) / (vanilla SDPA step - floor)", ""]
        out += ["Training step time; floor = the same encoder with the attention replaced by the identity.", ""]
        out += _grid(names, cols, per_n(attention_cost))
        out += ["", "### Share of the training step above the floor: (step - floor) / step (share.png)", ""]
        out += _grid([m for m in names if m != FLOOR], cols, per_n(share_above_floor))
    fit = [n for n in lengths if slope_from is None or n >= slope_from]
    fit = fit if len(fit) >= 2 else lengths
    span = ", ".join(label(n) for n in fit)
    out += ["", f"### Scaling: log-log slope against N over {span} (1 = linear, 2 = quadratic; failures left out)", ""]
    keys = [k for p in phases for k in (f"{p}_median_ms", f"{p}_mem_mb")]
    heads = [f"{p} {what}" for p in phases for what in ("time", "memory")]
    out += _grid(names, heads, lambda name, i: _fmt(slope(idx, name, fit, keys[i]), ".2f"))
    out += ["", "A cell that is not a number is the point's status: oom, timeout, error, crash, or skipped (not"]
    out += ["run after an oom or timeout at a shorter length); the phases run in the order above, so a point"]
    out += ["that failed in a later phase keeps the earlier ones. Relative values need vanilla at the same length."]
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
def _batch(m: dict) -> str:
    """``batch 1``, or under ``grid=tokens`` ``batch x N = 16384 tokens``."""
    if m.get("grid") == "tokens":
        return f"batch x N = {int(m['tokens'])} tokens (batch = {int(m['tokens'])} // N)"
    return f"batch {m['batch']:g}"


def _header(m: dict) -> list[str]:
    return [
        f"Device: {m['device_name']}{_threads(m)}; torch {m['torch']}; {m['dtype']}; {_batch(m)}; "
        f"{m['warmup']:g} warm-up + {m['repeats']:g} timed calls per phase (median [p20, p80] shown, all in"
        " points.csv).",
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
        f"MLP {m['d_mlp']}, vocabulary {cfg.vocab_size}), {_batch(m)}, {m['dtype']}, attention dropout "
        f"{cfg.model.attn_dropout}, {m['warmup']} warm-up + {m['repeats']} timed calls per phase, "
        f"phases {', '.join(str(m['phases']).split(';'))}, timeout {cfg.timeout_s:g} s per point"
        + (f", CPU memory cap {cfg.cpu_mem_limit_gb:g} GB per point" if info["device"] == "cpu" else "")
        + ".",
        f"- Per-length options: {per_length or 'none'}.",
        "- Peak memory: "
        + (
            "CUDA max_memory_allocated (and max_memory_reserved, the `_reserved_mb` columns) after a reset"
            " before each phase (weights and optimizer state included)."
            if info["device"].startswith("cuda")
            else "the point's process peak resident set during the phase (high-water mark reset before it) "
            "minus its resident set before the measured objects (the layer and its input for the op phases, the "
            "model and inputs for the encoder's) were built, the first taken after one step of a tiny model (so "
            "weights, gradients, optimizer state and activations count; the torch libraries and their lazily "
            "initialised state do not)."
        ),
        f"- Flags: {len(reasons or [])}" + "".join(f"\n  - {r}" for r in reasons or []),
        "",
        "Files: `points.csv` and `points.json` (every raw number and status), `table.md`, `speed.png`,"
        " `memory.png`, `share.png`.",
    ]
    write_text_atomic(out / "README.md", "\n".join(text) + "\n")


def write_table_and_plots(out: Path, rows: list[dict], *, lengths: list[int], meta: dict, slope_from: int) -> None:
    """table.md, speed.png, memory.png and share.png in ``out`` (``meta``: the columns every row shares)."""
    table = build_table(rows, lengths, slope_from=slope_from)
    write_text_atomic(
        out / "table.md", "\n".join(["# Speed and memory against sequence length", "", *_header(meta), table])
    )
    title = f"{meta['device_name']}{_threads(meta)}, {_batch(meta)}, {meta['dtype']}"
    phases = phases_in(rows) or ["train_step"]
    plot(rows, out / "speed.png", [(f"{p}_median_ms", f"{PHASE_NAMES[p]} (ms)") for p in phases], title)
    plot(rows, out / "memory.png", [(f"{p}_mem_mb", f"peak memory, {PHASE_NAMES[p]} (MB)") for p in phases], title)
    plot_share(rows, out / "share.png", title)


def write_all(out: Path, rows: list[dict], *, lengths: list[int], info: dict) -> None:
    """points.csv is written as the sweep goes; this writes points.json, table.md, the plots and README.md."""
    write_json(out / "points.json", rows)
    write_table_and_plots(out, rows, lengths=lengths, meta=info["meta"], slope_from=info["cfg"].slope_from)
    write_readme(out, info, flags(rows)[0])


def main(argv: list[str] | None = None) -> None:
    """Rebuild table.md and the plots of a results folder from its points.csv (README.md is kept; a
    points.csv from before the phases is read in today's columns, ``upgrade``)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("folder", type=Path, help="an lra-bench out_dir holding points.csv")
    p.add_argument("--slope-from", type=int, default=4096, help="fit log-log slopes over lengths >= this")
    a = p.parse_args(argv)
    rows = read_csv(a.folder / "points.csv")
    keys = ("device_name", "threads", "torch", "dtype", "batch", "grid", "tokens", "phases", "warmup", "repeats",
            "n_layers", "d_model", "n_heads", "d_mlp")  # fmt: skip
    meta = {k: rows[0].get(k, "") for k in keys}
    lengths = sorted({int(r["length"]) for r in rows})
    write_table_and_plots(a.folder, rows, lengths=lengths, meta=meta, slope_from=a.slope_from)


if __name__ == "__main__":
    main()
