"""LRA Text: IMDB bytes from a HF parquet copy, TFDS (mock_data + data_source) and an aclImdb tree."""

import sys

import numpy as np
import pytest

from lra.config import compose_config
from lra.data import text
from lra.data.cli import main as lra_data
from lra.data.prepared import MissingDataError, load_split, read_manifest
from lra.data.sources import encode_bytes
from lra.data.tasks import ensure_prepared
from tests.task_data import (
    IMDB,
    cli_prepare,
    mock_tfds,
    prepared_bytes,
    tfds_imdb_records,
    train_tiny,
    write_acl_imdb,
    write_hf_imdb,
)

MAX_LEN = 64


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def prepare(tmp_path, source, path=None, *overrides):
    return cli_prepare(tmp_path, "text", source, path, f"task.max_len={MAX_LEN}", *overrides)


def expected(split):
    """The oracle: stripped UTF-8 bytes + 1, padded with 0 to MAX_LEN, sorted by (label, bytes)."""
    rows = sorted((t.encode("utf-8").strip(), lab) for t, lab, _, _ in IMDB[split])
    rows.sort(key=lambda r: (r[1], r[0]))
    ids = np.zeros((len(rows), MAX_LEN), dtype=np.uint16)
    for i, (doc, _) in enumerate(rows):
        ids[i, : min(len(doc), MAX_LEN)] = [b + 1 for b in doc[:MAX_LEN]]
    return ids, np.array([lab for _, lab in rows])


def test_byte_encoding_known_ids():
    ids = encode_bytes(["é!".encode(), b"", b"abcdef"], max_len=4)
    assert ids.dtype == np.uint16
    np.testing.assert_array_equal(
        ids,
        [[0xC3 + 1, 0xA9 + 1, ord("!") + 1, 0], [0, 0, 0, 0], [ord("a") + 1, ord("b") + 1, ord("c") + 1, ord("d") + 1]],
    )
    assert encode_bytes([b"\xff\x00"], 3).tolist() == [[256, 1, 0]]  # byte 255 -> 256, byte 0 -> 1 (not padding)


def test_every_source_prepares_the_same_arrays(tmp_path):
    folder = prepare(tmp_path / "f", "folder", write_acl_imdb(tmp_path / "raw"))
    hf = prepare(tmp_path / "h", "hf", write_hf_imdb(tmp_path / "hub"))
    with mock_tfds(tfds_imdb_records()):
        tf = prepare(tmp_path / "t", "tfds")
    for split in ("train", "test"):
        ids, labels = load_split(folder, split)
        want_ids, want_labels = expected(split)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(labels, want_labels)
    assert prepared_bytes(folder) == prepared_bytes(hf) == prepared_bytes(tf)
    m = read_manifest(hf)
    assert m["source"] == "hf" and m["meta"] == {"max_len": MAX_LEN, "strip": True, "holdout": 0}
    assert {s: e["n"] for s, e in m["splits"].items()} == {"train": 6, "test": 4}
    long_row = expected("train")[0][2]  # "Terrible, " * 10 is 99 bytes once stripped: cut at 64
    assert bytes((long_row - 1).astype(np.uint8)) == ("Terrible, " * 10)[:MAX_LEN].encode()


def test_saved_dataset_and_tfds_generated_records(tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.load_dataset(str(write_hf_imdb(tmp_path / "hub"))).save_to_disk(str(saved))
    assert list(text.read_hf("test", saved)) == [(t.encode(), lab) for t, lab, _, _ in IMDB["test"]]
    # mock_data's own random records (str text, array labels) through the real tfds.data_source
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        source = tfds.data_source("imdb_reviews", split="train")
        rows = list(text.read_tfds("train"))
        assert rows == [(source[i]["text"].encode(), int(source[i]["label"])) for i in range(3)]


def test_holdout_is_seeded_and_disjoint(tmp_path):
    out = prepare(tmp_path, "folder", write_acl_imdb(tmp_path / "raw"), "task.holdout=2", "task.holdout_seed=3")
    train, val = load_split(out, "train"), load_split(out, "val")
    want_ids, _ = expected("train")
    assert len(train[0]) == 4 and len(val[0]) == 2
    got = sorted(map(bytes, np.concatenate([train[0], val[0]])))
    assert got == sorted(map(bytes, want_ids))  # a partition of the training split
    rows = text.canonical(((t.encode(), lab) for t, lab, _, _ in IMDB["train"]), strip=True)
    assert text.holdout(rows, 2, 3) == text.holdout(rows, 2, 3) != text.holdout(rows, 2, 4)


def test_folder_file_names_and_missing_data_are_explained(tmp_path):
    root = write_acl_imdb(tmp_path)
    (root / "train" / "pos" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt: not an aclImdb review file name"):
        list(text.read_folder("train", tmp_path))
    with pytest.raises(FileNotFoundError, match="no aclImdb/train/pos"):
        list(text.read_folder("train", tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"--source folder needs --path DIR \(the extracted aclImdb folder\)"):
        list(text.read_folder("train", None))


def test_missing_package_and_unknown_source(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="has no source 'kaggle'; valid sources: hf, tfds, folder"):
        lra_data(["prepare", "text", "--source", "kaggle", f"paths.data_dir={tmp_path}"])
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[tfds\]"'):
        list(text.read_tfds("train"))


@pytest.mark.parametrize(
    ("source", "command"),
    [
        ("folder", "lra-data prepare text --source folder --path DIR task.source=folder"),
        ("hf", "lra-data prepare text --source hf task.source=hf"),
    ],
)
def test_unprepared_data_names_the_command(tmp_path, source, command):
    overrides = [f"task.source={source}"]
    task = compose_config(["task=text", *overrides]).task
    with pytest.raises(MissingDataError, match="Prepare it once with:\n  " + command):
        ensure_prepared(dict(task), tmp_path, overrides=overrides)


def test_training_end_to_end(tmp_path):
    prepare(tmp_path, "folder", write_acl_imdb(tmp_path / "raw"))
    overrides = [
        "task=text",
        "model=tiny",
        f"task.max_len={MAX_LEN}",
        "data.batch_size=2",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
    ]
    record = train_tiny(tmp_path, overrides)
    assert (record["task"], record["steps"], record["config"]["task"]["val_split"]) == ("text", 3, "test")
