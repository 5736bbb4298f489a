"""Miniature raw data in the real formats of each source (tiny sizes, built inside the tests).

Each writer puts the same content in one source's layout, so the tests can check that every
source of a task prepares identical arrays.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from lra.data import retrieval, synthetic

# IMDB: (text, label) per split. Multi-byte UTF-8, surrounding whitespace (TFDS strips it), a
# review longer than the tests' max_len, and ids that sort differently as numbers and as text.
IMDB = {
    "train": [
        ("A dull film.", 0, 10, 2),
        ("  Not good at all\n", 0, 2, 1),
        ("Terrible, " * 10, 0, 7, 3),
        ("Great — loved it!", 1, 3, 9),
        ("Wonderful café scenes.", 1, 11, 8),
        ("Best 😀", 1, 1, 10),
    ],
    "test": [
        ("Boring.", 0, 4, 1),
        ("Bad acting", 0, 12, 4),
        ("Superb", 1, 5, 10),
        (" Fine ", 1, 6, 7),
    ],
}  # text, label, review id, rating


def write_acl_imdb(root: Path) -> Path:
    """``root/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt``."""
    return synthetic.write_acl_imdb(root, IMDB)


def write_hf_imdb(root: Path) -> Path:
    """A local copy of ``stanfordnlp/imdb`` in the hub layout: ``plain_text/<split>-00000-of-00001.parquet``."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    for split, rows in IMDB.items():
        ds = datasets.Dataset.from_dict(
            {"text": [r[0] for r in rows], "label": [r[1] for r in rows]}, features=features
        )
        ds.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return root


@contextlib.contextmanager
def mock_tfds(records: dict[str, list[dict]]):
    """``tfds.testing.mock_data`` serving ``records[split]`` to ``tfds.data_source`` (no TensorFlow, no files)."""
    import tensorflow_datasets as tfds

    def as_data_source(self, split=None, **kwargs):
        return list(records[split])

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        yield


def tfds_imdb_records() -> dict[str, list[dict]]:
    """IMDB as TFDS stores it: text stripped (``imdb_f.read().strip()``), bytes, in a shuffled order."""
    out = {}
    for split, rows in IMDB.items():
        recs = [{"text": t.encode("utf-8").strip(), "label": np.int64(lab)} for t, lab, _, _ in rows]
        out[split] = recs[::-1]
    return out


# CIFAR-10: 5 training batches of 4 images and a test batch of 10, random but seeded.
CIFAR_PER_BATCH, CIFAR_TEST = 4, 10


def cifar_images() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (RGB (n, 32, 32, 3) uint8, labels (n,)) in the original CIFAR order."""
    rng = np.random.default_rng(0)
    n = {"train": 5 * CIFAR_PER_BATCH, "test": CIFAR_TEST}
    return {s: (rng.integers(0, 256, (k, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, k)) for s, k in n.items()}


def write_cifar_batches(root: Path) -> Path:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}``: pickled dicts, data (n, 3072) channel-major."""
    return synthetic.write_cifar_batches(root, cifar_images())


def write_hf_cifar(root: Path) -> Path:
    """A local copy of ``uoft-cs/cifar10`` in the hub layout (PNG images in parquet)."""
    import datasets
    from PIL import Image

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    for split, (rgb, labels) in cifar_images().items():
        ds = datasets.Dataset.from_dict(
            {"img": [Image.fromarray(x) for x in rgb], "label": labels.tolist()}, features=features
        )
        ds.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return root


def tfds_cifar_records() -> dict[str, list[dict]]:
    """CIFAR-10 as ``tfds.data_source('cifar10')`` serves it: ids ``train_00003``, in TFDS's hashed order."""
    from tensorflow_datasets.core.hashing import Hasher

    out = {}
    for split, (rgb, labels) in cifar_images().items():
        hasher = Hasher(split)
        order = sorted(range(len(rgb)), key=hasher.hash_key)
        out[split] = [{"id": f"{split}_{i:05d}", "image": rgb[i], "label": np.int64(labels[i])} for i in order]
    return out


# AAN pairs: label, id1, id2, text1, text2 (multi-byte UTF-8, an empty document, a 12,000-byte line).
LONG_DOC = "x" * 9_998 + "é" + "tail after ten thousand bytes"
AAN = {
    "train": [
        (1, "P01", "P02", "b'Attention is all'", "b'Caf\\xc3\\xa9 paper'"),
        (0, "P03", "P04", "Ünïcödé “quotes”", ""),
        (1, "P05", "P06", LONG_DOC, "short"),
        (0, "P07", "P08", "a\\nb", "tab-free text"),
    ],
    "val": [(0, "P09", "P10", "val one", "val two"), (1, "P11", "P12", "€uro", "yen ¥")],
    "test": [(1, "P13", "P14", "test a", "test b"), (0, "P15", "P16", "", "")],
}
AAN_FILES = retrieval.FILES


def write_aan(folder: Path) -> Path:
    """The three TSVs into ``folder``: no header, five tab-separated fields, labels written as floats (``1.0``)."""
    return synthetic.write_aan_tsvs(folder, AAN)


def prepared_bytes(folder: Path) -> dict[str, bytes]:
    """Every prepared array file's bytes (the manifest differs by source and time, the arrays must not)."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.npy"))}


def cli_prepare(tmp_path: Path, task: str, source: str, path: Path | None = None, *overrides: str) -> Path:
    """``lra-data prepare TASK --source SOURCE [--path PATH]`` into ``tmp_path/data``; the prepared folder."""
    from lra.data.cli import main

    args = ["prepare", task, "--source", source, f"paths.data_dir={tmp_path / 'data'}", *overrides]
    assert main(args + (["--path", str(path)] if path else [])) == 0
    return tmp_path / "data" / task / "lra"


def train_tiny(tmp_path: Path, overrides: list[str]) -> dict:
    """One short ``lra.train.run`` on the data prepared in ``tmp_path/data``; checks the result record."""
    from lra.config import compose_config
    from lra.results import RESULT_FIELDS, load_result
    from lra.train import run

    overrides = [
        *overrides,
        f"paths.data_dir={tmp_path / 'data'}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "measure.warmup_steps=1",
    ]
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    assert load_result(tmp_path / "run" / "result.json") == record
    assert set(RESULT_FIELDS) <= set(record)
    assert 0 <= record["val_acc"] <= 1 and 0 <= record["test_acc"] <= 1 and record["step_time_ms"] > 0
    return record
