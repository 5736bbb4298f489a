"""The task table: how each task is prepared and what its prepared data must look like.

Each task has a ``prepare(task_cfg, data_dir, source, path, workers)`` function writing the
prepared folder, and ``expected_meta(task_cfg)``: the preprocessing settings a prepared folder
must have been made with (a folder made with other settings is refused, never silently used).
"""

from __future__ import annotations

import logging
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lra.data import image, listops, retrieval, synthetic, text
from lra.data.prepared import CorruptDataError, MissingDataError, PreparedWriter, prepared_dir, read_manifest
from lra.data.sources import check_source, release_roots, require_release_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    sources: tuple[str, ...]
    prepare: Callable[..., Path]
    expected_meta: Callable[[dict], dict]
    generated_source: str | None = None  # a source that needs no download: prepared on first use


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task '{name}'; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def find_release_file(path: str | Path, relative: str) -> Path:
    """``path/relative`` where ``path`` is the extracted release, also when nested as
    ``lra_release/`` or ``lra_release/lra_release/`` (as the archive often extracts)."""
    candidates = [root / relative for root in release_roots(path)]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"'{relative}' not found under {path} (looked in {', '.join(str(c) for c in candidates)})")


SYNTHETIC = "synthetic"  # the no-download source of text, retrieval and image (lra/data/synthetic.py)


def synthetic_raw(task: dict, data_dir: str | Path) -> Path:
    """An empty folder beside the prepared one (``<profile>.raw``) for a synthetic source's raw files."""
    raw = prepared_dir(data_dir, task["name"], task["profile"]).with_name(f"{task['profile']}.raw")
    shutil.rmtree(raw, ignore_errors=True)  # files of other settings must not be read with the new ones
    raw.mkdir(parents=True)
    return raw


def _with_synthetic(meta: dict, task: dict) -> dict:
    """``meta`` plus the synthetic set's settings when the task reads it."""
    if task["source"] == SYNTHETIC:
        meta["synthetic"] = {k: int(v) for k, v in task["synthetic"].items()}
    return meta


# --- listops ---------------------------------------------------------------------------------


def _listops_meta(task: dict) -> dict:
    meta = {"max_len": int(task["max_len"]), "source": task["source"]}
    if task["source"] == "generate":
        meta["generator"] = listops.config_dict(listops.GeneratorConfig(**task["generator"]))
    return meta


def _prepare_listops(
    task: dict, data_dir: str | Path, *, source: str, path: str | None = None, workers: int = 1
) -> Path:
    out = prepared_dir(data_dir, "listops", task["profile"])
    meta = _listops_meta({**task, "source": source})
    if source == "generate":
        cfg = listops.GeneratorConfig(**task["generator"])
        log.info("generating ListOps %s with %d worker(s)", cfg, workers)
        splits = listops.generate(cfg, workers=workers)
    elif source == "release":
        path = require_release_path(path)
        splits = {
            s: list(listops.read_tsv(find_release_file(path, f"listops-1000/basic_{s}.tsv"))) for s in listops.SPLITS
        }
    else:
        raise ValueError(f"listops source must be one of generate, release; got '{source}'")
    with PreparedWriter(out, task="listops", profile=task["profile"], source=source, meta=meta) as w:
        for split, rows in splits.items():
            ids = listops.encode((t for t, _ in rows), task["max_len"])
            w.add_split(split, ids, [label for _, label in rows])
    return out


register_task(
    TaskSpec("listops", ("generate", "release"), _prepare_listops, _listops_meta, generated_source="generate")
)


# --- pathfinder / pathx ----------------------------------------------------------------------


def _pathfinder_meta(task: dict) -> dict:
    meta = {
        "resolution": int(task["resolution"]),
        "difficulty": task["difficulty"],
        "source": task["source"],
        "split_seed": int(task["split_seed"]),
    }
    if task["source"] == "generate":
        meta["generator"] = {"n": int(task["generator"]["n"]), "seed": int(task["generator"]["seed"])}
    return meta


def _prepare_pathfinder(
    task: dict, data_dir: str | Path, *, source: str, path: str | None = None, workers: int = 1
) -> Path:
    from lra.data import pathfinder, pathfinder_gen

    out = prepared_dir(data_dir, task["name"], task["profile"])
    resolution, difficulty = int(task["resolution"]), task["difficulty"]
    if source == "generate":
        # the generated images stay beside the prepared arrays, in the release layout; the folder starts empty,
        # so the images (and metadata files) of an earlier preparation with other settings are never read
        path = out.with_name(out.name + ".images")
        shutil.rmtree(path, ignore_errors=True)
        gen = task["generator"]
        log.info(
            "generating %d Pathfinder images (%dx%d, %s) with %d worker(s) into %s",
            gen["n"],
            resolution,
            resolution,
            difficulty,
            workers,
            path,
        )
        pathfinder_gen.generate(
            path, resolution=resolution, difficulty=difficulty, n=int(gen["n"]), workers=workers, seed=int(gen["seed"])
        )
    elif source != "release":
        raise ValueError(f"{task['name']} source must be one of generate, release; got '{source}'")
    else:
        path = require_release_path(path)
    images, labels = pathfinder.read_pathfinder(path, resolution, difficulty)
    if source == "generate" and len(labels) != int(task["generator"]["n"]):
        raise CorruptDataError(
            f"{path}: read {len(labels)} generated images, task.generator.n is {task['generator']['n']}; "
            f"delete {path} and prepare again with --force"
        )
    meta = _pathfinder_meta({**task, "source": source})
    with PreparedWriter(out, task=task["name"], profile=task["profile"], source=source, meta=meta) as w:
        for split, idx in pathfinder.split_indices(len(labels), seed=int(task["split_seed"])).items():
            w.add_split(split, images[idx], labels[idx])
    return out


