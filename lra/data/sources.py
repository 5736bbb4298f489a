"""Shared readers for the downloadable sources: Hugging Face datasets and hub files, TFDS, byte encoding.

Each optional package is imported lazily, so a missing one only matters for the source that
needs it, and the error names what to install.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")


def check_source(task: str, source: str, valid: Sequence[str]) -> None:
    if source not in valid:
        raise ValueError(f"task '{task}' has no source '{source}'; valid sources: {', '.join(valid)}")


def import_tfds():
    """``tensorflow_datasets`` (no TensorFlow needed: ``tfds.data_source`` reads ArrayRecord files)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError('--source tfds needs tensorflow-datasets: pip install -e ".[tfds]"') from e
    return tfds


def tfds_split(name: str, split: str, data_dir: str | Path | None) -> Sequence[dict]:
    """One split of a TFDS dataset as a random-access data source (downloads and prepares it on first use)."""
    tfds = import_tfds()
    log.info("reading tfds %s[%s] (data_dir %s)", name, split, data_dir or "tfds default")
    return tfds.data_source(
        name,
        split=split,
        data_dir=None if data_dir is None else str(Path(data_dir).expanduser()),
        builder_kwargs={"file_format": "array_record"},
    )


def hf_split(name: str, split: str, path: str | Path | None = None):
    """One split of a Hugging Face dataset: the hub dataset ``name``, or a local copy at ``path``.

    ``path`` may be a folder of the hub repository (its parquet files, e.g. ``plain_text/train-*.parquet``)
    or a dataset saved with ``save_to_disk``.
    """
    try:
        import datasets
    except ImportError as e:
        raise ImportError("--source hf needs the datasets package: pip install -e .") from e
    if path is None:
        log.info("loading %s[%s] from the Hugging Face hub (cached after the first download)", name, split)
        return datasets.load_dataset(name, split=split)
    local = Path(path).expanduser()
    if not local.is_dir():
        raise FileNotFoundError(f"--path {local} is not a folder (expected a local copy of {name})")
    if (local / "dataset_dict.json").is_file():
        saved = datasets.load_from_disk(str(local))
        if split not in saved:
            raise KeyError(f"{local}: saved dataset has splits {sorted(saved)}, not '{split}'")
        return saved[split]
    return datasets.load_dataset(str(local), split=split)


def hf_hub_file(repo: str, filename: str, *, revision: str | None = None) -> Path:
    """A file of a Hugging Face hub dataset repository, downloaded once into the hub cache."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise ImportError("--source hf needs huggingface_hub (installed with datasets): pip install -e .") from e
    return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=revision))


def encode_bytes(docs: Iterable[bytes], max_len: int) -> np.ndarray:
    """Byte-level ids (n, max_len) uint16: ``byte + 1`` (1..256), 0 = padding, truncated to ``max_len``.

    This is ``tfds.deprecated.text.ByteTextEncoder`` (one reserved id, padding) as LRA uses it.
    """
    docs = list(docs)
    out = np.zeros((len(docs), max_len), dtype=np.uint16)
    for i, doc in enumerate(docs):
        b = np.frombuffer(doc[:max_len], dtype=np.uint8)
        out[i, : len(b)] = b.astype(np.uint16) + 1
    return out


def encoded_chunks(
    rows: Iterable[T],
    encode: Callable[[list[T]], tuple[np.ndarray, np.ndarray]],
    *,
    desc: str,
    total: int | None = None,
    size: int = 512,
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``encode`` applied to consecutive batches of ``size`` rows, with a progress bar: the
    ``(ids, labels)`` chunks ``PreparedWriter.add_chunks`` streams to disk."""
    with tqdm(total=total, desc=desc, unit="ex", mininterval=1.0, disable=not progress) as bar:
        it = iter(rows)
        while batch := list(itertools.islice(it, size)):
            yield encode(batch)
            bar.update(len(batch))


# The release archive often extracts nested once or twice: accept all three layouts.
RELEASE_NESTINGS = (".", "lra_release", "lra_release/lra_release")


def release_roots(path: str | Path) -> list[Path]:
    """The folders an extracted ``lra_release`` may hold its content in, outermost first."""
    root = Path(path).expanduser()
    return [root / nest for nest in RELEASE_NESTINGS]


def find_release_file(path: str | Path, relative: str) -> Path:
    """``path/relative`` where ``path`` is the extracted release, also when nested as
    ``lra_release/`` or ``lra_release/lra_release/`` (as the archive often extracts)."""
    candidates = [root / relative for root in release_roots(path)]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"'{relative}' not found under {path} (looked in {', '.join(str(c) for c in candidates)})")


def require_release_path(path: str | Path | None) -> str | Path:
    """``path``, or a clear error when ``--source release`` was given without it."""
    if path is None:
        raise ValueError("--source release needs --path DIR (the extracted lra_release folder)")
    return path


def data_path_exists(source: str, path: str | Path | None) -> bool:
    """False only for a raw-data path that is given but missing (tfds fills its data_dir itself)."""
    return path is None or source == "tfds" or Path(path).expanduser().exists()
