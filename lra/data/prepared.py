"""Prepared arrays on disk: ``<data_dir>/<task>/<profile>/`` with one pair of ``.npy`` files
per split (``<split>.ids.npy`` token ids, ``<split>.labels.npy`` int64 labels) and a
``manifest.json`` (counts, shapes, source, preprocessing version, sha256 checksums).

A prepared folder is written under a temporary name and renamed into place, so a folder
with a manifest is always complete; an interrupted preparation leaves nothing that looks
finished. Training memory-maps the arrays and never re-tokenises.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lra.atomic import publish_dir
from lra.errors import read_json, space_for

MANIFEST = "manifest.json"
PREPROCESSING_VERSION = 1


class MissingDataError(FileNotFoundError):
    """Prepared data is absent; the message names the command that prepares it."""


class CorruptDataError(ValueError):
    """Prepared data does not match its manifest."""


def prepared_dir(data_dir: str | Path, task: str, profile: str) -> Path:
    return Path(data_dir).expanduser() / task / profile


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class PreparedWriter:
    """Writes one prepared folder atomically.

    with PreparedWriter(out_dir, task="text", profile="lra", source="hf") as w:
        w.add_split("train", ids, labels)                # whole arrays, or
        w.add_chunks("test", chunks, row_shape=(4000,), dtype=np.uint16)  # streamed
    # on success out_dir holds the arrays and manifest.json; on error nothing changes
    """

    def __init__(self, out_dir: str | Path, *, task: str, profile: str, source: str, meta: dict | None = None):
        self.out_dir = Path(out_dir)
        self.tmp = self.out_dir.with_name(f".{self.out_dir.name}.tmp-{os.getpid()}")
        self.manifest = {
            "task": task,
            "profile": profile,
            "source": source,
            "version": PREPROCESSING_VERSION,
            "meta": meta or {},
            "splits": {},
        }

    def __enter__(self) -> PreparedWriter:
        for stale in self.out_dir.parent.glob(f".{self.out_dir.name}.tmp-*"):  # left by a killed preparation
            pid = stale.name.rsplit("-", 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self

    def add_split(self, split: str, ids: np.ndarray, labels: np.ndarray) -> None:
        if len(ids) != len(labels):
            raise ValueError(f"split '{split}': {len(ids)} inputs but {len(labels)} labels")
        labels = np.asarray(labels, dtype=np.int64)
        with space_for(self.out_dir.parent, ids.nbytes + labels.nbytes):
            np.save(self.tmp / f"{split}.ids.npy", ids)
            np.save(self.tmp / f"{split}.labels.npy", labels)
        self._record(split)

    def add_chunks(
        self, split: str, chunks: Iterable[tuple[np.ndarray, np.ndarray]], *, row_shape: tuple[int, ...], dtype
    ) -> None:
        """Stream (ids, labels) chunks to disk without holding the split in memory."""
        raw = self.tmp / f"{split}.ids.raw"
        labels: list[np.ndarray] = []
        n = 0
        with open(raw, "wb") as f:
            for ids, lab in chunks:
                ids = np.ascontiguousarray(ids, dtype=dtype)
                if ids.shape[1:] != tuple(row_shape) or len(ids) != len(lab):
                    raise ValueError(
                        f"split '{split}': chunk of shape {ids.shape} / {len(lab)} labels, "
                        f"expected rows of {tuple(row_shape)}"
                    )
                f.write(ids.tobytes())
                labels.append(np.asarray(lab, dtype=np.int64))
                n += len(ids)
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (n, *row_shape),
        }
        with open(self.tmp / f"{split}.ids.npy", "wb") as out, open(raw, "rb") as src:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(src, out, 1 << 22)
        raw.unlink()
        np.save(self.tmp / f"{split}.labels.npy", np.concatenate(labels) if labels else np.zeros(0, np.int64))
        self._record(split)

    def _record(self, split: str) -> None:
        ids = np.load(self.tmp / f"{split}.ids.npy", mmap_mode="r")
        labels = np.load(self.tmp / f"{split}.labels.npy")
        self.manifest["splits"][split] = {
            "n": int(len(ids)),
            "shape": list(ids.shape),
            "dtype": str(ids.dtype),
            "label_counts": {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))},
            "sha256": {
                f"{split}.ids.npy": sha256(self.tmp / f"{split}.ids.npy"),
                f"{split}.labels.npy": sha256(self.tmp / f"{split}.labels.npy"),
            },
        }

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self.manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with open(self.tmp / MANIFEST, "w") as f:
            json.dump(self.manifest, f, indent=2)
        publish_dir(self.tmp, self.out_dir)


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a prepared folder, None when it has none; one that is not valid JSON raises a
    ValueError naming the file and the command that prepares the folder again."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return None
    remake = (
        f"`lra-data prepare {folder.parent.name} task.profile={folder.name} --force` "
        "(with the other task.* overrides it was prepared with)"
    )
    return read_json(path, remake)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped ids and in-memory labels of one split.

    Cheap checks against the manifest (shapes, hence file sizes, and the label counts); the full
    checksums are ``lra-data verify``'s job. A mismatch raises CorruptDataError naming the file.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or split not in manifest["splits"]:
        raise MissingDataError(f"no prepared split '{split}' in {folder}")
    entry, task = manifest["splits"][split], manifest.get("task", "TASK")
    repair = (
        f"the prepared data is damaged: check it with `lra-data verify {task} ...` and prepare the task again "
        f"(`lra-data prepare {task} ... --force`, with the overrides of this run)"
    )
    files = {kind: folder / f"{split}.{kind}.npy" for kind in ("ids", "labels")}
    arrays = {}
    for kind, mmap_mode in (("ids", "r"), ("labels", None)):  # ids stay on disk, labels are small
        try:
            arrays[kind] = np.load(files[kind], mmap_mode=mmap_mode)
        except (OSError, ValueError) as e:
            raise CorruptDataError(f"{files[kind]}: unreadable prepared array ({e}); {repair}") from e
    ids, labels = arrays["ids"], arrays["labels"]
    if list(ids.shape) != entry["shape"]:
        raise CorruptDataError(f"{files['ids']}: shape {list(ids.shape)}, the manifest says {entry['shape']}; {repair}")
    counts = {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
    if len(labels) != entry["n"] or counts != entry["label_counts"]:
        raise CorruptDataError(
            f"{files['labels']}: label counts {counts}, the manifest says {entry['label_counts']}; {repair}"
        )
    return ids, labels


def verify(folder: Path) -> list[str]:
    """Checksum every file against the manifest; returns a list of problems (empty when intact)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder}: no {MANIFEST}"]
    problems = []
    for entry in manifest["splits"].values():
        for name, digest in entry["sha256"].items():
            path = Path(folder) / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256(path) != digest:
                problems.append(f"{path}: checksum mismatch (file is corrupt or was changed)")
    return problems
