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
from tests.scripts import load_script

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


def test_tune_print_gives_every_mechanism_the_same_budget_and_seeds(capsys):
    assert load_script("tune").main(["mini", "listops", "--print", "--trials", "7", "--sampler-seed", "3"]
                               + ["--seeds", "0,1", "--n-jobs", "2", "--out", "o", "trainer=cpu"]) == 0  # fmt: skip
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 * len(available())
    for name, search, rerun in zip(available(), lines[::2], lines[1::2]):
        assert search[:4] == ["lra-train", "-m", "hparams_search=mini_listops", f"attention={name}"]
        budget = ["hydra.sweeper.n_trials=7", "hydra.sweeper.sampler.seed=3", "hydra.sweeper.n_jobs=2"]
        assert set(budget) <= set(search) and f"hydra.sweep.dir={Path('o', name, 'search')}" in search
        own = f"+hparams_search/attention@hydra.sweeper.params={name}"
        assert (own in search) == (name in MECHANISM_SPACES)
        assert rerun[:4] == ["lra-train", "-m", "experiment=mini/listops", f"attention={name}"]
        assert "seed=0,1" in rerun and f"hydra.sweep.dir={Path('o', name, 'best')}" in rerun
        assert search[-1] == rerun[-1] == "trainer=cpu"


def test_tune_refuses_an_unknown_task_or_mechanism_naming_the_valid_ones(capsys):
    tune = load_script("tune")
    with pytest.raises(SystemExit):
        tune.main(["mini", "nope", "--print"])
    assert (
        "no search space configs/hparams_search/mini_nope.yaml; valid tasks: image, listops" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        tune.main(["mini", "listops", "--mechanisms", "vanila", "--print"])
    assert "--mechanisms: no such attention vanila; available: bigbird" in capsys.readouterr().err


def test_tune_searches_then_reruns_the_best_config_on_every_seed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LRA_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "tune"
    rc = load_script("tune").main(
        ["mini", "listops", "--mechanisms", "vanilla", "--trials", "1", "--seeds", "0,1", "--out", str(out), *SECONDS]
    )
    assert rc == 0
    best = OmegaConf.load(out / "vanilla" / "search" / "optimization_results.yaml")
    reruns = [load_result(p) for p in sorted((out / "vanilla" / "best").glob("*/result.json"))]
    assert sorted(r["seed"] for r in reruns) == [0, 1]
    for record in reruns:
        config = OmegaConf.create(record["config"])
        for key, value in best.best_params.items():
            assert OmegaConf.select(config, key) == pytest.approx(value), key
    assert f"reruns: {out / 'vanilla' / 'best'}/*/result.json" in capsys.readouterr().out


def test_the_search_runs_its_trials_as_parallel_slurm_jobs(tmp_path, monkeypatch):
    """The sweeper asks hydra.sweeper.n_jobs trials at once and submits them as one SLURM job array
    (no cluster here: a dummy srun passes submitit's check, the submission is intercepted and each
    job returns a val_acc), then writes optimization_results.yaml."""
    submitit = pytest.importorskip("submitit")
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import HydraContext
    from hydra.utils import instantiate

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_search(
        ["hparams_search=lra_listops", "attention=cast", "+hparams_search/attention@hydra.sweeper.params=cast"]
        + ["hydra/launcher=slurm", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={tmp_path}"]
    )
    arrays = []

    class Done:
        def __init__(self, overrides):
            lr = float(dict(o.split("=") for o in overrides)["optim.lr"])  # the objective here: the largest lr wins
            self.ret = JobReturn(status=JobStatus.COMPLETED, _return_value=lr)

        def results(self):
            return [self.ret]

    def map_array(executor, fn, overrides, *rest):
        arrays.append([list(o) for o in overrides])
        return [Done(o) for o in overrides]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    sweeper = instantiate(cfg.hydra.sweeper)
    sweeper.setup(hydra_context=HydraContext(config_loader=None, callbacks=None), task_function=None, config=cfg)
    assert type(sweeper.sweeper.launcher).__name__ == "SlurmLauncher"
    sweeper.sweep(arguments=[])
    assert [len(a) for a in arrays] == [2, 2]
    keys = {o.split("=")[0] for a in arrays for o in a[0]}
    assert keys == {"optim.lr", "optim.weight_decay", "model.dropout", "optim.warmup_steps", "data.batch_size"} | {
        "attention.cluster_size"
    }
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    lrs = [float(dict(o.split("=") for o in trial)["optim.lr"]) for array in arrays for trial in array]
    assert best.best_value == max(lrs) and best.best_params["optim.lr"] == max(lrs)
