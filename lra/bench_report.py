"""The outputs of ``lra-bench``: points.csv, table.md (LRA Table 2 style), speed.png, memory.png, README.md.

Everything here works on the benchmark's row dicts (one per attention row and length, as in
points.csv); a row whose ``status`` is not ``ok`` shows its status in the tables and is left out
of the plots. Relative columns divide by the ``vanilla`` (SDPA) row at the same length; without
an ``ok`` vanilla point there they read "-".
"""

from __future__ import annotations

import csv
import math
import platform
from pathlib import Path

from lra.atomic import write_atomic, write_text_atomic
from lra.bench import BASELINE, FLOOR, NAIVE

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
# Numbers derived from the rows
# ---------------------------------------------------------------------------------------------
def index(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["row"], int(r["length"])): r for r in rows}


def ok_value(idx: dict, row: str, n: int, key: str) -> float | None:
    """``key`` of the (row, n) point if its phase succeeded, else None. Inference runs first, so a
    point that failed in training (``failed_phase`` train) still has valid ``infer_*`` numbers."""
    r = idx.get((row, n))
    if r is None or r.get(key) in (None, ""):
        return None
    done = r.get("status") == "ok" or (key.startswith("infer_") and r.get("failed_phase") == "train")
    return float(r[key]) if done else None


def relative(idx: dict, row: str, n: int, key: str) -> float | None:
    """(row, n)'s ``key`` divided by vanilla SDPA's at the same n; None if either is missing."""
    v, base = ok_value(idx, row, n, key), ok_value(idx, BASELINE, n, key)
    return None if v is None or not base else v / base


def attention_cost(idx: dict, row: str, n: int, key: str = "train_median_ms") -> float | None:
    """(t - t_floor) / (t_vanilla - t_floor) at the same n: the share of vanilla's attention time kept."""
    t, floor, van = (ok_value(idx, r, n, key) for r in (row, FLOOR, BASELINE))
    if t is None or floor is None or van is None or van == floor:
        return None
    return (t - floor) / (van - floor)


def slope(idx: dict, row: str, lengths: list[int], key: str) -> float | None:
    """Least-squares slope of log(key) against log(N) over ``lengths`` (None with fewer than 2 points)."""
    pts = [(math.log(n), math.log(v)) for n in lengths if (v := ok_value(idx, row, n, key)) and v > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


LOAD_MOVED = 1.0  # a 1-minute load average that moves by more than this during a point or the sweep is flagged


def _load(r: dict, key: str) -> float | None:
    v = r.get(key)
    return float(v) if isinstance(v, int | float) else None


def flags(rows: list[dict]) -> tuple[list[str], set[tuple[str, int, str]]]:
    """Why some timings may be wrong, and the (row, N, phase) they concern (phase ``train`` or
    ``infer``): a floor (no attention at all) slower than a row with attention, a negative or
    meaningless attention share, a 1-minute load average that moved by more than ``LOAD_MOVED``
    during a point or the whole sweep."""
    idx, names, reasons, points = index(rows), row_order(rows), [], set()
    for n in sorted({int(r["length"]) for r in rows}):
        for key, phase in (("train_median_ms", "train"), ("infer_median_ms", "infer")):
            floor = ok_value(idx, FLOOR, n, key)
            faster = [(m, t) for m in names if m != FLOOR and (t := ok_value(idx, m, n, key)) is not None]
            faster = [(m, t) for m, t in faster if floor is not None and t < floor]
            if faster:
                than = ", ".join(f"{m} ({t:.1f} ms)" for m, t in faster)
                what = "training step" if phase == "train" else "inference forward"
                reasons.append(f"N={_label(n)}: the floor's {what} ({floor:.1f} ms) is slower than {than}")
                points |= {(FLOOR, n, phase), *((m, n, phase) for m, _ in faster)}
        van, floor = (ok_value(idx, r, n, "train_median_ms") for r in (BASELINE, FLOOR))
        if van is not None and floor is not None and van <= floor:
            reasons.append(f"N={_label(n)}: vanilla is not slower than the floor, so no attention share is meaningful")
            points |= {(m, n, "train") for m in names if ok_value(idx, m, n, "train_median_ms") is not None}
        negative = [m for m in names if (c := attention_cost(idx, m, n)) is not None and c < 0]
        if negative:
            reasons.append(f"N={_label(n)}: negative attention share for {', '.join(negative)}")
            points |= {(m, n, "train") for m in negative}
    loads = [(r, _load(r, "load_start"), _load(r, "load_end")) for r in rows]
    loads = [(r, a, b) for r, a, b in loads if a is not None and b is not None]
    moved = [(r, a, b) for r, a, b in loads if abs(b - a) > LOAD_MOVED]
    if moved:
        shown = ", ".join(f"{r['row']} N={_label(int(r['length']))} ({a:.2f} -> {b:.2f})" for r, a, b in moved)
        reasons.append(f"the 1-minute load average moved by more than {LOAD_MOVED:g} while these points ran: {shown}")
        points |= {(r["row"], int(r["length"]), phase) for r, _, _ in moved for phase in ("train", "infer")}
    if loads and abs(loads[-1][2] - loads[0][1]) > LOAD_MOVED:
        reasons.append(
            f"the 1-minute load average moved from {loads[0][1]:.2f} to {loads[-1][2]:.2f} during the sweep (it"
            " includes the sweep's own process): points measured at different loads compare less well"
        )
    return reasons, points


def row_order(rows: list[dict]) -> list[str]:
    """vanilla, vanilla_naive, the other mechanisms in sweep order, floor last; unavailable rows dropped."""
    seen = list(dict.fromkeys(r["row"] for r in rows if r.get("status") != "unavailable"))
    head = [r for r in (BASELINE, NAIVE) if r in seen]
    return head + [r for r in seen if r not in (BASELINE, NAIVE, FLOOR)] + ([FLOOR] if FLOOR in seen else [])


# ---------------------------------------------------------------------------------------------
# table.md
# ---------------------------------------------------------------------------------------------
def _label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _times(rel: float | None) -> str:
    return "-" if rel is None else f"{rel:.2f}x"


def _grid(names: list[str], lengths: list[int], cell) -> list[str]:
    lines = ["| attention | " + " | ".join(_label(n) for n in lengths) + " |"]
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
    span = ", ".join(_label(n) for n in fit)
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
        load = "" if any(_load(r, "load_start") is not None for r in rows) else " (no load average recorded)"
        out += [f"None: the floor is the fastest row and no attention share is negative at every length{load}."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# speed.png, memory.png
# ---------------------------------------------------------------------------------------------
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
        ax.set_xticks(lengths, [_label(n) for n in lengths])
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
