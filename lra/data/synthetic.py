"""Synthetic stand-ins for the downloaded tasks (Text, Retrieval, Image): a pipeline check, not the data.

``source: synthetic`` lets a task run with no download (mini LRA, tests): the writers below put
small, seeded raw files in the task's real format, and the task prepares them through its real
reading code (``aclImdb`` folder reader, AAN TSV reader, CIFAR-10 pickle reader with TF's
grayscale and TFDS's order). Accuracy on them says the pipeline learns; it says nothing about
IMDB, AAN or CIFAR-10, and must never be compared with published numbers.

Each set carries a simple learnable signal, so a model above chance shows that inputs, labels
and training are wired together:

- text: short "reviews" of neutral words plus a few sentiment words of the review's label, the
  positive ones exclaimed and the negative ones in capitals (and sometimes one of the other label,
  so the task is not trivially separable);
- retrieval: two "abstracts", each mixing common words with the keywords of one of four topics,
  tagged with the topic's mark (``#parser``, ``$bleu``); label 1 (the papers cite each other) when
  the topics agree;
- image: a noisy dark 32x32 RGB image with a gray rectangle anywhere, its brightness band being
  the class.

Everything is a pure function of ``seed`` and the sizes (``numpy.random.default_rng``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from lra.data import image, retrieval

# --- text: IMDB reviews in the aclImdb layout -----------------------------------------------------

NEUTRAL = (
    "the", "a", "this", "it", "was", "is", "and", "but", "with", "of", "in", "on", "very", "quite",
    "film", "movie", "plot", "story", "actor", "actress", "scene", "director", "camera", "music",
    "ending", "character", "script", "cast", "time", "minutes", "watched", "role", "dialogue",
    "pace", "sequel", "café", "naïve", "cliché", "—",
)  # fmt: skip
POSITIVE = ("great", "wonderful", "superb", "loved", "brilliant", "moving", "excellent", "funny")
NEGATIVE = ("awful", "boring", "terrible", "hated", "dull", "weak", "poor", "silly")
IMDB_SPLITS = ("train", "test")
LABEL_FOLDERS = ("neg", "pos")  # label 0, 1 as in aclImdb


def _first_upper(sentence: str) -> str:
    """The sentence with its first letter in capitals (``str.capitalize`` would lower the shouted words)."""
    return sentence[:1].upper() + sentence[1:]


def cue(rng: np.random.Generator, label: int) -> str:
    """A sentiment word of ``label``: positive ones exclaimed (``great!``), negative ones shouted (``AWFUL``),
    so single bytes ('!', capitals) carry the label, which even a tiny byte-level model picks up quickly."""
    return f"{rng.choice(POSITIVE)}!" if label == 1 else str(rng.choice(NEGATIVE)).upper()


def review(rng: np.random.Generator, label: int) -> str:
    """One review: 30-90 words in sentences, 3-7 sentiment words of its label, 30% one of the other label."""
    words = list(rng.choice(NEUTRAL, size=int(rng.integers(30, 91))))
    for pos in rng.choice(len(words), size=int(rng.integers(3, 8)), replace=False):
        words[pos] = cue(rng, label)
    if rng.random() < 0.3:
        words[int(rng.integers(len(words)))] = cue(rng, 1 - label)
    sentences, i = [], 0
    while i < len(words):
        n = int(rng.integers(6, 16))
        sentences.append(_first_upper(" ".join(words[i : i + n])) + ".")
        i += n
    text = " ".join(sentences)
    return f"  {text}\n" if rng.random() < 0.1 else text  # IMDB files are not stripped; TFDS strips them


Review = tuple[str, int, int, int]  # text, label (0 neg, 1 pos), review id, rating


def write_acl_imdb(root: str | Path, reviews: dict[str, list[Review]]) -> Path:
    """``root/aclImdb/<split>/{neg,pos}/<id>_<rating>.txt``, one UTF-8 file per review; the aclImdb folder."""
    base = Path(root) / "aclImdb"
    for split, rows in reviews.items():
        for folder in LABEL_FOLDERS:
            (base / split / folder).mkdir(parents=True, exist_ok=True)
        for text, label, rid, rating in rows:
            (base / split / LABEL_FOLDERS[label] / f"{rid}_{rating}.txt").write_bytes(text.encode("utf-8"))
    return base


def imdb_reviews(*, n_train: int, n_test: int, seed: int) -> dict[str, list[Review]]:
    """Seeded reviews per split, labels a fair coin, ratings 1-4 (neg) or 7-10 (pos) as in IMDB."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    out: dict[str, list[Review]] = {}
    for split, n in zip(IMDB_SPLITS, (n_train, n_test)):
        labels = rng.integers(0, 2, size=n)
        out[split] = [
            (review(rng, int(y)), int(y), i, int(rng.integers(7, 11) if y else rng.integers(1, 5)))
            for i, y in enumerate(labels)
        ]
    return out


def write_imdb(root: str | Path, *, n_train: int, n_test: int, seed: int) -> Path:
    """The synthetic reviews as ``root/aclImdb``; returns that folder."""
    return write_acl_imdb(root, imdb_reviews(n_train=n_train, n_test=n_test, seed=seed))


# --- retrieval: AAN pairs as the release's TSVs ----------------------------------------------------

