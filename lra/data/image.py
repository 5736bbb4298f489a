"""LRA Image: CIFAR-10 (Krizhevsky 2009) as 1024 grayscale pixels, 10 classes.

Three readers give the same images with their index in the original CIFAR-10 order
(``data_batch_1..5`` then row, for test ``test_batch`` row):

- ``hf``: the Hugging Face dataset ``uoft-cs/cifar10`` (fields ``img``, ``label``) or a local copy;
  its rows carry no CIFAR index, so row i is taken to be image i (see :func:`read_hf`);
- ``tfds``: TFDS ``cifar10`` through ``tfds.data_source``; the index comes from the ``id`` field
  (``train_01234``);
- ``folder``: the extracted ``cifar-10-batches-py`` pickles.

Preprocessing (LRA): ``tf.image.rgb_to_grayscale`` then back to uint8, i.e.
``floor((0.2989 R + 0.5870 G + 0.1140 B) / 255 * 255.5)`` in float32 (not PIL's ``convert("L")``),
flattened row-major to 1024 tokens 0..255 (uint8). Every pixel is real: no padding.

Order and validation split: LRA reads ``tfds.load('cifar10', split='train[:90%]')`` for training
and ``'train[90%:]'`` for validation. TFDS stores CIFAR-10 in the order of the md5 hash of
(split name, CIFAR index) (its shuffling), so :func:`tfds_order` rebuilds that order from the
indices and the last 10% of it is exactly LRA's 5,000 validation images, whatever the source.

The task (``lra.data.registry``): the three sources above and ``synthetic`` (made-up images written
as the CIFAR-10 pickles, read by the folder reader); validation = the last ``task.val_fraction``
of the training split in that order.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lra.data.prepared import PreparedWriter, prepared_dir
from lra.data.registry import SYNTHETIC, register_task
from lra.data.sources import hf_split, tfds_split

log = logging.getLogger(__name__)

HF_NAME = "uoft-cs/cifar10"
TFDS_NAME = "cifar10"
SOURCES = ("hf", "tfds", "folder")
SPLITS = ("train", "test")
BATCH_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
SIDE = 32
VOCAB_SIZE = 256
N_CLASSES = 10
# tf.image.rgb_to_grayscale's weights (ITU-R 601-2 luma, rounded as TF rounds them).
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]  # CIFAR indices (b,), RGB (b, 32, 32, 3) uint8, labels (b,)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB (..., 32, 32, 3) uint8 -> row-major grayscale tokens (..., 1024) uint8, as TF computes it."""
    x = rgb.astype(np.float32) * np.float32(1 / 255)  # convert_image_dtype(uint8 -> float32)
    gray = x[..., 0] * GRAY_WEIGHTS[0] + x[..., 1] * GRAY_WEIGHTS[1] + x[..., 2] * GRAY_WEIGHTS[2]  # (..., 32, 32)
    gray = np.floor(gray * np.float32(255.5))  # convert_image_dtype(float32 -> uint8): scale by 255.5, truncate
    return gray.astype(np.uint8).reshape(*rgb.shape[:-3], SIDE * SIDE)


def tfds_order(n: int, split: str) -> np.ndarray:
    """CIFAR indices 0..n-1 in TFDS's stored order: sorted by md5(split name + str(index)).

    TFDS shuffles every split by the md5 hash of its example key salted with the split name
    (``tensorflow_datasets/core/hashing.py``); for CIFAR-10 the key is the CIFAR index.
    """
    salted = hashlib.md5(split.encode())
    keys = []
    for i in range(n):
        h = salted.copy()
        h.update(str(i).encode())
        keys.append(int(h.hexdigest(), 16))
    return np.array(sorted(range(n), key=keys.__getitem__), dtype=np.int64)


def find_batches(path: str | Path | None) -> Path:
    """The ``cifar-10-batches-py`` folder: ``path`` itself or ``path/cifar-10-batches-py``."""
    if path is None:
        raise ValueError("--source folder needs --path DIR (the extracted cifar-10-batches-py folder)")
    root = Path(path).expanduser()
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "test_batch").is_file():
            return candidate
    raise FileNotFoundError(
        f"no cifar-10-batches-py/test_batch under {root} (expected the extracted cifar-10-python.tar.gz)"
    )


def read_folder(split: str, path: str | Path | None) -> Iterator[Chunk]:
    """One chunk per pickle: ``data`` is (10000, 3072) uint8, channel-major (R plane, G, B)."""
    folder, offset = find_batches(path), 0
    for name in BATCH_FILES[split]:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        rgb = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)  # (b, 32, 32, 3)
        n = len(rgb)
        yield np.arange(offset, offset + n), rgb, np.asarray(batch[b"labels"], dtype=np.int64)
        offset += n


