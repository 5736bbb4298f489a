import json

import numpy as np
import pytest

from lra.data.prepared import CorruptDataError, PreparedWriter, load_split, read_manifest, verify


def test_streamed_chunks_equal_whole_arrays(tmp_path):
    ids = np.arange(60, dtype=np.uint16).reshape(10, 6)
    labels = np.arange(10) % 2
    with PreparedWriter(tmp_path / "a", task="t", profile="p", source="s") as w:
        w.add_split("train", ids, labels)
    with PreparedWriter(tmp_path / "b", task="t", profile="p", source="s") as w:
        w.add_chunks("train", [(ids[:3], labels[:3]), (ids[3:], labels[3:])], row_shape=(6,), dtype=np.uint16)
    for folder in ("a", "b"):
        got_ids, got_labels = load_split(tmp_path / folder, "train")
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_labels, labels)
        assert read_manifest(tmp_path / folder)["splits"]["train"]["label_counts"] == {"0": 5, "1": 5}
    assert (tmp_path / "a" / "train.ids.npy").read_bytes() == (tmp_path / "b" / "train.ids.npy").read_bytes()


def test_failed_preparation_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with PreparedWriter(tmp_path / "x", task="t", profile="p", source="s") as w:
            w.add_split("train", np.zeros((2, 3), np.uint8), [0, 1])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_preparing_again_replaces_the_old_folder(tmp_path):
    for n in (2, 4):
        with PreparedWriter(tmp_path / "x", task="t", profile="p", source="s") as w:
            w.add_split("train", np.zeros((n, 3), np.uint8), [0] * n)
    assert load_split(tmp_path / "x", "train")[0].shape == (4, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_corruption_is_detected(tmp_path):
    with PreparedWriter(tmp_path / "x", task="t", profile="p", source="s") as w:
        w.add_split("train", np.ones((4, 3), np.uint8), [0, 1, 0, 1])
    assert verify(tmp_path / "x") == []
    path = tmp_path / "x" / "train.ids.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "checksum mismatch" in verify(tmp_path / "x")[0]
    path.write_bytes(bytes(data[:-4]))  # truncated
    with pytest.raises(CorruptDataError, match="prepare the task again"):
        load_split(tmp_path / "x", "train")


def test_manifest_records_source_and_meta(tmp_path):
    with PreparedWriter(tmp_path / "x", task="listops", profile="lra", source="generate", meta={"max_len": 3}) as w:
        w.add_split("val", np.ones((1, 3), np.uint8), [7])
    m = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert (m["task"], m["profile"], m["source"], m["meta"]) == ("listops", "lra", "generate", {"max_len": 3})
