"""LRA Retrieval: AAN pairs from a miniature lra_release tree and the OpenNLPLab/lra hub mirror."""

import numpy as np
import pytest

from lra.build import build_model
from lra.config import compose_config
from lra.data import retrieval
from lra.data.prepared import MissingDataError, load_split, read_manifest
from lra.data.tasks import ensure_prepared
from models.encoder import PairClassifier
from tests.task_data import AAN, AAN_FILES, LONG_DOC, cli_prepare, prepared_bytes, train_tiny, write_aan

MAX_LEN = 64


def prepare(tmp_path, source, path=None, *overrides):
    return cli_prepare(tmp_path, "retrieval", source, path, f"task.max_len={MAX_LEN}", *overrides)


def release(tmp_path):
    """The archive's usual double nesting: lra_release/lra_release/tsv_data/."""
    write_aan(tmp_path / "lra_release" / "lra_release" / "tsv_data")
    return tmp_path / "lra_release"


def test_known_ids_for_multibyte_empty_and_long_documents():
    rows = [(1, "é€".encode(), b""), (0, LONG_DOC.encode(), b"ab")]
    ids, labels = retrieval.encode_pairs(rows, max_len=6, doc_bytes=10_000)
    assert ids.shape == (2, 2, 6) and ids.dtype == np.uint16 and labels.tolist() == [1, 0]
    assert ids[0, 0].tolist() == [0xC3 + 1, 0xA9 + 1, 0xE2 + 1, 0x82 + 1, 0xAC + 1, 0]
    assert ids[0, 1].tolist() == [0] * 6  # an empty document is all padding
    assert ids[1, 1].tolist() == [ord("a") + 1, ord("b") + 1, 0, 0, 0, 0]
    # the first 10,000 bytes are kept, then max_len applies: 12,000 positions hold bytes 0..9,999 only
    wide, _ = retrieval.encode_pairs(rows[1:], max_len=12_000, doc_bytes=10_000)
    doc = LONG_DOC.encode()
    assert len(doc) > 10_000 and doc[9_998:10_000] == "é".encode()
    np.testing.assert_array_equal(wide[0, 0, :10_000], np.frombuffer(doc[:10_000], np.uint8).astype(np.uint16) + 1)
    assert (wide[0, 0, 10_000:] == 0).all()
    cut, _ = retrieval.encode_pairs(rows[:1], max_len=6, doc_bytes=3)  # bytes cut before max_len
    assert cut[0, 0].tolist() == [0xC3 + 1, 0xA9 + 1, 0xE2 + 1, 0, 0, 0]


def test_release_and_hub_mirror_prepare_the_same_arrays(tmp_path, monkeypatch):
    rel = prepare(tmp_path / "r", "release", release(tmp_path / "raw"))
    # a local copy of the OpenNLPLab/lra repository ...
    local = prepare(tmp_path / "l", "hf", write_aan(tmp_path / "mirror" / "data" / "aan").parents[1])
    # ... and the real hf_hub_download code path, served from a hub cache (HF_HUB_OFFLINE=1 in conftest)
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "datasets--OpenNLPLab--lra" / "snapshots" / ("0" * 40)
    write_aan(snapshot / "data" / "aan")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = prepare(tmp_path / "h", "hf")
    assert prepared_bytes(rel) == prepared_bytes(local) == prepared_bytes(hub)

    ids, labels = load_split(rel, "train")
    assert ids.shape == (4, 2, MAX_LEN) and labels.tolist() == [r[0] for r in AAN["train"]]
    for i, (_, _, _, t1, t2) in enumerate(AAN["train"]):
        for k, doc in enumerate((t1, t2)):
            b = doc.encode()[:MAX_LEN]
            assert ids[i, k, : len(b)].tolist() == [x + 1 for x in b] and (ids[i, k, len(b) :] == 0).all()
    m = read_manifest(rel)
    assert {s: e["n"] for s, e in m["splits"].items()} == {"train": 4, "val": 2, "test": 2}
    assert m["meta"] == {"max_len": MAX_LEN, "doc_bytes": 10_000}


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / AAN_FILES["train"]
    path.write_bytes(b"1\ta\tb\tx\ty\n0\ta\tb\tonly four\n")
    with pytest.raises(ValueError, match=r"new_aan_pairs.train.tsv:2: expected 5 tab-separated fields .* got 4"):
        list(retrieval.read_tsv(path, progress=False))
    path.write_bytes(b"1\ta\tb\tx\ty\nyes\ta\tb\tx\ty\n")
    with pytest.raises(ValueError, match=r"train.tsv:2: label b'yes' is not a number"):
        list(retrieval.read_tsv(path, progress=False))
    path.write_bytes(b"2.0\ta\tb\tx\ty\n")
    with pytest.raises(ValueError, match=r"train.tsv:1: label 2 is not 0 or 1"):
        list(retrieval.read_tsv(path, progress=False))


def test_missing_files_and_unprepared_data_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="tsv_data/new_aan_pairs.train.tsv' not found"):
        prepare(tmp_path, "release", tmp_path)
    overrides = ["task=retrieval"]
    task = dict(compose_config(overrides).task)
    with pytest.raises(MissingDataError, match="lra-data prepare retrieval --source release --path DIR"):
        ensure_prepared(task, tmp_path, overrides=overrides)


@pytest.mark.parametrize("combine", ["paper", "concat"])
def test_two_tower_model_follows_the_combine_switch(combine):
    cfg = compose_config(["task=retrieval", "model=tiny", f"task.combine={combine}", "task.max_len=16"])
    model = build_model(cfg)
    assert isinstance(model, PairClassifier)
    assert model.head[0].in_features == cfg.model.d_model * (4 if combine == "paper" else 2)


def test_training_end_to_end(tmp_path):
    prepare(tmp_path, "release", release(tmp_path / "raw"))
    overrides = [
        "experiment=lra/retrieval",
        "model=tiny",
        "model.d_model=32",
        f"task.max_len={MAX_LEN}",
        "data.batch_size=2",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
    ]
    record = train_tiny(tmp_path, overrides)
    assert (record["task"], record["steps"]) == ("retrieval", 3)
    assert record["config"]["task"]["pair"] is True and record["config"]["optim"]["warmup_steps"] == 8000
