"""The shipped config files compose: the trainer choices from one base, every experiment file valid.

Hydra merges an experiment file's keys into the config without asking whether they exist, so a
typo there (``data.batchsize: 64``) would be carried along silently and the run would train with
the default; these tests refuse it.
"""

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from lra.config import CONFIG_DIR, compose_config
from lra.data.prepared import prepared_dir
from lra.validate import validate_config

EXPERIMENTS = sorted(
    p.relative_to(Path(CONFIG_DIR) / "experiment").with_suffix("").as_posix()
    for p in (Path(CONFIG_DIR) / "experiment").rglob("*.yaml")
)

# trainer=cpu as its file read before the trainer configs shared a base; the others differ in these keys
CPU = {
    "accelerator": "cpu",
    "devices": 1,
    "precision": "32-true",
    "max_steps": 5000,
    "max_epochs": None,
    "val_check_interval": 500,
    "check_val_every_n_epoch": None,
    "limit_val_batches": None,
    "limit_test_batches": None,
    "log_every_n_steps": 50,
    "gradient_clip_val": None,
    "accumulate_grad_batches": 1,
    "deterministic": False,
    "enable_progress_bar": True,
}
TRAINERS = {
    "cpu": CPU,
    "gpu": {**CPU, "accelerator": "gpu", "precision": "bf16-mixed"},
    "ddp": {**CPU, "accelerator": "gpu", "devices": -1, "num_nodes": 1, "strategy": "ddp", "precision": "bf16-mixed"},
    "ddp_cpu": {**CPU, "devices": 2, "num_nodes": 1, "strategy": "ddp"},
}


def test_every_trainer_file_is_tested():
    assert sorted(p.stem for p in (Path(CONFIG_DIR) / "trainer").glob("*.yaml")) == sorted(TRAINERS)


@pytest.mark.parametrize("choice", sorted(TRAINERS))
def test_each_trainer_choice_composes_to_its_settings(choice):
    assert OmegaConf.to_container(compose_config([f"trainer={choice}"]).trainer) == TRAINERS[choice]


def test_the_trainer_files_share_one_base():
    """Only trainer/cpu.yaml lists every key; the others start from it and hold what differs."""
    for choice in set(TRAINERS) - {"cpu"}:
        own = yaml.safe_load((Path(CONFIG_DIR) / "trainer" / f"{choice}.yaml").read_text())
        assert own["defaults"][0] in ("cpu", "gpu"), choice
        base = TRAINERS[own["defaults"][0]]
        assert {k: v for k, v in own.items() if k != "defaults"} == {
            k: v for k, v in TRAINERS[choice].items() if base.get(k, KeyError) != v
        }, choice


def group_choices(file_defaults: list) -> list[str]:
    """The overrides an experiment's defaults list makes (``override /task: image`` -> ``task=image``)."""
    choices = []
    for entry in file_defaults:
        ((key, value),) = entry.items()
        choices.append(f"{key.removeprefix('override ').lstrip('/')}={value}")
    return choices


def leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return out


def unknown_keys(experiment: str) -> list[str]:
    """The keys ``experiment`` sets that the config without it does not have (with the same groups)."""
    own = yaml.safe_load((Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml").read_text())
    base = compose_config(group_choices(own.pop("defaults", [])))
    missing = object()
    return [key for key in leaves(own) if OmegaConf.select(base, key, default=missing) is missing]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_is_valid(experiment, tmp_path):
    assert unknown_keys(experiment) == []
    cfg = compose_config([f"experiment={experiment}", f"paths.data_dir={tmp_path}"])
    # the data is not needed to check a config: a prepared folder stands in for it (task.path is read
    # only when preparing)
    folder = prepared_dir(cfg.paths.data_dir, cfg.task.name, cfg.task.profile)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"splits": {}, "meta": {}}))
    validate_config(cfg)  # every simple rule, then the model and the LightningModule built on the meta device


def test_the_experiments_found_include_the_nested_folders():
    """The two that no test composed before this one (the glob must reach configs/experiment/lra/)."""
    assert {"quickstart", "lra/pathfinder", "lra/pathx"} <= set(EXPERIMENTS)


def test_a_typo_in_an_experiment_file_is_found(tmp_path, monkeypatch):
    """What the check above would say of a misspelled key Hydra merges without a word."""
    folder = tmp_path / "experiment"
    folder.mkdir()
    source = (Path(CONFIG_DIR) / "experiment" / "lra" / "listops.yaml").read_text()
    (folder / "typo.yaml").write_text(source.replace("batch_size: 4", "batchsize: 4"))
    monkeypatch.setitem(globals(), "CONFIG_DIR", str(tmp_path))  # the file read; the base is composed from configs/
    assert unknown_keys("typo") == ["data.batchsize"]