for _name in ("pathfinder", "pathx"):
    register_task(
        TaskSpec(_name, ("generate", "release"), _prepare_pathfinder, _pathfinder_meta, generated_source="generate")
    )


# --- text (IMDB bytes) -------------------------------------------------------------------------


def _text_meta(task: dict) -> dict:
    meta = {"max_len": int(task["max_len"]), "strip": bool(task["strip"]), "holdout": int(task["holdout"])}
    if meta["holdout"]:
        meta["holdout_seed"] = int(task["holdout_seed"])
    return _with_synthetic(meta, task)


def _prepare_text(task: dict, data_dir: str | Path, *, source: str, path: str | None = None, workers: int = 1) -> Path:
    check_source("text", source, (*text.SOURCES, SYNTHETIC))
    reader = source
    if source == SYNTHETIC:  # generated reviews in the aclImdb layout, read by the folder reader
        path, reader = synthetic.write_imdb(synthetic_raw(task, data_dir), **task["synthetic"]), "folder"
    out = prepared_dir(data_dir, "text", task["profile"])
    max_len = int(task["max_len"])
    meta = _text_meta({**task, "source": source})
    with PreparedWriter(out, task="text", profile=task["profile"], source=source, meta=meta) as w:
        for split in text.SPLITS:
            rows = text.canonical(text.READERS[reader](split, path), strip=task["strip"])
            if split == "train" and task["holdout"]:
                rows, held = text.holdout(rows, int(task["holdout"]), int(task["holdout_seed"]))
                w.add_chunks("val", text.chunks(held, max_len, "text val"), row_shape=(max_len,), dtype=np.uint16)
            w.add_chunks(split, text.chunks(rows, max_len, f"text {split}"), row_shape=(max_len,), dtype=np.uint16)
    return out


register_task(TaskSpec("text", (*text.SOURCES, SYNTHETIC), _prepare_text, _text_meta, generated_source=SYNTHETIC))


# --- retrieval (AAN pairs) ---------------------------------------------------------------------


def _retrieval_meta(task: dict) -> dict:
    return _with_synthetic({"max_len": int(task["max_len"]), "doc_bytes": int(task["doc_bytes"])}, task)


def _prepare_retrieval(
    task: dict, data_dir: str | Path, *, source: str, path: str | None = None, workers: int = 1
) -> Path:
    check_source("retrieval", source, (*retrieval.SOURCES, SYNTHETIC))
    if source == SYNTHETIC:  # generated pairs as the release's tsv_data/, read as the release
        path = synthetic.write_aan(synthetic_raw(task, data_dir), **task["synthetic"])
    if source in ("release", SYNTHETIC):
        path = require_release_path(path)
        files = {s: find_release_file(path, f"{retrieval.RELEASE_DIR}/{name}") for s, name in retrieval.FILES.items()}
    else:
        files = {s: retrieval.hf_file(s, path) for s in retrieval.FILES}
    out = prepared_dir(data_dir, "retrieval", task["profile"])
    max_len, doc_bytes = int(task["max_len"]), int(task["doc_bytes"])
    meta = _retrieval_meta({**task, "source": source})
    with PreparedWriter(out, task="retrieval", profile=task["profile"], source=source, meta=meta) as w:
        for split, file in files.items():
            w.add_chunks(split, retrieval.chunks(file, max_len, doc_bytes), row_shape=(2, max_len), dtype=np.uint16)
    return out


register_task(
    TaskSpec(
        "retrieval", (*retrieval.SOURCES, SYNTHETIC), _prepare_retrieval, _retrieval_meta, generated_source=SYNTHETIC
    )
)


# --- image (grayscale CIFAR-10) ----------------------------------------------------------------


def _image_meta(task: dict) -> dict:
    return _with_synthetic({"max_len": int(task["max_len"]), "val_fraction": float(task["val_fraction"])}, task)


def _prepare_image(task: dict, data_dir: str | Path, *, source: str, path: str | None = None, workers: int = 1) -> Path:
    check_source("image", source, (*image.SOURCES, SYNTHETIC))
    if int(task["max_len"]) != image.SIDE * image.SIDE:
        raise ValueError(f"task.max_len must be {image.SIDE * image.SIDE} for CIFAR-10, got {task['max_len']}")
    reader = source
    if source == SYNTHETIC:  # generated images as the CIFAR-10 python pickles, read by the folder reader
        path, reader = synthetic.write_cifar(synthetic_raw(task, data_dir), **task["synthetic"]), "folder"
    if source == "hf":
        log.warning(
            "image --source hf: HF rows are taken in CIFAR order; for LRA's exact validation images "
            "use --source tfds or folder (see lra/data/image.py)"
        )
    out = prepared_dir(data_dir, "image", task["profile"])
    meta = _image_meta({**task, "source": source})
    with PreparedWriter(out, task="image", profile=task["profile"], source=source, meta=meta) as w:
        for split in image.SPLITS:
            with tqdm(desc=f"image {split}", unit="img", mininterval=1.0) as bar:
                ids, labels = image.gray_split(image.READERS[reader](split, path), split, progress=bar)
            if split == "train":
                n = image.n_train(len(ids), float(task["val_fraction"]))
                w.add_split("train", ids[:n], labels[:n])
                w.add_split("val", ids[n:], labels[n:])
            else:
                w.add_split(split, ids, labels)
    return out


register_task(TaskSpec("image", (*image.SOURCES, SYNTHETIC), _prepare_image, _image_meta, generated_source=SYNTHETIC))


# --- shared entry points -----------------------------------------------------------------------


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
    expected = spec.expected_meta(task)
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
            folder = spec.prepare(task, data_dir, source=task["source"], path=task.get("path"), workers=workers)
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
