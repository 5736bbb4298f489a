"""Reader for Pathfinder / Path-X folders in the LRA release layout.

    <root>/pathfinder{R}/{curv_baseline,curv_contour_length_9,curv_contour_length_14}/
        imgs/<batch>/sample_<i>.png     8-bit grayscale PNGs
        metadata/<batch>.npy            text despite the name: one line per image,
                                        space-separated, field 0 = subfolder ("imgs/0"),
                                        field 1 = file name, field 3 = label

Both the release and ``lra.data.pathfinder_gen.generate`` write this layout. The release
contains one empty (0-byte) PNG; empty files are skipped with a warning.

The tasks (``lra.data.registry``): ``pathfinder`` (32x32) and ``pathx`` (Path-X, the same task at
128x128, outside the LRA paper's 5-task mean) differ only in their configs (``task.resolution``,
``task.max_len``). Sources ``generate`` (``lra.data.pathfinder_gen`` writes the release layout beside
the prepared arrays, then this reader reads it; also ``lra-data generate``) and ``release``; the
images are split 80/10/10 with ``task.split_seed``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lra.data import pathfinder_gen
from lra.data.pathfinder_gen import DIFFICULTIES, FOLDERS, PARAMS
from lra.data.prepared import CorruptDataError, PreparedWriter, prepared_dir
from lra.data.registry import Generator, register_task
from lra.data.sources import release_roots, require_release_path

log = logging.getLogger(__name__)


def find_release_root(path: str | os.PathLike) -> Path:
    """The folder holding ``pathfinder{R}/``: ``path`` itself, or ``path/lra_release``, or
    ``path/lra_release/lra_release`` (the release archive often extracts nested twice)."""
    for root in release_roots(path):
        if root.is_dir() and any(p.is_dir() and re.fullmatch(r"pathfinder\d+", p.name) for p in root.iterdir()):
            return root
    raise FileNotFoundError(
        f"no pathfinder<R>/ folder (e.g. pathfinder32/) in {path} or in {path}/lra_release or "
        f"{path}/lra_release/lra_release; expected the LRA release layout "
        "pathfinder{R}/curv_contour_length_14/{imgs,metadata}/"
    )


def _natural_key(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))


def _label(fields: list[str]) -> int | None:
    """Field 3 as 0 or 1, None when the line has no such field."""
    try:
        label = int(fields[3])
    except (IndexError, ValueError):
        return None
    return label if label in (0, 1) else None


def read_pathfinder(
    path: str | os.PathLike,
    resolution: int,
    difficulty: str = "hard",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Read every image listed in the metadata files of one resolution and difficulty.

    ``difficulty`` is ``easy``/``inter``/``hard`` or a release folder name
    (``curv_baseline``, ``curv_contour_length_9``, ``curv_contour_length_14``). Metadata
    files are read in natural order (0, 1, 2, ..., 10) and lines in file order, so the
    result is deterministic. Returns images uint8 (n, R * R), row-major pixels, and
    labels int64 (n,).
    """
    folder = FOLDERS.get(difficulty, difficulty)
    if folder not in FOLDERS.values():
        raise ValueError(f"difficulty {difficulty!r} is none of {sorted(FOLDERS)} or {sorted(FOLDERS.values())}")
    base = find_release_root(path) / f"pathfinder{resolution}" / folder
    meta_files = sorted((base / "metadata").glob("*.npy"), key=_natural_key)
    if not meta_files:
        raise FileNotFoundError(f"no metadata/*.npy files in {base}")

    entries: list[tuple[Path, int, Path, int]] = []  # (image, label, metadata file, line number)
    for meta in meta_files:
        for lineno, line in enumerate(meta.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            label = _label(fields)
            if label is None:
                raise ValueError(f"{meta}:{lineno}: malformed metadata line {line!r} "
                                 "(expected 'subfolder file_name index label ...' with label 0 or 1)")  # fmt: skip
            entries.append((base / fields[0] / fields[1], label, meta, lineno))

    images = np.empty((len(entries), resolution * resolution), np.uint8)
    labels = np.empty(len(entries), np.int64)
    n, empty = 0, 0
    for file, label, meta, lineno in tqdm(entries, disable=not progress, desc=f"pathfinder{resolution}/{folder}"):
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{file} (listed in {meta}:{lineno}) does not exist") from None
        if size == 0:
            empty += 1
            continue
        try:
            with Image.open(file) as im:
                im.load()
                pixels = np.asarray(im if im.mode == "L" else im.convert("L"))
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for truncated or invalid files
            raise ValueError(f"{file} (listed in {meta}:{lineno}) is not a readable PNG: {e}") from e
        if pixels.shape != (resolution, resolution):
            raise ValueError(f"{file} (listed in {meta}:{lineno}) is {pixels.shape[1]}x{pixels.shape[0]}, "
                             f"expected {resolution}x{resolution}")  # fmt: skip
        images[n] = pixels.reshape(-1)
        labels[n] = label
        n += 1
    if empty:
        log.warning("skipped %d empty (0-byte) image file(s) in %s", empty, base)
    return images[:n], labels[:n]


def split_indices(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """80/10/10 train/val/test split of range(n) by a seeded permutation; each part sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(0.8 * n), int(0.1 * n)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


# --- the tasks ----------------------------------------------------------------------------------


def expected_meta(task: dict) -> dict:
    meta = {
        "resolution": int(task["resolution"]),
        "difficulty": task["difficulty"],
        "source": task["source"],
        "split_seed": int(task["split_seed"]),
    }
    if task["source"] == "generate":
        meta["generator"] = {"n": int(task["generator"]["n"]), "seed": int(task["generator"]["seed"])}
    return meta


def read_release(task: dict, path: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``task.resolution`` and ``task.difficulty`` in the release layout at ``path``."""
    return read_pathfinder(require_release_path(path), int(task["resolution"]), task["difficulty"])


def generate_images(task: dict, out: Path, workers: int) -> Path:
    """``task.generator.n`` images in the release layout in ``<out>.images``, emptied first (so the
    images and metadata files of an earlier preparation with other settings are never read)."""
    path = out.with_name(out.name + ".images")
    shutil.rmtree(path, ignore_errors=True)
    resolution, difficulty, gen = int(task["resolution"]), task["difficulty"], task["generator"]
    log.info("generating %d Pathfinder images (%dx%d, %s) with %d worker(s) into %s",
             gen["n"], resolution, resolution, difficulty, workers, path)  # fmt: skip
    pathfinder_gen.generate(
        path, resolution=resolution, difficulty=difficulty, n=int(gen["n"]), workers=workers, seed=int(gen["seed"])
    )
    return path


def prepare(task: dict, data_dir: str | Path, *, source: str, path, read, meta: dict, workers: int) -> Path:
    """The images (generated first for ``source=generate``), split and written."""
    out = prepared_dir(data_dir, task["name"], task["profile"])
    if source == "generate":
        path, read = generate_images(task, out, workers), read_release  # the generator writes the release layout
    images, labels = read(task, path)
    if source == "generate" and len(labels) != int(task["generator"]["n"]):
        raise CorruptDataError(
            f"{path}: read {len(labels)} generated images, task.generator.n is {task['generator']['n']}; "
            f"delete {path} and prepare again with --force"
        )
    with PreparedWriter(out, task=task["name"], profile=task["profile"], source=source, meta=meta) as w:
        for split, idx in split_indices(len(labels), seed=int(task["split_seed"])).items():
            w.add_split(split, images[idx], labels[idx])
    return out


def prepare_hint(out: str, resolution: int, difficulty: str, task_config: Callable[[str], dict]) -> str:
    """The ``lra-data prepare`` command that reads what ``generate`` wrote: the task whose config has this
    resolution (pathfinder 32, pathx 128), else pathfinder with the resolution and length overridden."""
    configs = {t: task_config(t) for t in ("pathfinder", "pathx")}
    by_resolution = {int(c["resolution"]): t for t, c in configs.items()}
    name = by_resolution.get(resolution, "pathfinder")
    cmd = ["lra-data", "prepare", name, "--source", "release", "--path", str(out)]
    if resolution not in by_resolution:
        cmd += [f"task.resolution={resolution}", f"task.max_len={resolution * resolution}"]
    if difficulty != configs[name]["difficulty"]:
        cmd.append(f"task.difficulty={difficulty}")
    return shlex.join(cmd)


def write_generated(task: dict, out: str, *, workers: int, options: dict, task_config) -> str:
    """``lra-data generate pathfinder|pathx``: images in the release layout; flags override the task config."""
    resolution = options["resolution"] or int(task["resolution"])
    difficulty = options["difficulty"] or task["difficulty"]
    n = options["n"] or int(task["generator"]["n"])
    folder = pathfinder_gen.generate(
        out, resolution=resolution, difficulty=difficulty, n=n, workers=workers, seed=options["seed"]
    )
    prepare = prepare_hint(out, resolution, difficulty, task_config)
    return f"wrote {n} images to {folder} (release layout; prepare with: {prepare})"


GENERATOR = Generator(
    write_generated,
    options={
        "--resolution": {"type": int, "choices": tuple(PARAMS), "help": "pathfinder: image size"},
        "--difficulty": {"choices": tuple(DIFFICULTIES), "help": "pathfinder: contour length 6/9/14"},
        "--n": {"type": int, "help": "pathfinder: number of images"},
        "--seed": {"type": int, "default": 0, "help": "pathfinder: generator seed"},
    },
)
for _name, _title, _column, _average in (("pathfinder", "Pathfinder", 5, True), ("pathx", "Path-X", 6, False)):
    register_task(
        _name,
        title=_title,
        column=_column,
        average=_average,
        sources=("generate", "release"),
        readers={"release": read_release},
        prepare=prepare,
        expected_meta=expected_meta,
        generated_source="generate",
        generator=GENERATOR,
    )