def read_hf(split: str, path: str | Path | None = None, chunk: int = 1000) -> Iterator[Chunk]:
    """Rows of ``uoft-cs/cifar10`` with row i taken as CIFAR image i.

    The HF rows carry no CIFAR index; the dataset was converted by a script that read the
    pickles in the order they come out of the archive, which we could not check offline. If
    that order is not data_batch_1..5, the 45,000/5,000 split is still fixed and deterministic
    but its validation images are not LRA's: use ``tfds`` or ``folder`` for an exact replication.
    """
    ds = hf_split(HF_NAME, split, path)
    missing = {"img", "label"} - set(ds.column_names)
    if missing:
        raise KeyError(f"{path or HF_NAME}[{split}] has columns {ds.column_names}, missing {sorted(missing)}")
    offset = 0
    for batch in ds.iter(batch_size=chunk):
        rgb = np.stack([np.asarray(img.convert("RGB"), dtype=np.uint8) for img in batch["img"]])
        n = len(rgb)
        yield np.arange(offset, offset + n), rgb, np.asarray(batch["label"], dtype=np.int64)
        offset += n


def _tfds_index(example_id, split: str) -> int:
    if isinstance(example_id, np.ndarray):
        example_id = example_id.item()
    if isinstance(example_id, bytes):
        example_id = example_id.decode()
    m = re.fullmatch(rf"{split}_(\d+)", str(example_id))
    if m is None:
        raise ValueError(f"tfds cifar10 example id {example_id!r} is not '{split}_<index>'")
    return int(m.group(1))


def read_tfds(split: str, path: str | Path | None = None, chunk: int = 1000) -> Iterator[Chunk]:
    source = tfds_split(TFDS_NAME, split, path)
    for start in range(0, len(source), chunk):
        examples = [source[i] for i in range(start, min(start + chunk, len(source)))]
        yield (
            np.array([_tfds_index(ex["id"], split) for ex in examples]),
            np.stack([np.asarray(ex["image"], dtype=np.uint8) for ex in examples]),
            np.array([int(ex["label"]) for ex in examples]),
        )


def gray_split(chunks: Iterator[Chunk], split: str, progress: tqdm | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale tokens (n, 1024) uint8 and labels (n,) of one split, in TFDS (= LRA) order.

    The RGB images are converted chunk by chunk; only the grayscale split is held in memory.
    """
    indices, grays, labels = [], [], []
    for idx, rgb, lab in chunks:
        if rgb.shape[1:] != (SIDE, SIDE, 3):
            raise ValueError(f"CIFAR-10 {split}: images of shape {rgb.shape[1:]}, expected ({SIDE}, {SIDE}, 3)")
        indices.append(idx)
        grays.append(to_gray(rgb))
        labels.append(lab)
        if progress is not None:
            progress.update(len(idx))
    if not indices:
        raise ValueError(f"CIFAR-10 {split}: the source has no images")
    idx, gray, lab = np.concatenate(indices), np.concatenate(grays), np.concatenate(labels)
    n = len(idx)
    if not np.array_equal(np.sort(idx), np.arange(n)):
        raise ValueError(f"CIFAR-10 {split}: image indices are not 0..{n - 1} each once")
    if lab.min() < 0 or lab.max() >= N_CLASSES:
        raise ValueError(f"CIFAR-10 {split}: labels outside 0..{N_CLASSES - 1}")
    position = np.empty(n, dtype=np.int64)
    position[idx] = np.arange(n)  # CIFAR index -> row in what the source gave
    rows = position[tfds_order(n, split)]
    return gray[rows], lab[rows]


def n_train(n: int, val_fraction: float) -> int:
    """Rows of ``train[:(1-f)]`` as TFDS rounds a percent slice boundary (to the closest example)."""
    return int(n * (1 - val_fraction) + 0.5)


READERS = {"hf": read_hf, "tfds": read_tfds, "folder": read_folder}  # source -> reader(split, path)


def expected_meta(task: dict) -> dict:
    return {"max_len": int(task["max_len"]), "val_fraction": float(task["val_fraction"])}


def prepare(task: dict, data_dir: str | Path, *, source: str, path, read, meta: dict, workers: int) -> Path:
    """Each split as ``read(split, path)`` gives it, in grayscale and TFDS order; ``val`` cut from train."""
    if int(task["max_len"]) != SIDE * SIDE:
        raise ValueError(f"task.max_len must be {SIDE * SIDE} for CIFAR-10, got {task['max_len']}")
    if source == "hf":
        log.warning(
            "image --source hf: HF rows are taken in CIFAR order; for LRA's exact validation images "
            "use --source tfds or folder (see lra/data/image.py)"
        )
    out = prepared_dir(data_dir, "image", task["profile"])
    with PreparedWriter(out, task="image", profile=task["profile"], source=source, meta=meta) as w:
        for split in SPLITS:
            with tqdm(desc=f"image {split}", unit="img", mininterval=1.0) as bar:
                ids, labels = gray_split(read(split, path), split, progress=bar)
            if split == "train":
                n = n_train(len(ids), float(task["val_fraction"]))
                w.add_split("train", ids[:n], labels[:n])
                w.add_split("val", ids[n:], labels[n:])
            else:
                w.add_split(split, ids, labels)
    return out


register_task(
    "image",
    title="Image",
    column=4,
    average=True,
    sources=(*SOURCES, SYNTHETIC),
    readers=READERS,
    prepare=prepare,
    expected_meta=expected_meta,
    generated_source=SYNTHETIC,
    stand_in="folder",
)
