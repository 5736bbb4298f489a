"""Pathfinder and Path-X as tasks: generated on first use, prepared, trained end to end."""

import subprocess
import sys

import numpy as np

from lra.config import compose_config
from lra.data.prepared import load_split, read_manifest
from lra.results import load_result
from lra.train import run

FAST = [
    "model=tiny",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "data.batch_size=4",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "measure.warmup_steps=1",
    "data.prepare_workers=1",
]


def test_pathfinder_generates_prepares_and_trains(tmp_path):
    overrides = ["task=pathfinder", "task.generator.n=40", "task.profile=t", f"paths.data_dir={tmp_path}", *FAST]
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    folder = tmp_path / "pathfinder" / "t"
    manifest = read_manifest(folder)
    assert [manifest["splits"][s]["n"] for s in ("train", "val", "test")] == [32, 4, 4]
    ids, labels = load_split(folder, "train")
    assert ids.shape == (32, 1024) and ids.dtype == np.uint8 and set(labels) <= {0, 1}
    assert ids.max() == 255 and ids.min() == 0
    assert record["task"] == "pathfinder" and record["steps"] == 3
    assert record["config"]["task"]["pad_id"] is None  # pixel 0 is real: no mask


def test_pathx_from_generated_release_folder(tmp_path):
    out = tmp_path / "raw"
    subprocess.run(
        [sys.executable, "-m", "lra.data.cli", "generate", "pathx", "--n", "10", "--workers", "1", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lra.data.cli",
            "prepare",
            "pathx",
            "--source",
            "release",
            "--path",
            str(out),
            "task.profile=rel",
            f"paths.data_dir={tmp_path}",
        ],
        check=True,
        capture_output=True,
    )
    overrides = [
        "task=pathx",
        "task.source=release",
        "task.profile=rel",
        "attention=tssa",
        f"paths.data_dir={tmp_path}",
        *FAST,
        "data.batch_size=2",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    ]
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    assert load_split(tmp_path / "pathx" / "rel", "train")[0].shape == (8, 16384)
    assert load_result(tmp_path / "run" / "result.json")["attention"] == "tssa"
    assert record["steps"] == 2
