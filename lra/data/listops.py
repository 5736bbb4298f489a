"""ListOps (Nangia & Bowman 2018, as generated for LRA): generator, release reader, tokeniser.

The generator follows LRA's ``data/listops.py``: a random tree in which a node above the
depth limit is a digit with probability 0.75 and otherwise one of MIN, MAX, MED, SM over
2..max_args arguments. The serialisation is byte-compatible with the release's
``basic_{train,val,test}.tsv``: LRA writes them with ``csv.writer(f, delimiter="\\t")``, so the
header is ``Source\\tTarget`` and every line ends with ``\\r\\n`` (the csv module's default).

The task (``lra.data.registry``): sources ``generate`` (this generator, prepared on first use, also
``lra-data generate listops``) and ``release`` (the release TSVs); ids (n, ``task.max_len``) uint8.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lra.atomic import write_atomic
from lra.data.prepared import PreparedWriter, prepared_dir
from lra.data.registry import Generator, register_task
from lra.data.sources import find_release_file, require_release_path

log = logging.getLogger(__name__)

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
# The fixed vocabulary (LRA builds it from a Python set, so its order varies run to run).
VOCAB = tuple(str(i) for i in range(10)) + ("[MAX", "[MIN", "[MED", "[SM", "X")
TOKEN_IDS = {tok: i + 1 for i, tok in enumerate(VOCAB)}  # ids 1..15
PAD_ID, UNKNOWN_ID = 0, len(VOCAB) + 1  # 0 and 16
VOCAB_SIZE = len(VOCAB) + 2  # 17 ids: padding, 15 tokens, unknown
N_CLASSES = 10
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GeneratorConfig:
    """Parameters of the ListOps generator. Defaults are LRA's (96k / 2k / 2k, 500 < tokens < 2000)."""

    n_train: int = 96_000
    n_val: int = 2_000
    n_test: int = 2_000
    min_length: int = 500  # exclusive bounds on the token count, as in LRA
    max_length: int = 2_000
    max_depth: int = 10
    max_args: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.max_args < 2:
            raise ValueError(f"generator.max_args must be at least 2, got {self.max_args}")
        if not 0 <= self.min_length < self.max_length:
            raise ValueError(f"generator needs 0 <= min_length < max_length, got {self.min_length}, {self.max_length}")


