"""Tune every attention mechanism on one task with the same budget, then rerun each best config on several seeds.

    python scripts/tune.py mini listops --print                       # the commands only, nothing runs
    python scripts/tune.py mini listops --trials 20 --seeds 0,1,2
    python scripts/tune.py lra listops --launcher slurm --n-jobs 8 trainer=gpu hydra.launcher.partition=gpu

For each mechanism (``models.attention.available()``, or ``--mechanisms``), in order:
1. search: ``lra-train -m hparams_search=<table>_<task> attention=<name>``, Hydra's Optuna sweeper over the
   space of ``configs/hparams_search/<table>_<task>.yaml`` (plus ``configs/hparams_search/attention/<name>.yaml``,
   the mechanism's own sizes, where there is one), maximising val_acc. Every mechanism gets the same
   ``--trials`` and the same sampler seed (``--sampler-seed``), so TPE draws the same first trials of the
   shared space for each; ``--n-jobs`` trials are asked at once (run in parallel by a launcher that can).
   The sweeper writes ``OUT/<name>/search/optimization_results.yaml`` (best params and val_acc).
2. rerun: ``lra-train -m experiment=<table>/<task> attention=<name> <best params> seed=<seeds>`` into
   ``OUT/<name>/best/``; those result.json files are what ``lra-table OUT/*/best`` reads.
Trailing ``key=value`` arguments go to every command.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout: this repository's lra and models, not an installed copy

from omegaconf import OmegaConf  # noqa: E402

from models.attention import available  # noqa: E402

TABLES = ("lra", "mini")
LAUNCHERS = {"basic": [], "slurm": ["hydra/launcher=slurm"]}
SEARCHES = REPO / "configs" / "hparams_search"
BEST_FILE = "optimization_results.yaml"  # written by the Optuna sweeper into its hydra.sweep.dir


def search_command(
    table: str,
    task: str,
    name: str,
    trials: int,
    sampler_seed: int,
    n_jobs: int,
    out: Path,
    launcher: str,
    extra: list[str],
) -> list[str]:
    """One mechanism's Optuna search, as an ``lra-train -m`` command line."""
    own = (SEARCHES / "attention" / f"{name}.yaml").is_file()
    return [
        "lra-train",
        "-m",
        f"hparams_search={table}_{task}",
        f"attention={name}",
        *([f"+hparams_search/attention@hydra.sweeper.params={name}"] if own else []),
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.sampler.seed={sampler_seed}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        *LAUNCHERS[launcher],
        f"hydra.sweep.dir={out / name / 'search'}",
        *extra,
    ]


def best_params(search_dir: Path) -> dict:
    """The best trial's settings from the sweeper's ``optimization_results.yaml``; ValueError naming the file."""
    path = search_dir / BEST_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not written (the search did not finish); run the search command again")
    return dict(OmegaConf.to_container(OmegaConf.load(path))["best_params"])


def rerun_command(
    table: str, task: str, name: str, params: dict | None, seeds: str, out: Path, launcher: str, extra: list[str]
) -> list[str]:
    """The best config of one mechanism on every seed; ``params`` None (a dry run) prints where they come from."""
    chosen = [f"<best_params of {out / name / 'search' / BEST_FILE}>"] if params is None else []
    chosen += [f"{k}={v}" for k, v in (params or {}).items()]
    return [
        "lra-train",
        "-m",
        f"experiment={table}/{task}",
        f"attention={name}",
        *chosen,
        f"seed={seeds}",
        *LAUNCHERS[launcher],
        f"hydra.sweep.dir={out / name / 'best'}",
        *extra,
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tune.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("table", choices=TABLES)
    p.add_argument("task", help="a task with configs/hparams_search/<table>_<task>.yaml")
    p.add_argument("--mechanisms", help="comma-separated registry names (default: every registered mechanism)")
    p.add_argument("--trials", type=int, default=20, help="Optuna trials per mechanism (default %(default)s)")
    p.add_argument("--sampler-seed", type=int, default=0, help="TPE's seed, the same for every mechanism")
    p.add_argument("--n-jobs", type=int, default=1, help="trials asked at once, run in parallel by the launcher")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the reruns of each best config (default %(default)s)")
    p.add_argument(
        "--launcher", choices=tuple(LAUNCHERS), default="basic", help="slurm: configs/hydra/launcher/slurm.yaml"
    )
    p.add_argument("--out", type=Path, help="default multirun/tune_<table>_<task>-<date>_<time>")
    p.add_argument("--print", "--dry-run", dest="dry_run", action="store_true", help="print the commands and exit")
    a, extra = p.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e or e.startswith("-")]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)} (trailing arguments must be key=value overrides)")
    searches = sorted(f.stem for f in SEARCHES.glob(f"{a.table}_*.yaml"))
    if f"{a.table}_{a.task}" not in searches:
        p.error(f"no search space configs/hparams_search/{a.table}_{a.task}.yaml; valid tasks: "
                + ", ".join(s.split("_", 1)[1] for s in searches))  # fmt: skip
    names = a.mechanisms.split(",") if a.mechanisms else available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        p.error(f"--mechanisms: no such attention {', '.join(unknown)}; available: {', '.join(available())}")
    if a.trials < 1 or a.n_jobs < 1:
        p.error("--trials and --n-jobs must be integers >= 1")
    if not re.fullmatch(r"\d+(,\d+)*", a.seeds):
        p.error(f"--seeds must be comma-separated integers, got '{a.seeds}'")
    out = a.out or Path("multirun") / f"tune_{a.table}_{a.task}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    budget = (a.trials, a.sampler_seed, a.n_jobs, out, a.launcher, extra)
    if a.dry_run:
        for name in names:
            print(shlex.join(search_command(a.table, a.task, name, *budget)))
            print(shlex.join(rerun_command(a.table, a.task, name, None, a.seeds, out, a.launcher, extra)))
        return 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def lra_train(name: str, cmd: list[str]) -> int:
        print(f"[{name}] {shlex.join(cmd)}", flush=True)
        return subprocess.run([sys.executable, "-m", "lra.train", *cmd[1:]], env=env).returncode

    status: dict[str, str] = {}
    for name in names:
        search = out / name / "search"
        rc = lra_train(name, search_command(a.table, a.task, name, *budget))
        if rc != 0:
            status[name] = f"failed: search exit status {rc} (its log is under {search})"
            continue
        try:
            params = best_params(search)
        except ValueError as e:
            status[name] = f"failed: {e}"
            continue
        rc = lra_train(name, rerun_command(a.table, a.task, name, params, a.seeds, out, a.launcher, extra))
        best_value = OmegaConf.load(search / BEST_FILE).best_value
        status[name] = (
            f"failed: rerun exit status {rc} (its log is under {out / name / 'best'})"
            if rc
            else f"best val_acc {best_value:.4f} of {a.trials} trials; reruns: {out / name / 'best'}/*/result.json"
        )
    print("\nsummary:")
    for name, s in status.items():
        print(f"  {name:20s} {s}")
    print(f"\nthe reruns' table: lra-table '{out}/*/best'")
    return 0 if not any(s.startswith("failed") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
