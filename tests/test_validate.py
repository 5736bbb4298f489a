"""Bad configs are refused through the entry point before any data is prepared, naming the key and the fix."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from lra.config import compose_config
from lra.train import run
from lra.validate import ConfigError, check_trainer, validate_config
from tests.test_train import TINY

ROOT = Path(__file__).resolve().parents[1]

REFUSED = {
    "heads": (["model.n_heads=3"], "model.n_heads=3: must divide model.d_model=64; valid: 1, 2, 4, 8, 16, 32, 64"),
    "segment 0": (
        ["attention=srformer", "attention.segment_size=0"],
        "attention.segment_size=0: must be an integer >= 1",
    ),
    "segment < 0": (
        ["attention=srformer", "attention.segment_size=-8"],
        "attention.segment_size=-8: must be an integer",
    ),
    "clusters": (
        ["attention=clustered", "attention.num_clusters=0"],
        "attention.num_clusters=0: must be an integer >= 1",
    ),
    "bits": (["attention=improved_clustered", "attention.bits=0"], "attention.bits=0: must be an integer >= 1"),
    "cast size": (["attention=cast", "attention.cluster_size=0"], "attention.cluster_size=0: must be an integer >= 1"),
    "cast clustering": (["attention=cast", "attention.clustering=kmeans"], "cast clustering must be one of"),
    "attention option": (
        ["+attention.window=4"],
        "attention 'vanilla' got unknown option(s) window; valid options: causal, impl",
    ),
    "lr 0": (["optim.lr=0"], "optim.lr=0: must be a finite number > 0"),
    "lr < 0": (["optim.lr=-0.001"], "optim.lr=-0.001: must be a finite number > 0"),
    "weight decay": (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1: must be >= 0"),
    "warmup < 0": (["optim.warmup_steps=-1"], "optim.warmup_steps=-1: must be an integer >= 0"),
    "on_nonfinite": (["optim.on_nonfinite=ignore"], "optim.on_nonfinite=ignore: must be one of stop, skip"),
    "batch": (["data.batch_size=0"], "data.batch_size=0: must be an integer >= 1"),
    "max_steps 0": (["trainer.max_steps=0"], "trainer.max_steps=0: must be an integer >= 1, or -1 to train"),
    "epochs": (["trainer.max_steps=-1"], "trainer.max_epochs=null: with trainer.max_steps=-1 it must be an integer"),
    "precision": (["trainer.precision=16-mixed"], "trainer.precision=16-mixed: float16 AMP is not supported on CPU"),
    "precision name": (["trainer.precision=fp8"], "trainer.precision=fp8: must be one of 32-true, 64-true, 16-mixed"),
    "trainer key": (["+trainer.max_step=3"], "unknown key(s) trainer.max_step; valid:"),
    "source": (["task.source=hf"], "task.source=hf: task 'listops' has no such source; valid: generate, release"),
    "task name": (["task.name=listops2"], "task.name=listops2: no such task; available: image, listops, pathfinder"),
    "checkpoint every": (["checkpoint.every_n_steps=0"], "checkpoint.every_n_steps=0: must be an integer >= 1"),
    "resume path": (["resume=/no/such/run"], "resume=/no/such/run: must be auto, never, or an existing run folder"),
    "path": (
        ["task.source=release", "task.path=/no/such/lra_release"],
        "task.path=/no/such/lra_release: does not exist",
    ),
}


def tiny(tmp_path, *extra: str) -> tuple:
    overrides = [*TINY, f"paths.data_dir={tmp_path / 'data'}", "logger=none", *extra]
    return compose_config(overrides), overrides


@pytest.mark.parametrize("case", REFUSED)
def test_a_bad_config_is_refused_before_any_data(case, tmp_path):
    extra, message = REFUSED[case]
    cfg, overrides = tiny(tmp_path, *extra)
    with pytest.raises(ConfigError) as info:
        run(cfg, tmp_path / "run", overrides)
    assert message in str(info.value)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # nothing prepared, no run dir


def test_every_problem_is_listed_at_once(tmp_path):
    cfg, _ = tiny(tmp_path, "model.n_heads=3", "optim.weight_decay=-1", "data.batch_size=0")
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration (nothing was prepared or trained):"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "model.n_heads=3",
        "optim.weight_decay=-1",
        "data.batch_size=0",
    ]


def test_lra_train_refuses_a_bad_config_in_seconds_without_data(tmp_path):
    # PYTHONPATH: this checkout, not whichever one the editable install points at
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lra.train", *TINY, "attention=srformer", "attention.segment_size=0",
           f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("lra-train: invalid configuration")
    assert "attention.segment_size=0: must be an integer >= 1" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_an_unknown_task_lists_the_choices():
    with pytest.raises(MissingConfigException) as info:
        compose_config(["task=listop"])
    assert "Could not find 'task/listop'" in str(info.value) and "listops" in str(info.value)


def test_a_missing_path_is_fine_once_the_data_is_prepared(tmp_path):
    """task.path is only read when preparing: a prepared folder needs no raw data."""
    cfg, _ = tiny(tmp_path, "task.source=release", "task.path=/no/such/lra_release")
    folder = tmp_path / "data" / "listops" / "tiny"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"splits": {}, "meta": {}}))
    validate_config(cfg)


def test_doubtful_settings_are_warned_about_not_refused(tmp_path, caplog):
    # LRA's Retrieval config warms up for 8,000 of its 5,000 steps: legal, but rarely meant elsewhere
    cfg, _ = tiny(tmp_path, "optim.warmup_steps=100", "attention=cast", "attention.num_clusters=2",
                  "attention.cluster_size=8")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="lra.validate"):
        validate_config(cfg)
    assert "optim.warmup_steps=100 >= trainer.max_steps=12: the learning rate never leaves warm-up" in caplog.text
    assert "and the cosine decay never starts" in caplog.text
    # task.max_len=32 with mean pooling: 32 tokens, 2 x 8 of them in clusters
    assert "attention.num_clusters * attention.cluster_size = 16 < sequence length 32: at least 16 tokens" in (
        caplog.text
    )
    caplog.clear()
    cfg, _ = tiny(tmp_path, "attention=srformer", "attention.segment_size=64", "model.pool=cls")
    with caplog.at_level(logging.WARNING, logger="lra.validate"):
        validate_config(cfg)
    assert "attention.segment_size=64 >= sequence length 33: srformer computes exact attention" in caplog.text


def trainer_problems(cuda_devices: int, bf16: bool = True, **changes) -> list[str]:
    cfg = compose_config(["trainer=gpu", *(f"trainer.{k}={v}" for k, v in changes.items())])
    return list(check_trainer(cfg.trainer, cfg.optim, cuda_devices=cuda_devices, bf16=bf16))


def test_gpu_settings_are_checked_against_the_machine():
    assert trainer_problems(cuda_devices=1) == []
    assert trainer_problems(cuda_devices=0) == [
        "trainer.accelerator=gpu: no CUDA GPU is visible on this machine; use trainer=cpu"
    ]
    assert trainer_problems(cuda_devices=1, bf16=False) == [
        "trainer.precision=bf16-mixed: this GPU has no bfloat16; use trainer.precision=16-mixed or 32-true"
    ]
    assert trainer_problems(cuda_devices=1, bf16=False, precision="16-mixed") == []
    assert trainer_problems(cuda_devices=2, devices=4) == [
        "trainer.devices=4: only 2 GPU(s) visible; use at most that, or -1 for all"
    ]


def test_skipping_non_finite_batches_is_refused_on_several_devices():
    cfg = compose_config(["trainer=ddp", "optim.on_nonfinite=skip"])
    problems = list(check_trainer(cfg.trainer, cfg.optim, cuda_devices=2, bf16=True))
    assert problems == ["optim.on_nonfinite=skip: works on one device only (set optim.on_nonfinite=stop for several)"]
    OmegaConf.update(cfg, "optim.on_nonfinite", "stop")
    assert list(check_trainer(cfg.trainer, cfg.optim, cuda_devices=2, bf16=True)) == []
