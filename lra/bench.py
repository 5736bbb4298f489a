"""``lra-bench``: speed and peak memory of every attention mechanism against sequence length, per phase.

    lra-bench                                                   # configs/bench.yaml's full grid
    lra-bench mechanisms=[vanilla,cast] lengths=[1024,2048] batch=2
    lra-bench grid=tokens tokens=65536 lengths=[1024,4096,16384,65536] phases=[train_step]

The default rows are every registered mechanism (``mechanisms: null``), plus ``vanilla_naive`` and
``floor``, at every length. This module runs the sweep; the parts live beside it:

- lra.bench_plan: the grid (rows, each point's options at its length, the sweep's settings);
- lra.bench_child: one fresh process per point, its results as marked JSON lines, the memory cap;
- lra.bench_point: the layer and model of a point and its timed phases (in the child);
- lra.measure: timing with CUDA sync, peak memory, device names, the row names;
- lra.bench_report: points.csv, table.md, the plots and README.md.

An OOM, an exception, a crash or a timeout is recorded in the point's row (``failed_phase``: the first
phase without numbers; ``phases_done``: those with) and the sweep goes on; with ``skip_longer`` a row
that ran out of memory or time at N is not run at any longer N (status ``skipped``, detail naming the
status and N), also under ``grid=tokens``, where its batch shrinks as N grows.
Outputs in ``out_dir`` (a new ``results/efficiency/<device>-<date>_<time>/`` per run; a folder that
already holds files, e.g. committed results, is refused unless ``overwrite=true``): points.csv,
points.json, table.md, speed.png, memory.png, share.png, README.md (lra.bench_report). Each point
records the 1-minute load average before and after it; the table flags points whose numbers the
machine may have bent.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from lra import bench_report
from lra.bench_child import run_child
from lra.bench_plan import Point, plan, settings
from lra.config import CONFIG_DIR
from lra.errors import DEBUG_FLAG, USER_ERRORS, Reported, debug_requested, run_cli
from lra.measure import device_name, device_slug, load_average

log = logging.getLogger(__name__)
OmegaConf.register_new_resolver("device_slug", device_slug, replace=True)  # configs/bench.yaml's out_dir


def point_row(point: Point) -> dict:
    """The columns that name a point: its row, attention, length, options and where they came from."""
    row = {"row": point.row, "attention": point.attention or "none", "length": point.length}
    row["options"] = json.dumps(point.options, sort_keys=True)
    row.update(options_from=point.options_from, sized_from_length=";".join(point.sized_from_length))
    return {**row, **point.setup}


def run_point(point: Point, setup: dict, *, mem_limit_gb: float | None) -> dict:
    """Measure one point in a fresh process; returns its CSV row (status ok or why not)."""
    row = point_row(point)
    if point.unavailable:
        return {**row, "status": "unavailable", "detail": point.unavailable}
    setup = {**setup, **point.setup}
    kwargs = {"attention": point.attention, "options": point.options, "length": point.length, **setup}
    limit = (point.mem_limit_gb or mem_limit_gb) if setup["device"] == "cpu" else None
    res = run_child("lra.bench_point:measure", kwargs, timeout_s=point.timeout_s, mem_limit_gb=limit)
    for rec in res.records:
        row.update({k: v for k, v in rec.items() if k != "phase"})
    done = [r["phase"] for r in res.records]
    failed = "" if res.status == "ok" else next((p for p in setup["phases"] if p not in done), "")
    row.update(status=res.status, failed_phase=failed, phases_done=";".join(done), detail=res.detail)
    return {**row, "wall_s": round(res.wall_s, 1)}


def sweep(
    points: list[Point], setup: dict, *, mem_limit_gb: float | None, skip_longer: bool = False, on_row=None
) -> list[dict]:
    """Every point in turn under a progress bar; ``on_row(rows)`` after each (to save partial results).

    With ``skip_longer``, once a row runs out of memory or time at N, it is not run at any longer N
    (status ``skipped``): it would only fail later and slower. A row is its name and its own settings
    other than the batch (which ``grid=tokens`` shrinks as N grows, B x N staying constant, so the
    cost of an N x N attention, B N^2, still grows with N).
    """
    from tqdm import tqdm

    rows, failed_at = [], {}  # (row, its own settings) -> (status, length) of its first oom/timeout
    bar = tqdm(points, desc="lra-bench", unit="point", dynamic_ncols=True)
    for point in bar:
        bar.set_postfix_str(f"{point.row} N={point.length}")
        own = {k: v for k, v in point.setup.items() if k != "batch"}
        key = (point.row, json.dumps(own, sort_keys=True))
        if skip_longer and key in failed_at and point.length > failed_at[key][1]:
            status, n = failed_at[key]
            row = {**point_row(point), "status": "skipped", "detail": f"not run: {status} at N={n}"}
        else:
            load_start = load_average()[0]
            row = run_point(point, setup, mem_limit_gb=mem_limit_gb)
            row.update(load_start=load_start, load_end=load_average()[0])
        if row["status"] in ("oom", "timeout"):
            failed_at.setdefault(key, (row["status"], point.length))
        rows.append(row)
        if row["status"] == "ok":
            msg = ", ".join(f"{p} {row[f'{p}_median_ms']:.1f} ms" for p in setup["phases"])
        else:
            msg = f"{row['status']} {row.get('detail', '')}"
        bar.write(f"{point.row:>20s} N={point.length:<6d} {msg}")
        if on_row:
            on_row(rows)
    return rows


class OutDirTaken(ValueError):
    """``out_dir`` already holds files and ``overwrite`` is off."""


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds files (naming those tracked by git) unless ``overwrite``."""
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not present or overwrite:
        return
    try:
        listed = subprocess.run(["git", "-C", str(out), "ls-files", "."], capture_output=True, text=True, check=True)
        tracked = sorted({Path(line).parts[0] for line in listed.stdout.splitlines() if line})
    except (OSError, subprocess.CalledProcessError):  # no git, or not in a repository
        tracked = []
    names = tracked or present
    shown = ", ".join(names[:4]) + (f", +{len(names) - 4} more" if len(names) > 4 else "")
    what = f"results committed to git ({shown})" if tracked else f"files of an earlier run or by hand ({shown})"
    raise OutDirTaken(
        f"{out} already holds {what}; leave out_dir out for a new folder per run, or add overwrite=true to write"
        " over them"
    )


