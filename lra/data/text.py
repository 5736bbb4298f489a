"""LRA Text: IMDB movie reviews (Maas et al. 2011) as UTF-8 bytes, binary sentiment.

Three readers give the same (text bytes, label) rows, label 0 = neg, 1 = pos:

- ``hf``: the Hugging Face dataset ``stanfordnlp/imdb`` (fields ``text``, ``label``), or a local
  copy of it (its parquet folder, or a dataset saved with ``save_to_disk``);
- ``tfds``: TFDS ``imdb_reviews`` through ``tfds.data_source`` (what LRA's code reads);
- ``folder``: the extracted ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``.

Preprocessing (LRA): strip surrounding ASCII whitespace (TFDS strips every review, the raw
files and the HF copy do not), ``byte + 1`` of the UTF-8 encoding, 0 = padding, truncate/pad to
``max_len``. Each split is sorted by (label, bytes), so the prepared arrays do not depend on the
order a source happens to store the reviews in, and a seeded holdout picks the same reviews
whichever source was used.

The task (``lra.data.registry``): the three sources above and ``synthetic`` (made-up reviews in the
``aclImdb`` layout, read by the folder reader); ids (n, ``task.max_len``) uint16; with
``task.holdout`` > 0, that many training reviews (seeded) become the split ``val``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lra.data.prepared import PreparedWriter, prepared_dir
from lra.data.registry import SYNTHETIC, register_task
from lra.data.sources import encode_bytes, encoded_chunks, hf_split, tfds_split

log = logging.getLogger(__name__)

HF_NAME = "stanfordnlp/imdb"
TFDS_NAME = "imdb_reviews"
SOURCES = ("hf", "tfds", "folder")
SPLITS = ("train", "test")
LABELS = ("neg", "pos")  # ids 0, 1 in every source
VOCAB_SIZE = 257  # padding 0, bytes 1..256
N_CLASSES = 2
_FILE_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")

Row = tuple[bytes, int]


def _as_bytes(text) -> bytes:
    if isinstance(text, np.ndarray):
        text = text.item()
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def read_hf(split: str, path: str | Path | None = None) -> Iterator[Row]:
    ds = hf_split(HF_NAME, split, path)
    missing = {"text", "label"} - set(ds.column_names)
    if missing:
        raise KeyError(f"{path or HF_NAME}[{split}] has columns {ds.column_names}, missing {sorted(missing)}")
    for batch in ds.iter(batch_size=1000):
        for text, label in zip(batch["text"], batch["label"]):
            yield _as_bytes(text), int(label)


def read_tfds(split: str, path: str | Path | None = None) -> Iterator[Row]:
    source = tfds_split(TFDS_NAME, split, path)
    for i in range(len(source)):
        ex = source[i]
        yield _as_bytes(ex["text"]), int(ex["label"])


def find_acl_imdb(path: str | Path | None) -> Path:
    """The ``aclImdb`` folder: ``path`` itself or ``path/aclImdb``."""
    if path is None:
        raise ValueError("--source folder needs --path DIR (the extracted aclImdb folder)")
    root = Path(path).expanduser()
    for candidate in (root, root / "aclImdb"):
        if (candidate / "train" / "pos").is_dir():
            return candidate
    raise FileNotFoundError(f"no aclImdb/train/pos under {root} (expected the extracted aclImdb_v1.tar.gz)")


def read_folder(split: str, path: str | Path | None) -> Iterator[Row]:
    """Reviews of ``aclImdb/<split>/{neg,pos}``, each folder in increasing review id."""
    root = find_acl_imdb(path)
    for label, name in enumerate(LABELS):
        folder = root / split / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing")
        files = []
        for f in folder.glob("*.txt"):
            m = _FILE_NAME.match(f.name)
            if m is None:
                raise ValueError(f"{f}: not an aclImdb review file name (<id>_<rating>.txt)")
            files.append((int(m.group(1)), f))
        for _, f in sorted(files):
            yield f.read_bytes(), label


def canonical(rows: Iterator[Row], *, strip: bool) -> list[Row]:
    """The split in a source-independent order: sorted by (label, bytes), optionally stripped."""
    rows = [(doc.strip() if strip else doc, label) for doc, label in rows]
    for _, label in rows:
        if label not in (0, 1):
            raise ValueError(f"IMDB label {label} is not 0 (neg) or 1 (pos)")
    return sorted(rows, key=lambda r: (r[1], r[0]))


def holdout(rows: list[Row], n: int, seed: int) -> tuple[list[Row], list[Row]]:
    """(train, val): ``n`` rows drawn with ``seed`` form the validation split, order kept."""
    if not 0 < n < len(rows):
        raise ValueError(f"task.holdout must be between 1 and {len(rows) - 1}, got {n}")
    held = np.zeros(len(rows), dtype=bool)
    held[np.random.default_rng(seed).permutation(len(rows))[:n]] = True
    return [r for r, h in zip(rows, held) if not h], [r for r, h in zip(rows, held) if h]


def chunks(rows: list[Row], max_len: int, desc: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids (b, max_len) uint16, labels) chunks for ``PreparedWriter.add_chunks``."""
    return encoded_chunks(
        rows,
        lambda b: (encode_bytes((d for d, _ in b), max_len), np.array([lab for _, lab in b])),
        desc=desc,
        total=len(rows),
    )


READERS = {"hf": read_hf, "tfds": read_tfds, "folder": read_folder}  # source -> reader(split, path)


def expected_meta(task: dict) -> dict:
    meta = {"max_len": int(task["max_len"]), "strip": bool(task["strip"]), "holdout": int(task["holdout"])}
    if meta["holdout"]:
        meta["holdout_seed"] = int(task["holdout_seed"])
    return meta


def prepare(task: dict, data_dir: str | Path, *, source: str, path, read, meta: dict, workers: int) -> Path:
    """Each split's reviews as ``read(split, path)`` gives them, in canonical order, encoded."""
    out = prepared_dir(data_dir, "text", task["profile"])
    max_len = int(task["max_len"])
    with PreparedWriter(out, task="text", profile=task["profile"], source=source, meta=meta) as w:
        for split in SPLITS:
            rows = canonical(read(split, path), strip=task["strip"])
            if split == "train" and task["holdout"]:
                rows, held = holdout(rows, int(task["holdout"]), int(task["holdout_seed"]))
                w.add_chunks("val", chunks(held, max_len, "text val"), row_shape=(max_len,), dtype=np.uint16)
            w.add_chunks(split, chunks(rows, max_len, f"text {split}"), row_shape=(max_len,), dtype=np.uint16)
    return out


register_task(
    "text",
    title="Text",
    column=2,
    average=True,
    sources=(*SOURCES, SYNTHETIC),
    readers=READERS,
    prepare=prepare,
    expected_meta=expected_meta,
    generated_source=SYNTHETIC,
    stand_in="folder",
)
