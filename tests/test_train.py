"""The training entry point end to end, on generated ListOps small enough for a CPU."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from lra.config import compose_config
from lra.data.prepared import load_split
from lra.results import RESULT_FIELDS, load_result
from lra.train import run
from models.attention import available
from tests.attention_cases import CASES

TINY = [
    "experiment=quickstart",
    "task.profile=tiny",
    "task.max_len=32",
    "task.generator.n_train=256",
    "task.generator.n_val=64",
    "task.generator.n_test=64",
    "task.generator.max_length=30",
    "data.batch_size=16",
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.enable_progress_bar=false",
    "data.prepare_workers=1",
    "measure.warmup_steps=2",
    "trainer.log_every_n_steps=2",
]


def lra_train(args, tmp_path, check=True):
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data"), "WANDB_SILENT": "false"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # this checkout, not another installed copy
    cmd = [sys.executable, "-m", "lra.train", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=check, timeout=600)


def test_lra_train_writes_a_complete_result(tmp_path):
    proc = lra_train([*TINY, "logger=wandb"], tmp_path)
    run_dir = tmp_path / "run"
    record = load_result(run_dir / "result.json")
    assert set(RESULT_FIELDS) <= set(record)
    assert (record["task"], record["attention"], record["seed"], record["steps"]) == ("listops", "vanilla", 0, 12)
    assert 0 <= record["val_acc"] <= 1 and 0 <= record["test_acc"] <= 1
    assert record["step_time_ms"] > 0 and record["tokens_per_s"] > 0 and record["peak_mem_mb"] > 0
    assert record["config"]["model"]["d_model"] == 64 and "trainer.max_steps=12" in record["overrides"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/acc", "test/acc", "perf/step_ms"} <= set(header)
    # wandb ran offline, and its run summary holds the result numbers
    assert list(run_dir.glob("wandb/offline-run-*/run-*.wandb")), "no offline wandb run was written"
    lines = proc.stderr.split("Run summary:")[1].splitlines()
    summary = {p[1]: p[2] for p in (line.split() for line in lines) if len(p) == 3 and p[0] == "wandb:"}
    shown = {k for k in summary if k in record}  # wandb prints the first ten keys only
    assert {"params", "peak_mem_mb"} <= shown
    for key in shown:
        assert float(summary[key]) == pytest.approx(record[key], rel=1e-4), key


def test_wrong_override_lists_the_choices(tmp_path):
    proc = lra_train(["attention=nope"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "Could not find 'attention/nope'" in proc.stderr and "vanilla" in proc.stderr


def test_missing_release_data_names_the_command(tmp_path):
    proc = lra_train(["task.source=release", "task.profile=mine"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "lra-data prepare listops --source release --path DIR" in proc.stderr


def test_data_prepared_with_other_settings_is_refused(tmp_path):
    cfg = compose_config([*TINY, f"paths.data_dir={tmp_path}", "logger=none"])
    run(cfg, tmp_path / "a", [])
    other = compose_config([*TINY, f"paths.data_dir={tmp_path}", "logger=none", "task.max_len=40"])
    with pytest.raises(FileNotFoundError, match="max_len: prepared 32, config 40"):
        run(other, tmp_path / "b", [])


def test_a_small_model_learns_easy_listops(tmp_path):
    """Real learning: one-operator ListOps (MIN/MAX/MED/SM over digits) in about a CPU-minute."""
    overrides = [
        "experiment=quickstart",
        "task.profile=easy",
        "task.generator.max_depth=2",
        "task.generator.n_train=5000",
        "task.generator.n_test=500",
        "trainer.max_steps=300",
        "trainer.val_check_interval=100",
        f"paths.data_dir={tmp_path}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    labels = load_split(Path(tmp_path) / "listops" / "easy", "test")[1]
    majority = np.bincount(labels).max() / len(labels)
    assert majority < 0.2
    assert record["test_acc"] > majority + 0.3, (record["test_acc"], majority)


def train_losses(run_dir: Path) -> list[str]:
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/loss")
    return [r.split(",")[col] for r in rows[1:] if r.split(",")[col]]


@pytest.mark.parametrize("name", available())
def test_every_attention_trains_listops_reproducibly(name, tmp_path):
    """Each mechanism trains end to end, and the same config and seed on CPU give identical numbers
    (accuracies and every logged loss), clustered attention's random hyperplanes included."""
    options = [f"attention.{k}={v}" for k, v in CASES.get(name, {}).items()]
    overrides = [*TINY, f"attention={name}", *options, f"paths.data_dir={tmp_path}", "logger=csv"]
    overrides += ["trainer.deterministic=true", "model.dropout=0.1"]
    first = run(compose_config(overrides), tmp_path / "a", overrides)
    second = run(compose_config(overrides), tmp_path / "b", overrides)
    assert first["attention"] == name and first["steps"] == 12
    assert np.isfinite(first["train_loss"]) and 0 <= first["test_acc"] <= 1
    for key in ("val_acc", "test_acc", "train_loss"):
        assert first[key] == second[key], key
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b") != []


def test_step_time_spans_accumulated_batches(tmp_path):
    """With gradient accumulation the timer counts optimizer steps, each covering its batches."""
    overrides = [*TINY, "trainer.accumulate_grad_batches=2", f"paths.data_dir={tmp_path}", "logger=none"]
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    assert record["steps"] == 12 and record["timed_steps"] == 12 - 2  # warm-up: 2 optimizer steps
    assert record["all_tokens_per_s"] / record["samples_per_s"] == pytest.approx(32)  # task.max_len per sample


@pytest.mark.parametrize("key", ["model.n_layer", "optim.learning_rate"])
def test_a_misspelled_key_in_a_config_file_is_refused(key, tmp_path):
    cfg = compose_config([*TINY, f"paths.data_dir={tmp_path}", "logger=none"])
    OmegaConf.set_struct(cfg, False)  # as if an experiment file had added the key
    OmegaConf.update(cfg, key, 1)
    with pytest.raises(ValueError, match=rf"unknown key\(s\) {key}; valid: .*"):
        run(cfg, tmp_path / "run", [])
