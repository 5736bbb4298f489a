"""The tasks, collected, and the entry points that prepare them and find their prepared data.

Importing this module registers every task: it imports the task modules (``lra/data/<task>.py``),
each of which declares its task with ``lra.data.registry.register_task``. ``prepare`` runs a task's
preparation with the reader of the chosen source (for ``source: synthetic`` it first has
``lra.data.synthetic`` write the made-up raw files, then reads them with the task's ``stand_in``
reader), and ``expected_meta(task)`` is what a prepared folder's manifest must say: the settings the
task declares, plus the synthetic set's settings when the task reads it. A folder made with other
settings is refused, never silently used.

A new task is its module (which calls ``register_task``), its name in the import of task modules
below, its config ``configs/task/<name>.yaml`` and its tests; with a synthetic stand-in, also its
writer in ``lra.data.synthetic.WRITERS``.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path

from lra.data import image, listops, pathfinder, retrieval, synthetic, text  # noqa: F401  (each registers its task)
from lra.data.prepared import CorruptDataError, MissingDataError, prepared_dir, read_manifest
from lra.data.registry import AVERAGED, SYNTHETIC, TASK_NAMES, TASKS, TITLES, get_task
from lra.data.sources import check_source, find_release_file

# the registry (filled by the imports above) and its live views are read from here
__all__ = [
    "AVERAGED",
    "TASKS",
    "TASK_NAMES",
    "TITLES",
    "check_labels",
    "ensure_prepared",
    "expected_meta",
    "find_release_file",
    "get_task",
    "prepare",
    "prepare_command",
    "settings_diff",
    "synthetic_raw",
]

log = logging.getLogger(__name__)


def synthetic_raw(task: dict, data_dir: str | Path) -> Path:
    """An empty folder beside the prepared one (``<profile>.raw``) for a synthetic source's raw files."""
    raw = prepared_dir(data_dir, task["name"], task["profile"]).with_name(f"{task['profile']}.raw")
    shutil.rmtree(raw, ignore_errors=True)  # files of other settings must not be read with the new ones
    raw.mkdir(parents=True)
    return raw


def expected_meta(task: dict) -> dict:
    """The preprocessing settings the manifest of a folder prepared for ``task`` (and its source) records."""
    meta = get_task(task["name"]).expected_meta(task)
    if task["source"] == SYNTHETIC:
        meta["synthetic"] = {k: int(v) for k, v in task["synthetic"].items()}
    return meta


def prepare(task: dict, data_dir: str | Path, *, source: str, path: str | None = None, workers: int = 1) -> Path:
    """Prepare ``task`` from ``source`` (raw files at ``path``) into its prepared folder; returns the folder."""
    spec = get_task(task["name"])
    check_source(spec.name, source, spec.sources)
    task = {**task, "source": source}
    meta = expected_meta(task)
    if source == SYNTHETIC:
        path = synthetic.WRITERS[spec.name](synthetic_raw(task, data_dir), **task["synthetic"])
    read = spec.readers.get(spec.stand_in if source == SYNTHETIC else source)
    return spec.prepare(task, data_dir, source=source, path=path, read=read, meta=meta, workers=workers)


def prepare_command(task: dict, overrides: list[str] | None = None) -> str:
    """The exact ``lra-data prepare`` command for this task config."""
    cmd = ["lra-data", "prepare", task["name"], "--source", task["source"]]
    if task.get("path"):
        cmd += ["--path", str(task["path"])]
    elif task["source"] not in ("generate", SYNTHETIC, "hf", "tfds"):
        cmd += ["--path", "DIR"]
    cmd += [o for o in overrides or [] if o.split("=")[0].lstrip("+~").startswith(("task.", "experiment", "paths."))]
    return shlex.join(cmd).replace("'DIR'", "DIR")


def check_labels(folder: Path, n_classes: int) -> Path:
    """``folder``, once its labels are known to lie in ``0..n_classes-1`` (from the manifest: nothing is read)."""
    for split, entry in read_manifest(folder)["splits"].items():
        outside = sorted(int(k) for k in entry["label_counts"] if not 0 <= int(k) < n_classes)
        if outside:
            raise CorruptDataError(
                f"{folder}/{split}.labels.npy: labels {', '.join(map(str, outside))} are outside 0..{n_classes - 1} "
                f"(task.n_classes={n_classes}); set task.n_classes to the task's class count or prepare the data again"
            )
    return folder


def settings_diff(task: dict, manifest: dict) -> str:
    """The preprocessing settings in which a prepared folder (its manifest) differs from ``task``,
    as ``"key: prepared X, config Y, ..."``; empty when the folder was made with the same settings."""
    spec = get_task(task["name"])
    expected = expected_meta(task)
    found = {k: manifest["meta"].get(k) for k in expected}
    if spec.generated_source in (task["source"], manifest["source"]):  # generated data never stands in for real
        expected["source"], found["source"] = task["source"], manifest["source"]
    return ", ".join(f"{k}: prepared {found[k]!r}, config {expected[k]!r}" for k in expected if found[k] != expected[k])


def ensure_prepared(task: dict, data_dir: str | Path, *, overrides: list[str] | None = None, workers: int = 1) -> Path:
    """The prepared folder for ``task``; generated tasks are prepared on first use.

    Missing data raises MissingDataError naming the command to run; data prepared with other
    settings than the config asks for is refused with the differences listed, and labels
    outside ``task.n_classes`` with CorruptDataError.
    """
    spec = get_task(task["name"])
    folder = prepared_dir(data_dir, task["name"], task["profile"])
    manifest = read_manifest(folder)
    if manifest is None:
        if spec.generated_source is not None and task["source"] == spec.generated_source:
            log.info("no prepared %s data at %s: generating it now (runs once)", task["name"], folder)
            folder = prepare(task, data_dir, source=task["source"], path=task.get("path"), workers=workers)
            return check_labels(folder, int(task["n_classes"]))
        raise MissingDataError(
            f"no prepared data for task '{task['name']}' at {folder}.\nPrepare it once with:\n  "
            + prepare_command(task, overrides)
        )
    diff = settings_diff(task, manifest)
    if diff:
        raise MissingDataError(
            f"prepared data at {folder} was made with other settings ({diff}).\nPrepare it again with:\n  "
            + prepare_command(task, overrides)
            + " --force\nor choose another task.profile for the new settings."
        )
    return check_labels(folder, int(task["n_classes"]))
