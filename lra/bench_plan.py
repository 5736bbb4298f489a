"""The grid of ``lra-bench``: which (row, length) points run, with which options, under which settings.

Rows: ``mechanisms`` (``null`` = every mechanism in the attention registry, ``available()`` order;
a list names them explicitly), plus ``vanilla_naive`` after ``vanilla`` (``impl: naive``: the N x N
scores materialised) and ``floor`` last (no token mixing). A name that is not registered keeps its
row with status ``unavailable``, so a table made before a mechanism exists shows the gap.

Options at a length N, lowest to highest precedence:
1. configs/attention/<name>.yaml resolved with ``task.max_len = N`` (CAST's clusters, clustered's
   ``num_clusters``, SRformer's segments follow N, lra/resolvers.py); a plugin's own config file,
   resolved the same way (``lra.attention_configs``); a mechanism that ships no config runs with
   its constructor's defaults (``models.attention.options``), the same at every N;
2. the row's own (``impl: naive`` for vanilla_naive);
3. ``per_length.<name>.<N>``.
Each point records where its options came from and which of them were sized from N: the options the
mechanism declares as ``follows_length`` (``models.attention.declaration``) that its config resolved.

A point may also carry settings of its own (``Point.setup``: e.g. a batch size or a dtype), merged
over the sweep's ``settings`` by ``lra.bench.run_point`` and recorded in its row; a second swept
axis is a loop in ``plan`` that fills them.

Grids (``grid``): ``fixed_batch`` (LRA Table 2: the same ``batch`` at every length) or ``tokens``
(FlashAttention's benchmark: B x N = ``tokens`` at every length, so each point carries its own
``batch = tokens // N``; every length must divide ``tokens``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import lra.resolvers  # noqa: F401  (the attention configs' ${sqrt_pow2:...} etc.)
from lra.config import CONFIG_DIR
from lra.measure import BASELINE, FLOOR, NAIVE, PHASES, resolve_device

log = logging.getLogger(__name__)
GRIDS = ("fixed_batch", "tokens")
MODEL_KEYS = ("n_layers", "d_model", "n_heads", "d_mlp", "d_head", "dropout", "attn_dropout", "positions", "pool")
DEFAULTS = "constructor defaults"  # options_from of a mechanism without configs/attention/<name>.yaml


@dataclass
class Point:
    """One (row, length) of the grid. ``attention`` is the registry name, None for the floor."""

    row: str
    attention: str | None
    options: dict
    length: int
    timeout_s: float
    unavailable: str = ""  # why this row cannot run (not registered)
    mem_limit_gb: float | None = None  # CPU memory cap for this point instead of the sweep's
    options_from: str = ""  # configs/attention/<name>.yaml, or DEFAULTS
    sized_from_length: tuple[str, ...] = ()  # options resolved at this length (declared follows_length)
    setup: dict = field(default_factory=dict)  # settings of this point over the sweep's (batch, dtype, ...)


def config_path(name: str) -> Path:
    """Where mechanism ``name``'s options live (the file may not exist)."""
    return Path(CONFIG_DIR) / "attention" / f"{name}.yaml"


def attention_config(name: str, length: int) -> dict | None:
    """Options of mechanism ``name`` for sequences of ``length``: configs/attention/<name>.yaml (without
    ``name``) resolved at ``task.max_len = length``; without that file, a registered mechanism's
    constructor defaults, or for a plugin the config it ships (``lra.attention_configs``); None for a
    name that is neither registered nor configured."""
    from lra.attention_configs import plugin_options
    from models.attention import available, options, plugins

    path = config_path(name)
    if not path.is_file():
        if name in plugins():
            return plugin_options(name, length)
        return dict(options(name)) if name in available() else None
    cfg = OmegaConf.create({"task": {"max_len": int(length)}, "attention": OmegaConf.load(path)})
    opts = OmegaConf.to_container(cfg.attention, resolve=True)
    opts.pop("name", None)
    return opts


def sized_from_length(name: str) -> tuple[str, ...]:
    """The options of ``name`` its config derives from N: those it declares as ``follows_length`` that
    its config sets (none without a config, or for an unregistered name)."""
    from models.attention import available, declaration

    path = config_path(name)
    if name not in available() or not path.is_file():
        return ()
    present = OmegaConf.load(path)
    return tuple(k for k in declaration(name).follows_length if k in present)


