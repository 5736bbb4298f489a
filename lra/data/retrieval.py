"""LRA Retrieval: do two ACL Anthology Network papers cite each other? (Radev et al. 2013)

The release's ``tsv_data/new_aan_pairs.{train,eval,test}.tsv`` have no header and five
tab-separated columns ``label, id1, id2, text1, text2``; the text fields are fed as written
(LRA's reader does not unquote or unescape them). Two sources hold the same files:

- ``release``: the extracted ``lra_release`` folder;
- ``hf``: the Hugging Face dataset repository ``OpenNLPLab/lra``, files ``data/aan/new_aan_pairs.*.tsv``
  (downloaded with ``huggingface_hub.hf_hub_download``), or a local copy of that repository.

Preprocessing (LRA ``matching/input_pipeline.py``): each document is cut to its first 10,000
bytes, encoded ``byte + 1`` (0 = padding), then truncated/padded to ``max_len``; a pair is one row
of shape (2, max_len), uint16.

The task (``lra.data.registry``): the two sources above and ``synthetic`` (made-up pairs written as
the release's ``tsv_data/``, read as the release); each source's reader gives a split's TSV file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lra.data.prepared import PreparedWriter, prepared_dir
from lra.data.registry import SYNTHETIC, register_task
from lra.data.sources import encode_bytes, encoded_chunks, find_release_file, hf_hub_file, require_release_path

log = logging.getLogger(__name__)

SOURCES = ("release", "hf")
FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
RELEASE_DIR = "tsv_data"
HF_REPO = "OpenNLPLab/lra"
HF_DIR = "data/aan"
VOCAB_SIZE = 257
N_CLASSES = 2
N_FIELDS = 5

Row = tuple[int, bytes, bytes]


def hf_file(split: str, path: str | Path | None = None) -> Path:
    """The TSV of ``split`` from a local copy of ``OpenNLPLab/lra`` at ``path``, else from the hub."""
    name = FILES[split]
    if path is None:
        return hf_hub_file(HF_REPO, f"{HF_DIR}/{name}")
    root = Path(path).expanduser()
    for candidate in (root / HF_DIR / name, root / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"'{HF_DIR}/{name}' not found under {root} (a local copy of the {HF_REPO} repository)")


def release_file(split: str, path: str | Path | None) -> Path:
    """The TSV of ``split`` in the extracted release at ``path`` (``tsv_data/``)."""
    return find_release_file(require_release_path(path), f"{RELEASE_DIR}/{FILES[split]}")


def read_tsv(path: str | Path, progress: bool = True) -> Iterator[Row]:
    """(label, text1 bytes, text2 bytes) per line; a malformed line raises naming file and line."""
    path = Path(path)
    with (
        open(path, "rb") as f,
        tqdm(
            total=path.stat().st_size, desc=path.name, unit="B", unit_scale=True, mininterval=1.0, disable=not progress
        ) as bar,
    ):
        for lineno, line in enumerate(f, start=1):
            bar.update(len(line))
            line = line.removesuffix(b"\n").removesuffix(b"\r")
            fields = line.split(b"\t")
            if len(fields) != N_FIELDS:
                raise ValueError(
                    f"{path}:{lineno}: expected {N_FIELDS} tab-separated fields "
                    f"(label, id1, id2, text1, text2), got {len(fields)}"
                )
            try:
                value = float(fields[0])  # LRA reads the label as a float, then casts it to int
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {fields[0][:20]!r} is not a number") from None
            if value not in (0.0, 1.0):
                raise ValueError(f"{path}:{lineno}: label {value:g} is not 0 or 1")
            yield int(value), fields[3], fields[4]


def encode_pairs(rows: list[Row], max_len: int, doc_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """ids (b, 2, max_len) uint16 and labels (b,): byte + 1 of each document's first ``doc_bytes`` bytes."""
    first = encode_bytes((r[1][:doc_bytes] for r in rows), max_len)  # (b, max_len)
    second = encode_bytes((r[2][:doc_bytes] for r in rows), max_len)
    return np.stack([first, second], axis=1), np.array([r[0] for r in rows])


def chunks(path: Path, max_len: int, doc_bytes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Streams one TSV as (ids, labels) chunks for ``PreparedWriter.add_chunks``."""
    return encoded_chunks(
        read_tsv(path), lambda b: encode_pairs(b, max_len, doc_bytes), desc=path.name, progress=False
    )  # read_tsv's bar shows bytes read of the file


def expected_meta(task: dict) -> dict:
    return {"max_len": int(task["max_len"]), "doc_bytes": int(task["doc_bytes"])}


def prepare(task: dict, data_dir: str | Path, *, source: str, path, read, meta: dict, workers: int) -> Path:
    """Each split's TSV (``read(split, path)``, all found before anything is written), as pairs of ids."""
    files = {split: read(split, path) for split in FILES}
    out = prepared_dir(data_dir, "retrieval", task["profile"])
    max_len, doc_bytes = int(task["max_len"]), int(task["doc_bytes"])
    with PreparedWriter(out, task="retrieval", profile=task["profile"], source=source, meta=meta) as w:
        for split, file in files.items():
            w.add_chunks(split, chunks(file, max_len, doc_bytes), row_shape=(2, max_len), dtype=np.uint16)
    return out


register_task(
    "retrieval",
    title="Retrieval",
    column=3,
    average=True,
    sources=(*SOURCES, SYNTHETIC),
    readers={"release": release_file, "hf": hf_file},
    prepare=prepare,
    expected_meta=expected_meta,
    generated_source=SYNTHETIC,
    stand_in="release",
)