def evaluate(op: str, args: list[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        return int(np.median(args))
    if op == "[SM":
        return sum(args) % 10
    raise ValueError(f"unknown ListOps operator {op}")


def _tree(rng: random.Random, depth: int, cfg: GeneratorConfig) -> tuple[str, int, int]:
    """One random (sub)tree -> (serialised text, value, token count). Root depth is 1."""
    if depth >= cfg.max_depth or rng.random() > 0.25:
        d = rng.randrange(10)
        return str(d), d, 1
    k = rng.randint(2, cfg.max_args)
    texts, values, count = [], [], 2  # the operator and its closing bracket
    for _ in range(k):
        t, v, c = _tree(rng, depth + 1, cfg)
        texts.append(t)
        values.append(v)
        count += c
    op = rng.choice(OPERATORS)
    text = "( " * (k + 1) + op + " " + " ) ".join(texts) + " ) ] )"
    return text, evaluate(op, values), count


def _sample_chunk(args: tuple[GeneratorConfig, int, int]) -> list[tuple[str, int]]:
    """``size`` accepted trees drawn from the stream seeded by (seed, chunk index)."""
    cfg, chunk, size = args
    rng = random.Random(f"{cfg.seed}-{chunk}")
    out = []
    while len(out) < size:
        text, value, count = _tree(rng, 1, cfg)
        if cfg.min_length < count < cfg.max_length:
            out.append((text, value))
    return out


def generate(cfg: GeneratorConfig, workers: int = 1, progress: bool = True) -> dict[str, list[tuple[str, int]]]:
    """Unique (expression, label) pairs split train/val/test in generation order.

    Deterministic for a given ``cfg`` whatever ``workers`` is: chunk i always comes from the
    same seed and chunks are consumed in order.
    """
    total = cfg.n_train + cfg.n_val + cfg.n_test
    chunk_size = 500
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    bar = tqdm(total=total, desc="listops", unit="expr", disable=not progress)
    next_chunk = 0
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        while len(rows) < total:
            need = total - len(rows)
            n_chunks = max(1, min(4 * max(workers, 1), -(-need // chunk_size)))
            jobs = [(cfg, next_chunk + i, chunk_size) for i in range(n_chunks)]
            next_chunk += n_chunks
            results = pool.map(_sample_chunk, jobs) if pool else map(_sample_chunk, jobs)
            for chunk in results:
                for text, value in chunk:
                    if len(rows) < total and text not in seen:
                        seen.add(text)
                        rows.append((text, value))
                        bar.update(1)
    finally:
        bar.close()
        if pool:
            pool.close()
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    return {"train": rows[:a], "val": rows[a:b], "test": rows[b:]}


def write_tsv(path: Path, rows: Iterable[tuple[str, int]]) -> None:
    """Write the release format as LRA's generator does (``csv.writer``, tab, ``\\r\\n``), atomically."""
    rows = list(rows)

    def write(f) -> None:
        writer = csv.writer(f, delimiter="\t", lineterminator="\r\n")
        writer.writerow(["Source", "Target"])
        writer.writerows(rows)

    write_atomic(path, write, needed=sum(len(text) + 6 for text, _ in rows), text=True)


def write_release(out: Path, splits: dict[str, list[tuple[str, int]]]) -> Path:
    """Write ``basic_{train,val,test}.tsv`` under ``out/listops-1000`` (the release layout)."""
    folder = Path(out) / "listops-1000"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_tsv(folder / f"basic_{split}.tsv", rows)
    return folder


def read_tsv(path: Path) -> Iterator[tuple[str, int]]:
    """(expression, label) rows of a release TSV; a malformed line raises naming file and line."""
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != ["Source", "Target"]:
            raise ValueError(f"{path}: line 1 should be the header 'Source<TAB>Target', got {header!r}")
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 tab-separated fields, got {len(row)}")
            try:
                label = int(row[1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {row[1]!r} is not an integer") from None
            if not 0 <= label < N_CLASSES:
                raise ValueError(f"{path}:{lineno}: label {label} is outside 0..{N_CLASSES - 1}")
            yield row[0], label


def tokenize(text: str) -> list[str]:
    """LRA's preprocessing: ``]`` -> ``X``, drop parentheses, split on whitespace."""
    return text.replace("]", "X").replace("(", "").replace(")", "").split()


def encode(texts: Iterable[str], max_len: int) -> np.ndarray:
    """Token ids (n, max_len) uint8: vocabulary ids 1..15, unknown 16, padding 0, truncated."""
    texts = list(texts)
    out = np.zeros((len(texts), max_len), dtype=np.uint8)
    for i, text in enumerate(texts):
        ids = [TOKEN_IDS.get(t, UNKNOWN_ID) for t in tokenize(text)[:max_len]]
        out[i, : len(ids)] = ids
    return out


def config_dict(cfg: GeneratorConfig) -> dict:
    return asdict(cfg)


# --- the task -----------------------------------------------------------------------------------


def expected_meta(task: dict) -> dict:
    meta = {"max_len": int(task["max_len"]), "source": task["source"]}
    if task["source"] == "generate":
        meta["generator"] = config_dict(GeneratorConfig(**task["generator"]))
    return meta


def read_release(path: str | Path | None) -> dict[str, list[tuple[str, int]]]:
    """The release's ``listops-1000/basic_{train,val,test}.tsv`` under ``path``, as (expression, label) rows."""
    path = require_release_path(path)
    return {s: list(read_tsv(find_release_file(path, f"listops-1000/basic_{s}.tsv"))) for s in SPLITS}


def prepare(task: dict, data_dir: str | Path, *, source: str, path, read, meta: dict, workers: int) -> Path:
    """Generate (``source=generate``) or read (``read(path)``) the three splits, tokenise, write them."""
    out = prepared_dir(data_dir, "listops", task["profile"])
    if source == "generate":
        cfg = GeneratorConfig(**task["generator"])
        log.info("generating ListOps %s with %d worker(s)", cfg, workers)
        splits = generate(cfg, workers=workers)
    else:
        splits = read(path)
    with PreparedWriter(out, task="listops", profile=task["profile"], source=source, meta=meta) as w:
        for split, rows in splits.items():
            w.add_split(split, encode((t for t, _ in rows), task["max_len"]), [label for _, label in rows])
    return out


def write_generated(task: dict, out: str | Path, *, workers: int, options: dict, task_config) -> str:
    """``lra-data generate listops``: the release TSVs with ``task.generator``'s settings."""
    cfg = GeneratorConfig(**task["generator"])
    folder = write_release(out, generate(cfg, workers=workers))
    return f"wrote {folder}/basic_{{train,val,test}}.tsv ({cfg.n_train}/{cfg.n_val}/{cfg.n_test} expressions)"


register_task(
    "listops",
    title="ListOps",
    column=1,
    average=True,
    sources=("generate", "release"),
    readers={"release": read_release},
    prepare=prepare,
    expected_meta=expected_meta,
    generated_source="generate",
    generator=Generator(write_generated),
)