def run(cfg: DictConfig, command: str = "lra-bench", points: list[Point] | None = None) -> list[dict]:
    """Plan (or take) the points, sweep them, write every output into ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    check_out_dir(out, bool(cfg.overwrite))  # before anything is measured or written
    import torch

    setup = settings(cfg)
    points = plan(cfg) if points is None else points
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "device_name": device_name(setup["device"]),
        "torch": torch.__version__,
        "dtype": setup["dtype"],
        "batch": setup["batch"],
        "grid": cfg.grid,
        "tokens": int(cfg.tokens) if cfg.grid == "tokens" else "",
        "phases": ";".join(setup["phases"]),
        "threads": setup["threads"] or "default",
        "warmup": setup["warmup"],
        "repeats": setup["repeats"],
        **{k: setup["model"][k] for k in ("n_layers", "d_model", "n_heads", "d_mlp")},
    }
    info = {
        "command": command,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_before": load_average(),
        "device": setup["device"],
        "cfg": cfg,
        "meta": meta,
    }
    log.info("%d points on %s, batch %d, %s; results in %s", len(points), meta["device_name"], setup["batch"],
             setup["dtype"], out)  # fmt: skip

    def save(rows):
        bench_report.write_csv(out / "points.csv", [{**meta, "timeout_s": cfg.timeout_s, **r} for r in rows])

    t0 = time.perf_counter()
    rows = sweep(points, setup, mem_limit_gb=cfg.cpu_mem_limit_gb, skip_longer=cfg.skip_longer, on_row=save)
    info.update(wall_s=time.perf_counter() - t0, load_after=load_average())
    bench_report.write_all(out, rows, lengths=[int(n) for n in cfg.lengths], info=info)
    for reason in bench_report.flags(rows)[0]:
        log.warning("flagged (marked ! in %s): %s", out / "table.md", reason)
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    launcher = "lra-bench" if Path(sys.argv[0]).name == "lra-bench" else "python -m lra.bench"
    try:
        run(cfg, command=" ".join([launcher, *HydraConfig.get().overrides.task]))
    except USER_ERRORS as e:  # past Hydra's job runner, which would print a header line, to run_cli
        raise Reported(e) from e


def main() -> None:
    """The ``lra-bench`` command: Hydra's, with user errors (a taken out_dir, a bad per_length or dtype) as
    one line and exit status 2; ``--debug`` shows their traceback."""
    argv = sys.argv[1:]
    debug = debug_requested(argv)
    sys.argv = [sys.argv[0], *(a for a in argv if a != DEBUG_FLAG)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises every error; run_cli decides what is shown
    sys.exit(run_cli("lra-bench", _hydra_main, debug=debug))


if __name__ == "__main__":
    main()
