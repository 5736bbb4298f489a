"""Composing the Hydra config outside ``lra-train`` (for ``lra-data``, ``lra-bench`` and tests)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """The config ``lra-train`` would use with these overrides (Hydra's validation included)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []))
