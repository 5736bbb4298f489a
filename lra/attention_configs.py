"""Hydra configs for attention mechanisms from other packages (``attention=<name>`` in ``lra-train``).

A built-in mechanism has ``configs/attention/<name>.yaml``. A plugin (an entry point of the group
``lra.attention``, see ``models.attention``) gets its node in Hydra's ConfigStore, group ``attention``,
from one of two places:

- by default its constructor's keyword options and their defaults: ``{name: <name>, <option>: <default>}``
  (an option without a default becomes ``???``, which Hydra reports as a missing value to set with
  ``attention.<option>=...``);
- or, when the class sets ``config_file = "<file>.yaml"``, that YAML file next to the class's module,
  which may size options from the task like the built-in files do (``window: ${floor_div:${task.max_len},8}``).
  Its keys must be options of the constructor; ``name`` may be left out.

Either way the node holds only the mechanism's options, so ``attention.<option>=...`` overrides and the
checks of ``lra.validate`` (declared minima, unknown keys) treat it as they treat a built-in's file.
A config that cannot be made (a default no config can hold, a missing or wrong file) is one warning
naming the plugin and the fix, and the plugin has no config (``attention=<name>`` then says so).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import lra.resolvers  # noqa: F401  (${floor_div:...} etc. in a plugin's config file)
from models.attention import get, options, plugins

log = logging.getLogger(__name__)
PLAIN = (type(None), bool, int, float, str)


def _plain(value) -> bool:
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


def plugin_config(name: str) -> dict:
    """The attention config of plugin ``name`` (unresolved: interpolations stay); ValueError if none can be made."""
    cls, defaults = get(name), options(name)
    config_file = getattr(cls, "config_file", None)
    if config_file is None:
        node = {"name": name}
        for key, default in defaults.items():
            if default is inspect.Parameter.empty:
                node[key] = "???"
            elif _plain(default):
                node[key] = list(default) if isinstance(default, tuple) else default
            else:
                raise ValueError(
                    f"option {key}'s default {default!r} cannot be written in a config; give it a plain default "
                    "(number, string, bool, None or a list of them) or ship a config_file"
                )
        return node
    path = Path(inspect.getfile(cls)).parent / config_file
    if not path.is_file():
        raise ValueError(f"its config_file {path} does not exist; ship it beside the module or drop config_file")
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(node, dict):
        raise ValueError(f"{path} does not hold a mapping of options")
    if node.setdefault("name", name) != name:
        raise ValueError(f"{path} has name: {node['name']}; it must be the entry point's name {name} (or absent)")
    unknown = sorted(set(node) - {"name", *defaults})
    if unknown:
        raise ValueError(f"{path} sets {', '.join(unknown)}, not options of the constructor ({', '.join(defaults)})")
    return node


def plugin_options(name: str, length: int) -> dict:
    """Plugin ``name``'s options for sequences of ``length`` (its config resolved at ``task.max_len``)."""
    cfg = OmegaConf.create({"task": {"max_len": int(length)}, "attention": plugin_config(name)})
    opts = OmegaConf.to_container(cfg.attention, resolve=True)
    opts.pop("name", None)
    return opts


def store_plugin_configs() -> list[str]:
    """Put every plugin's config in the ConfigStore (group ``attention``); returns the names stored."""
    stored = []
    for name, source in plugins().items():
        try:
            node = plugin_config(name)
        except ValueError as e:
            log.warning("attention plugin '%s' from %s has no config: %s", name, source, e)
            continue
        ConfigStore.instance().store(group="attention", name=name, node=node)
        stored.append(name)
    return stored