def mechanisms(cfg: DictConfig) -> list[str]:
    """The configured mechanism rows: ``mechanisms`` as listed (one name alone counts as a list of one), or
    the whole registry when null."""
    from models.attention import available

    if cfg.mechanisms is None:
        return list(available())
    return [cfg.mechanisms] if isinstance(cfg.mechanisms, str) else [str(m) for m in cfg.mechanisms]


def plan(cfg: DictConfig) -> list[Point]:
    """The grid: every configured mechanism (+ vanilla_naive, + floor) at every length, row by row."""
    from models.attention import available, declaration

    raw = OmegaConf.to_container(cfg.per_length, resolve=True) if cfg.per_length else {}
    per_length = {name: {str(n): o for n, o in by_len.items()} for name, by_len in raw.items()}  # "1024" or 1024
    for name, by_len in per_length.items():
        if not config_path(name).is_file() and name not in available():
            raise ValueError(f"per_length.{name}: no attention of that name (available: {', '.join(available())})")
        bad = [k for k in by_len if not str(k).isdigit()]
        if bad:
            raise ValueError(f"per_length.{name}: keys must be sequence lengths, got {bad}")
    rows: list[tuple[str, str | None, dict, str]] = []  # row, attention, options on top of its config, why not
    for name in mechanisms(cfg):
        why = ""
        if name not in available():
            why = f"'{name}' is not registered in models.attention (available: {', '.join(available())})"
        elif not config_path(name).is_file() and declaration(name).follows_length:
            log.warning(
                "%s ships no configs/attention/%s.yaml: %s keep the constructor's defaults at every length instead"
                " of following N",
                name,
                name,
                ", ".join(declaration(name).follows_length),
            )
        rows.append((name, name, {}, why))
        if name == BASELINE and cfg.vanilla_naive:
            rows.append((NAIVE, name, {"impl": "naive"}, why))
    if cfg.floor:
        rows.append((FLOOR, None, {}, ""))
    batch_at = grid_batches(cfg)
    points = []
    for row, attention, own, why in rows:
        source = "" if attention is None else f"configs/attention/{attention}.yaml"
        if attention is not None and not config_path(attention).is_file():
            source = DEFAULTS if attention in available() else ""
        sized = sized_from_length(attention) if attention else ()
        for n in cfg.lengths:
            opts = (attention_config(attention, n) or {}) if attention else {}
            extra = per_length.get(attention, {}).get(str(n), {}) if attention else {}
            options = {**opts, **own, **extra}
            point = Point(row, attention, options, int(n), float(cfg.timeout_s), why, None, source, sized)
            point.setup = {"batch": batch_at[int(n)]} if batch_at else {}
            points.append(point)
    return points


def grid_batches(cfg: DictConfig) -> dict[int, int]:
    """The batch of each length under ``grid=tokens`` (tokens // N); empty for ``fixed_batch``."""
    if cfg.grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got '{cfg.grid}'")
    if cfg.grid == "fixed_batch":
        return {}
    tokens = int(cfg.tokens)
    bad = [int(n) for n in cfg.lengths if tokens % int(n)]
    if bad:
        raise ValueError(
            f"grid=tokens: tokens={tokens} is not a multiple of lengths {bad}, so batch x length would not be"
            " constant; choose tokens divisible by every length (e.g. the longest one) or drop those lengths"
        )
    return {int(n): tokens // int(n) for n in cfg.lengths}


def settings(cfg: DictConfig) -> dict:
    """What every child needs besides the point: model, data sizes, device, batch, dtype, repeats, phases."""
    device = resolve_device(cfg.device)
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"dtype must be auto, fp32 or bf16, got '{cfg.dtype}'")
    phases = [cfg.phases] if isinstance(cfg.phases, str) else [str(p) for p in cfg.phases]
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        what = f"unknown phase(s) {', '.join(unknown)}" if unknown else "none given"
        raise ValueError(f"phases: {what}; valid: {', '.join(PHASES)} (e.g. phases=[train_step])")
    batch = cfg.batch if cfg.batch is not None else (cfg.batch_gpu if device.startswith("cuda") else cfg.batch_cpu)
    return {
        "model": {k: cfg.model[k] for k in MODEL_KEYS},
        "vocab_size": int(cfg.vocab_size),
        "n_classes": int(cfg.n_classes),
        "batch": int(batch),
        "device": device,
        "dtype": dtype,
        "warmup": int(cfg.warmup),
        "repeats": int(cfg.repeats),
        "seed": int(cfg.seed),
        "threads": cfg.cpu_threads if device == "cpu" else None,
        "phases": [p for p in PHASES if p in phases],  # in the order a point runs them
    }