TOPICS = (
    ("parser", "treebank", "grammar", "syntax", "dependency", "constituent", "parsing", "tree"),
    ("translation", "alignment", "bilingual", "phrase", "decoder", "bleu", "source", "target"),
    ("speech", "acoustic", "phoneme", "prosody", "recognizer", "spoken", "audio", "dialogue"),
    ("semantic", "lexical", "wordnet", "sense", "frame", "meaning", "ontology", "entailment"),
)
COMMON = (
    "we", "the", "a", "model", "method", "results", "data", "paper", "show", "propose", "corpus",
    "task", "approach", "evaluation", "using", "based", "on", "for", "of", "and", "in", "is", "this",
    "our", "system", "performance", "features", "training", "set", "résumé",
)  # fmt: skip


TOPIC_MARKS = ("#", "$", "%", "&")  # one byte per topic, tagging its keywords


def abstract(rng: np.random.Generator, topic: int) -> str:
    """40-120 words, each a keyword of ``topic`` tagged with its mark (``#parser``) with probability 0.5,
    else a common word; the mark makes the topic visible in single bytes."""
    n = int(rng.integers(40, 121))
    own = rng.random(n) < 0.5
    keywords = np.char.add(TOPIC_MARKS[topic], rng.choice(TOPICS[topic], size=n))
    words = np.where(own, keywords, rng.choice(COMMON, size=n))
    return _first_upper(" ".join(words)) + "."


Pair = tuple[int, str, str, str, str]  # label, id1, id2, text1, text2


def write_aan_tsvs(folder: str | Path, pairs: dict[str, list[Pair]]) -> Path:
    """``folder/new_aan_pairs.{train,eval,test}.tsv``: no header, ``label id1 id2 text1 text2`` tab-separated,
    labels written as floats (``1.0``) as LRA reads them; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in pairs.items():
        lines = [f"{float(label)}\t{a}\t{b}\t{t1}\t{t2}\n" for label, a, b, t1, t2 in rows]
        (folder / retrieval.FILES[split]).write_bytes("".join(lines).encode("utf-8"))
    return folder


def aan_pairs(*, n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, list[Pair]]:
    """Seeded pairs per split: label a fair coin, the second paper's topic equal to the first's iff label 1."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    out: dict[str, list[Pair]] = {}
    paper = 0
    for split, n in zip(retrieval.FILES, (n_train, n_val, n_test)):
        out[split] = []
        for _ in range(n):
            label = int(rng.integers(2))
            t1 = int(rng.integers(len(TOPICS)))
            t2 = t1 if label else (t1 + int(rng.integers(1, len(TOPICS)))) % len(TOPICS)
            out[split].append((label, f"S{paper:05d}", f"S{paper + 1:05d}", abstract(rng, t1), abstract(rng, t2)))
            paper += 2
    return out


def write_aan(root: str | Path, *, n_train: int, n_val: int, n_test: int, seed: int) -> Path:
    """The synthetic pairs as ``root/tsv_data/*.tsv`` (the release's layout); returns ``root``."""
    pairs = aan_pairs(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    write_aan_tsvs(Path(root) / retrieval.RELEASE_DIR, pairs)
    return Path(root)


# --- image: CIFAR-10 as the python pickles -------------------------------------------------------

SIDE, N_CLASSES = image.SIDE, image.N_CLASSES


def images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """RGB (n, 32, 32, 3) uint8: dark noise (0-39) and a rectangle of 8-16 x 8-16 pixels at a random
    place, nearly gray, whose brightness band is the class (``60 + 19 * label``, +-1 per pixel and
    channel); the class shows in the histogram of gray values, wherever the rectangle is."""
    n = len(labels)
    out = rng.integers(0, 40, size=(n, SIDE, SIDE, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        h, w = rng.integers(8, 17, size=2)
        y, x = int(rng.integers(0, SIDE - h + 1)), int(rng.integers(0, SIDE - w + 1))
        level = 60 + 19 * int(label) + rng.integers(-1, 2, size=(h, w, 3))
        out[i, y : y + h, x : x + w] = level.astype(np.uint8)
    return out


def write_cifar_batches(root: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}`` from split -> (RGB (n, 32, 32, 3) uint8,
    labels (n,)): pickled dicts with ``data`` (n, 3072) channel-major and ``labels``, as the CIFAR-10
    python archive, the training images in five equal batches; returns that folder."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in image.BATCH_FILES.items():
        rgb, labels = splits[split]
        if len(rgb) % len(names):
            raise ValueError(f"{split}: {len(rgb)} images do not split into {len(names)} equal batches")
        size = len(rgb) // len(names)
        for k, name in enumerate(names):
            part = slice(k * size, (k + 1) * size)
            batch = {
                b"batch_label": name.encode(),
                b"labels": [int(y) for y in labels[part]],
                b"data": rgb[part].transpose(0, 3, 1, 2).reshape(size, -1),  # R plane, G plane, B plane
                b"filenames": [f"{name}_{i}.png".encode() for i in range(size)],
            }
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f)
    return folder


def cifar_images(*, n_train: int, n_test: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded split -> (RGB (n, 32, 32, 3) uint8, labels (n,)), labels uniform over the 10 classes."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    out = {}
    for split, n in zip(image.SPLITS, (n_train, n_test)):
        labels = rng.integers(0, N_CLASSES, size=n)
        out[split] = images(rng, labels), labels
    return out


def write_cifar(root: str | Path, *, n_train: int, n_test: int, seed: int) -> Path:
    """The synthetic images as ``root/cifar-10-batches-py`` (``n_train`` a multiple of 5); returns that folder."""
    return write_cifar_batches(root, cifar_images(n_train=n_train, n_test=n_test, seed=seed))


# task -> writer(root, **task.synthetic) -> the path its stand-in reader reads (lra.data.registry's stand_in)
WRITERS = {"text": write_imdb, "retrieval": write_aan, "image": write_cifar}
