"""Equal-budget tuning: the hparams_search files and a real Optuna sweep of lra-train (two trials)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lra.config import CONFIG_DIR
from lra.results import load_result
from models.attention import available

ROOT = Path(__file__).resolve().parents[1]
SEARCHES = sorted(p.stem for p in (ROOT / "configs" / "hparams_search").glob("*.yaml"))
MECHANISM_SPACES = sorted(p.stem for p in (ROOT / "configs" / "hparams_search" / "attention").glob("*.yaml"))
# mini ListOps shrunk to seconds: 32 tokens, 128 training examples, 4 steps
SECONDS = [
    "task.profile=tiny",
    "task.max_len=32",
    "task.generator.n_train=128",
    "task.generator.n_val=32",
    "task.generator.n_test=32",
    "task.generator.min_length=10",
    "task.generator.max_length=30",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "data.prepare_workers=1",
    "measure.warmup_steps=1",
    "trainer.log_every_n_steps=2",
    "logger=none",
]


def compose_search(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_there_is_a_search_for_every_task_of_both_tables():
    tasks = sorted(p.stem for p in (ROOT / "configs" / "task").glob("*.yaml"))
    assert SEARCHES == sorted(f"{table}_{task}" for table in ("lra", "mini") for task in tasks)


@pytest.mark.parametrize("name", SEARCHES)
def test_each_search_maximises_over_keys_the_config_has(name):
    cfg = compose_search([f"hparams_search={name}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler.seed == 0 and sweeper.n_trials == 20
    assert cfg.hydra.runtime.choices.experiment == name.replace("_", "/", 1)
    params = dict(sweeper.params)
    assert {"optim.lr", "optim.weight_decay", "model.dropout", "optim.warmup_steps", "data.batch_size"} <= set(params)
    for key in params:  # a misspelled key would only fail once the first trial starts
        assert OmegaConf.select(cfg, key, default="missing") != "missing", (name, key)


@pytest.mark.parametrize("name", MECHANISM_SPACES)
def test_each_mechanism_space_adds_an_option_of_that_mechanism(name):
    assert name in available()
    cfg = compose_search(
        ["hparams_search=mini_listops", f"attention={name}", f"+hparams_search/attention@hydra.sweeper.params={name}"]
    )
    added = [k for k in cfg.hydra.sweeper.params if k.startswith("attention.")]
    assert len(added) == 1 and added[0].split(".", 1)[1] in cfg.attention


def test_a_two_trial_optuna_sweep_writes_the_best_config_and_its_val_acc(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lra.train", "-m", "hparams_search=mini_listops", "attention=vanilla"]
    cmd += ["hydra.sweeper.n_trials=2", *SECONDS, f"hydra.sweep.dir={sweep}"]
    subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=300)
    records = [load_result(p) for p in sorted(sweep.glob("*/result.json"))]
    assert len(records) == 2
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == max(r["val_acc"] for r in records)
    assert set(best.best_params) == {
        "optim.lr",
        "optim.weight_decay",
        "model.dropout",
        "optim.warmup_steps",
        "data.batch_size",
    }
    winners = [r for r in records if r["val_acc"] == best.best_value]  # ties: Optuna keeps the first

    def chose_the_best(record: dict) -> bool:
        config = OmegaConf.create(record["config"])
        return all(OmegaConf.select(config, k) == pytest.approx(v) for k, v in best.best_params.items())

    assert any(chose_the_best(r) for r in winners)
