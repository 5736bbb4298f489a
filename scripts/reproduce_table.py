"""Reproduce a results table: the grid of runs as ``lra-train -m`` sweeps, then ``lra-table``.

    python scripts/reproduce_table.py lra --print             # the commands only, nothing runs
    python scripts/reproduce_table.py mini                    # mini LRA on this machine
    python scripts/reproduce_table.py mini --spt              # ... from scratch and with masked self-pretraining
    python scripts/reproduce_table.py lra --launcher slurm --seeds 0,1,2 trainer=gpu hydra.launcher.partition=gpu

TABLE is ``lra`` (``experiment=lra/<task>``: the LRA reference settings) or ``mini``
(``experiment=mini/<task>``: short sequences, a tiny model and small generated or fixture-sized
data, for a CPU). Each registered task (``lra.data.registry``, in the table's column order, so a
new task joins by itself) gets one sweep over every registered attention mechanism
(``models.attention.available()``) and the seeds, into
``OUT/<task>``; then ``lra-table`` writes ``results/tables/<table>-<device>.md``. A task whose
preset is not written yet, or whose data are not prepared, is reported (with the command that
prepares it) and skipped; a sweep that fails is reported and the others go on. Trailing
``key=value`` arguments are added to every sweep. ``--spt`` sweeps ``spt=none,masked`` too (lra/spt.py:
each preset with its own pretraining budget, ``spt.steps`` = the preset's steps; add
``spt.compute_tied=true`` to split the preset's steps between the stages instead); the table shows the
SPT runs as rows of their own (``vanilla (SPT masked)``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout: this repository's lra and models, not an installed copy

from omegaconf import OmegaConf  # noqa: E402

from lra import table as lra_table  # noqa: E402
from lra.config import compose_config  # noqa: E402
from lra.data.prepared import prepared_dir, read_manifest  # noqa: E402
from lra.data.tasks import TASK_NAMES, TASKS, prepare_command  # noqa: E402
from models.attention import available  # noqa: E402

TABLES = ("lra", "mini")
LAUNCHERS = {"basic": [], "slurm": ["hydra/launcher=slurm"]}


def sweep_command(
    table: str,
    task: str,
    attentions: list[str],
    seeds: str,
    sweep_dir: Path,
    launcher: str = "basic",
    extra: list[str] | None = None,
    spt: bool = False,
) -> list[str]:
    """One task's sweep over every attention and seed (and with ``spt`` both protocols, from scratch
    and with masked self-pretraining), as an ``lra-train -m`` command line."""
    return [
        "lra-train",
        "-m",
        f"experiment={table}/{task}",
        f"attention={','.join(attentions)}",
        f"seed={seeds}",
        *(["spt=none,masked"] if spt else []),
        *LAUNCHERS[launcher],
        f"hydra.sweep.dir={sweep_dir}",
        *(extra or []),
    ]


def skip_reason(table: str, task: str, extra: list[str]) -> str | None:
    """Why this task cannot run here yet (no preset, no data preparation, data not prepared), or None."""
    preset = REPO / "configs" / "experiment" / table / f"{task}.yaml"
    if not preset.is_file():
        return f"no preset {preset.relative_to(REPO)} yet"
    overrides = [f"experiment={table}/{task}", *extra]
    try:
        cfg = compose_config(overrides)
    except Exception as e:  # a task config that has not landed yet, a bad override, ...
        return f"its config does not compose ({type(e).__name__}: {e})"
    t = OmegaConf.to_container(cfg.task, resolve=True)
    spec = TASKS.get(t["name"])
    if spec is None:
        return f"task '{t['name']}' has no data preparation in lra.data.tasks yet"
    folder = prepared_dir(cfg.paths.data_dir, t["name"], t["profile"])
    if read_manifest(folder) is None and t["source"] != spec.generated_source:
        return f"no prepared data at {folder}; prepare it once with:\n    {prepare_command(t, overrides)}"
    return None


MINI_NOTE = (
    "A pipeline check on generated and synthetic data, not a comparison with the papers. ListOps and"
    " Pathfinder / Path-X come from our generators at reduced size, Text, Retrieval and Image from"
    " lra/data/synthetic.py (the sources' file formats with made-up content and a simple learnable signal),"
    " prepared by the real readers; 128 to 4096 tokens, a tiny model, 20 to 200 training steps"
    " (configs/experiment/mini/). Accuracy above chance shows that a mechanism trains through the whole"
    " pipeline; it says nothing about how the mechanisms compare on LRA."
)


def preamble(table: str, argv: list[str], started: float, load_start: float, records: list[dict]) -> str:
    """What the table file says above the table: the command, when, how long, on what, under which load."""
    from lra.measure import device_name

    threads = os.environ.get("OMP_NUM_THREADS")
    device = collections.Counter(r["device"] for r in records).most_common(1)[0][0]
    walls = [r["wall_s"] for r in records]
    command = shlex.join(["python", "scripts/reproduce_table.py", *argv])
    lines = [f"# {table} table: {len(records)} runs", ""]
    if table == "mini":
        lines += [f"**{MINI_NOTE}**", ""]
    lines += [
        f"- Command: `{f'OMP_NUM_THREADS={threads} ' if threads else ''}{command}`",
        f"- Started {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))}, wall time"
        f" {(time.time() - started) / 60:.1f} min for all runs (data generation included); one run"
        f" {min(walls):.0f} to {max(walls):.0f} s, median {statistics.median(walls):.0f} s (result.json wall_s).",
        f"- Runs on {device}; this script ran on {device_name('cpu')}.",
        f"- Load average (1 min) at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()}"
        " cores; above the core count other jobs shared the machine, so times are indicative only.",
    ]
    return "\n".join(lines) + "\n\n"


def device_slug(records: list[dict]) -> str:
    """The most common device of the runs, as a file-name part ("nvidia-h100-80gb-hbm3", "cpu-2-cores")."""
    device = collections.Counter(r["device"] for r in records).most_common(1)[0][0]
    return re.sub(r"[^a-z0-9]+", "-", str(device).lower()).strip("-") or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="reproduce_table.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("table", choices=TABLES)
    p.add_argument("--print", action="store_true", help="print the sweep commands and exit")
    p.add_argument(
        "--launcher",
        choices=tuple(LAUNCHERS),
        default="basic",
        help="basic: one run after another here; slurm: one SLURM job per run (configs/hydra/launcher/slurm.yaml)",
    )
    p.add_argument("--spt", action="store_true", help="sweep spt=none,masked: without and with self-pretraining")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default %(default)s)")
    p.add_argument("--out", type=Path, help="sweep folders go to OUT/<task> (default multirun/<table>-<date>_<time>)")
    p.add_argument("--table-out", type=Path, help="the table file (default results/tables/<table>-<device>.md)")
    a, extra = p.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e or e.startswith("-")]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)} (trailing arguments must be key=value overrides)")
    if not re.fullmatch(r"\d+(,\d+)*", a.seeds):
        p.error(f"--seeds must be comma-separated integers, got '{a.seeds}'")
    out = a.out or Path("multirun") / f"{a.table}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    attentions = available()
    commands = {
        t: sweep_command(a.table, t, attentions, a.seeds, out / t, a.launcher, extra, a.spt) for t in TASK_NAMES
    }
    if a.print:
        for cmd in commands.values():
            print(shlex.join(cmd))
        return 0

    started, load_start = time.time(), os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    status: dict[str, str] = {}
    for task, cmd in commands.items():
        reason = skip_reason(a.table, task, extra)
        if reason:
            status[task] = f"skipped: {reason}"
            print(f"[{task}] {status[task]}", flush=True)
            continue
        print(f"[{task}] {shlex.join(cmd)}", flush=True)
        rc = subprocess.run([sys.executable, "-m", "lra.train", *cmd[1:]], env=env).returncode
        status[task] = "done" if rc == 0 else f"failed (exit status {rc}; the sweep's log is under {out / task})"

    dirs = [str(out / t) for t in commands if (out / t).is_dir()]
    records = lra_table.load_records(lra_table.find_results(dirs), skip_incomplete=True) if dirs else []
    if records:
        table_out = a.table_out or REPO / "results" / "tables" / f"{a.table}-{device_slug([r for _, r in records])}.md"
        compare = ["--compare", "published"] if a.table == "lra" else []  # mini numbers are not the papers' setting
        lra_table.main(
            [*dirs, "--format", "md", "--efficiency", *compare, "--skip-incomplete", "--out", str(table_out)]
        )
        rows = [r for _, r in records]
        table_out.write_text(
            preamble(a.table, sys.argv[1:] if argv is None else argv, started, load_start, rows) + table_out.read_text()
        )
    print("\nsummary:")
    for task, s in status.items():
        print(f"  {task:10s} {s}")
    if not records:
        print("no run finished, so no table was written", file=sys.stderr)
    return 0 if records and not any(s.startswith("failed") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
