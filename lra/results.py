"""The run record (result.json), the settings that change its numbers, and atomic file writes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RESULT_FIELDS = (
    "task",
    "attention",
    "seed",
    "model",
    "params",
    "steps",
    "epochs",
    "val_acc",
    "test_acc",
    "train_loss",
    "step_time_ms",
    "step_time_mean_ms",
    "tokens_per_s",
    "samples_per_s",
    "peak_mem_mb",
    "device",
    "precision",
    "wall_s",
    "threads",
    "cpus_available",
    "load_avg_start",
    "load_avg_end",
    "git_sha",
    "overrides",
    "config",
)


# Keys of the resolved config that change how a run is shown, fed or stored, never its numbers: left
# out of a run's fingerprint (lra.resume: which runs are the same config) and of the settings
# lra-table compares (which runs may share a cell).
NO_EFFECT = (
    "resume",
    "logger",
    "paths.runs",
    "paths.multirun",
    "paths.data_dir",
    "data.num_workers",
    "data.prepare_workers",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "checkpoint",
)


def without_no_effect(config: dict) -> dict:
    """A copy of a resolved config (plain containers) without the ``NO_EFFECT`` keys."""
    c = copy.deepcopy(config)
    for key in NO_EFFECT:
        *parents, last = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return c


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, fsync, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    """JSON written with ``write_text_atomic``."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def git_sha() -> str | None:
    """The harness's commit, with ``-dirty`` when the working tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# Fields records written before they existed lack; ``load_result`` gives them as None.
LATER_FIELDS = ("step_time_mean_ms", "threads", "cpus_available", "load_avg_start", "load_avg_end")


def load_result(path: str | Path) -> dict:
    """Read a result.json; an incomplete record (missing fields) is refused naming them."""
    with open(path) as f:
        record = json.load(f)
    record = {**dict.fromkeys(LATER_FIELDS), **record}
    missing = [k for k in RESULT_FIELDS if k not in record]
    if missing:
        raise ValueError(f"{path}: incomplete result record, missing {', '.join(missing)}")
    return record
