"""Where the Hydra configs live (``CONFIG_DIR``) and composing them outside ``lra-train``.

``lra-train``, ``lra-bench``, ``lra-data``, the scripts and the tests all read ``configs/`` through
this module. It imports Hydra and OmegaConf only (neither torch nor Lightning), so a command that
only composes a config (``lra-data``) starts without loading the training stack.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """The config ``lra-train`` would use with these overrides (Hydra's validation included).

    ``attention=<name>`` naming no file of configs/attention composes a plugin's config (lra.attention_configs).
    """
    chosen = [o.split("=", 1)[1] for o in overrides or [] if o.split("=", 1)[0].lstrip("+") == "attention"]
    if any(not (Path(CONFIG_DIR) / "attention" / f"{name}.yaml").is_file() for name in chosen):
        from lra.attention_configs import store_plugin_configs  # imports torch: only for a plugin's config

        store_plugin_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []))
