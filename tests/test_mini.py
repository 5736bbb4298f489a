"""Mini LRA: every preset composes and prepares offline through the real readers; a sweep trains end to end."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from lra.config import compose_config
from lra.data import synthetic
from lra.data.prepared import MissingDataError, load_split, read_manifest
from lra.data.tasks import TASKS, ensure_prepared
from lra.results import load_result
from tests.scripts import load_script
from tests.task_data import prepared_bytes

ROOT = Path(__file__).resolve().parents[1]
# Each preset with its data shrunk to a few examples (its own sizes take minutes to generate and train).
SMALL = {
    "listops": ["task.generator.n_train=40", "task.generator.n_val=10", "task.generator.n_test=10"],
    "text": ["task.synthetic.n_train=40", "task.synthetic.n_test=10"],
    "retrieval": ["task.synthetic.n_train=40", "task.synthetic.n_val=10", "task.synthetic.n_test=10"],
    "image": ["task.synthetic.n_train=40", "task.synthetic.n_test=10"],
    "pathfinder": ["task.generator.n=20"],
    "pathx": ["task.generator.n=10"],
}
ROW_SHAPE = {"listops": (128,), "text": (256,), "retrieval": (2, 128), "image": (1024,), "pathfinder": (1024,)}
ROW_SHAPE["pathx"] = (4096,)  # 64 x 64


def mini_task(task: str, data_dir: Path, *extra: str) -> dict:
    cfg = compose_config([f"experiment=mini/{task}", *SMALL[task], f"paths.data_dir={data_dir}", *extra])
    return OmegaConf.to_container(cfg.task, resolve=True)


def prepare(task: dict, data_dir: Path) -> Path:
    return ensure_prepared(task, data_dir, workers=1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_preset_prepares_offline_on_first_use(name, tmp_path):
    task = mini_task(name, tmp_path)
    assert task["profile"] == "mini" and task["source"] == TASKS[name].generated_source  # no download
    folder = prepare(task, tmp_path)
    manifest = read_manifest(folder)
    assert manifest["source"] == task["source"] and task["val_split"] in manifest["splits"]
    for split in manifest["splits"]:
        ids, labels = load_split(folder, split)
        assert ids.shape[1:] == ROW_SHAPE[name] == (*ids.shape[1:-1], task["max_len"])
        assert 0 <= labels.min() and labels.max() < task["n_classes"] and int(ids.max()) < task["vocab_size"]
    assert prepare(task, tmp_path) == folder  # the second use finds it


def test_reproduce_table_runs_every_mini_task(tmp_path):
    reproduce = load_script("reproduce_table")
    for name in SMALL:
        assert reproduce.skip_reason("mini", name, [f"paths.data_dir={tmp_path}"]) is None, name


def decoded(ids: np.ndarray) -> str:
    return bytes((ids[ids > 0] - 1).astype(np.uint8)).decode("utf-8", errors="replace")


def test_synthetic_text_keeps_its_labels_through_the_folder_reader(tmp_path):
    """Untruncated reviews: 3-7 cues of the label (exclaimed if positive, shouted if negative), at most 1 other."""
    folder = prepare(mini_task("text", tmp_path, "task.max_len=2048", "task.profile=long"), tmp_path)
    ids, labels = load_split(folder, "train")
    for row, label in zip(ids, labels):
        text = decoded(row)
        cues = (len(re.findall(r"\b[A-Z]{3,}\b", text)), text.count("!"))  # (negative, positive)
        assert 3 <= cues[label] <= 7 and cues[1 - label] <= 1, (label, text)
    assert 0 < labels.mean() < 1


def test_synthetic_pairs_cite_each_other_when_topics_agree(tmp_path):
    folder = prepare(mini_task("retrieval", tmp_path), tmp_path)
    marks = np.array([ord(m) + 1 for m in synthetic.TOPIC_MARKS])
    for split in ("train", "val", "test"):
        ids, labels = load_split(folder, split)
        topics = (ids[..., None] == marks).sum(axis=2).argmax(-1)  # (n, 2): each document's most frequent mark
        np.testing.assert_array_equal(topics[:, 0] == topics[:, 1], labels.astype(bool))


def test_synthetic_images_keep_their_class_through_grayscale_and_tfds_order(tmp_path):
    folder = prepare(mini_task("image", tmp_path), tmp_path)
    for split, n in (("train", 36), ("val", 4), ("test", 10)):
        ids, labels = load_split(folder, split)
        assert len(ids) == n
        bright = np.where(ids >= 50, ids.astype(float), np.nan)  # the rectangle; the background is below 40
        np.testing.assert_array_equal(np.rint((np.nanmedian(bright, axis=1) - 60) / 19), labels)


def test_synthetic_sets_are_a_function_of_the_seed(tmp_path):
    a = prepare(mini_task("text", tmp_path / "a"), tmp_path / "a")
    b = prepare(mini_task("text", tmp_path / "b"), tmp_path / "b")
    c = prepare(mini_task("text", tmp_path / "c", "task.synthetic.seed=1"), tmp_path / "c")
    assert prepared_bytes(a) == prepared_bytes(b) != prepared_bytes(c)
    assert synthetic.cifar_images(n_train=5, n_test=2, seed=3)["test"][0].tobytes() == (
        synthetic.cifar_images(n_train=5, n_test=2, seed=3)["test"][0].tobytes()
    )


def test_synthetic_data_never_stands_in_for_the_real_source(tmp_path):
    prepare(mini_task("text", tmp_path), tmp_path)
    with pytest.raises(MissingDataError, match="source: prepared 'synthetic', config 'hf'"):
        prepare(mini_task("text", tmp_path, "task.source=hf"), tmp_path)
    with pytest.raises(MissingDataError, match="synthetic: prepared"):
        prepare(mini_task("text", tmp_path, "task.synthetic.seed=2"), tmp_path)


def test_lra_train_sweeps_mini_text_with_each_mechanism_sized_for_it(tmp_path):
    """``lra-train -m experiment=mini/text attention=vanilla,cast``: CAST gets 16 x 16 clusters for 256 bytes."""
    args = [
        "-m",
        "experiment=mini/text",
        "attention=vanilla,cast",
        *SMALL["text"],
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "data.batch_size=8",
        "measure.warmup_steps=1",
        "logger=none",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([sys.executable, "-m", "lra.train", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    records = {r["attention"]: r for r in map(load_result, sorted((tmp_path / "sweep").glob("*/result.json")))}
    assert sorted(records) == ["cast", "vanilla"]
    for record in records.values():
        assert (record["task"], record["steps"]) == ("text", 3) and 0 <= record["test_acc"] <= 1
    cast = records["cast"]["config"]["attention"]
    assert (cast["num_clusters"], cast["cluster_size"]) == (16, 16)
    assert read_manifest(tmp_path / "data" / "text" / "mini")["source"] == "synthetic"


def test_the_mini_table_says_what_it_is():
    reproduce = load_script("reproduce_table")
    records = [{"device": "cpu (2 cores)", "wall_s": w} for w in (10.0, 30.0, 20.0)]
    text = reproduce.preamble("mini", ["mini", "--seeds", "0"], time.time() - 90, 1.5, records)
    assert text.startswith("# mini table: 3 runs\n\n**A pipeline check on generated and synthetic data, not a")
    assert "- Command: `python scripts/reproduce_table.py mini --seeds 0`" in text and "median 20 s" in text
    assert "pipeline check" not in reproduce.preamble("lra", ["lra"], time.time(), 1.5, records)
