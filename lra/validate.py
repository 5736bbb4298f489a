"""Refuse a configuration that cannot train, before any data is prepared or any step is taken.

``validate_config(cfg)`` runs first in ``lra-train``. Each problem names the config key with its
value and what would be valid (``attention.segment_size=0: must be an integer >= 1``), and every
problem is reported at once. Simple rules are checked explicitly; then the LightningModule and
the model are built once each on the meta device (no memory, no compute) by ``lra.build``'s
builders, the ones ``lra-train`` uses, so every constructor check (unknown keys, the attention
registry, encoder options, optimizer options) also runs before the data. Settings that are legal but
rarely meant are logged as warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from lra.build import (
    MATCH_PARAMS,
    build_model,
    build_module,
    build_pretrain_model,
    build_pretrain_module,
    check_keys,
    check_trainer_keys,
)
from lra.data.prepared import prepared_dir, read_manifest
from lra.data.sources import data_path_exists
from lra.data.tasks import TASKS
from lra.spt import OBJECTIVES, SPT_KEYS, stage_configs
from models.attention import available, declaration

log = logging.getLogger(__name__)

PRECISIONS = ("32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
PRECISION_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}  # Lightning's
GPU_ACCELERATORS = ("gpu", "cuda")


class ConfigError(ValueError):
    """A configuration that cannot train; the message lists each bad key, its value and the valid range."""


def _show(value) -> str:
    """A value as it is written in a config or an override."""
    return "null" if value is None else str(value)


def _int(key: str, value, low: int) -> Iterator[str]:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        yield f"{key}={_show(value)}: must be an integer >= {low}"


def _fraction(key: str, value) -> Iterator[str]:
    """A probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        yield f"{key}={_show(value)}: must be a number in [0, 1)"


def check_task(task: DictConfig, data_dir: str) -> Iterator[str]:
    if task.name not in TASKS:
        yield f"task.name={task.name}: no such task; available: {', '.join(sorted(TASKS))}"
        return
    spec = TASKS[task.name]
    if task.source not in spec.sources:
        yield f"task.source={task.source}: task '{task.name}' has no such source; valid: {', '.join(spec.sources)}"
    yield from _int("task.max_len", task.max_len, 1)
    yield from _int("task.n_classes", task.n_classes, 2)
    path = task.get("path")
    prepared = read_manifest(prepared_dir(data_dir, task.name, task.profile)) is not None
    if not prepared and not data_path_exists(task.source, path):  # the raw files are read only when preparing
        yield (
            f"task.path={_show(path)}: does not exist (task.source={task.source} reads the raw data from there); "
            "give the folder that holds it, e.g. the extracted lra_release folder"
        )


def check_model(model: DictConfig) -> Iterator[str]:
    for key in ("n_layers", "d_model", "n_heads", "d_mlp", "d_head"):
        yield from _int(f"model.{key}", model.get(key), 1)
    d, h = model.get("d_model"), model.get("n_heads")
    if isinstance(d, int) and isinstance(h, int) and d >= 1 and h >= 1 and d % h:
        divisors = [k for k in range(1, d + 1) if d % k == 0 and k <= 64]
        yield f"model.n_heads={h}: must divide model.d_model={d}; valid: {', '.join(map(str, divisors))}"
    for key in ("dropout", "attn_dropout"):
        yield from _fraction(f"model.{key}", model.get(key))
    if model.get("match_params") not in MATCH_PARAMS:
        yield (
            f"model.match_params={model.match_params}: must be null (train with model.d_mlp) or vanilla"
            " (choose model.d_mlp so the parameter count is closest to vanilla's)"
        )


def check_attention(attention: DictConfig) -> Iterator[str]:
    if attention.name not in available():
        yield f"attention.name={attention.name}: no such attention; available: {', '.join(available())}"
        return
    # each mechanism declares its integer options' minima (models/attention/<name>.py); checking here
    # names the config key
    for key, low in declaration(attention.name).minima.items():
        if key in attention:
            yield from _int(f"attention.{key}", attention[key], low)


def check_data(data: DictConfig) -> Iterator[str]:
    yield from _int("data.batch_size", data.batch_size, 1)
    if data.eval_batch_size is not None:
        yield from _int("data.eval_batch_size", data.eval_batch_size, 1)
    yield from _int("data.num_workers", data.num_workers, 0)
    yield from _int("data.prepare_workers", data.prepare_workers, 1)


def check_trainer(trainer: DictConfig, optim: DictConfig, *, cuda_devices: int, bf16: bool) -> Iterator[str]:
    """Lightning's settings; ``cuda_devices`` and ``bf16`` describe this machine (passed in for testing)."""
    yield from _refused(lambda: check_trainer_keys(trainer))
    steps, epochs = trainer.get("max_steps"), trainer.get("max_epochs")
    if not isinstance(steps, int) or steps == 0 or steps < -1:
        yield f"trainer.max_steps={_show(steps)}: must be an integer >= 1, or -1 to train trainer.max_epochs epochs"
    elif steps == -1 and (not isinstance(epochs, int) or epochs < 1):
        yield f"trainer.max_epochs={_show(epochs)}: with trainer.max_steps=-1 it must be an integer >= 1"
    if epochs is not None and steps != -1:
        yield from _int("trainer.max_epochs", epochs, 1)
    yield from _int("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), 1)
    interval = trainer.get("val_check_interval")
    if interval is not None and not (
        (isinstance(interval, int) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1)
    ):
        yield (
            f"trainer.val_check_interval={interval}: must be a number of steps >= 1 or a fraction of an epoch in (0, 1]"
        )
    precision = str(trainer.get("precision"))
    precision = PRECISION_ALIASES.get(precision, precision)
    if precision not in PRECISIONS:
        yield f"trainer.precision={precision}: must be one of {', '.join(PRECISIONS)}"
    accelerator = trainer.get("accelerator", "auto")
    on_gpu = accelerator in GPU_ACCELERATORS or (accelerator == "auto" and cuda_devices > 0)
    if accelerator in GPU_ACCELERATORS and cuda_devices == 0:
        yield f"trainer.accelerator={accelerator}: no CUDA GPU is visible on this machine; use trainer=cpu"
    elif on_gpu and precision.startswith("bf16") and not bf16:
        yield f"trainer.precision={precision}: this GPU has no bfloat16; use trainer.precision=16-mixed or 32-true"
    elif on_gpu and isinstance(trainer.get("devices"), int) and trainer.devices > cuda_devices:
        yield f"trainer.devices={trainer.devices}: only {cuda_devices} GPU(s) visible; use at most that, or -1 for all"
    if not on_gpu and precision == "16-mixed":
        # Lightning would silently train in bf16-mixed instead: a benchmark must run what it reports
        yield "trainer.precision=16-mixed: float16 AMP is not supported on CPU; use 32-true or bf16-mixed"
    devices = trainer.get("devices", 1)
    several = isinstance(devices, int) and (devices > 1 or (devices == -1 and cuda_devices > 1))
    if optim.get("on_nonfinite") == "skip" and (several or trainer.get("num_nodes", 1) > 1):
        # a rank that skips its backward would leave the others waiting in the gradient all-reduce
        yield "optim.on_nonfinite=skip: works on one device only (set optim.on_nonfinite=stop for several)"


def _refused(build: Callable[[], object]) -> Iterator[str]:
    """The message of the constructor check ``build`` trips, if any; built on the meta device, nothing is allocated."""
    try:
        with torch.device("meta"):
            build()
    except (ValueError, TypeError, KeyError) as e:
        yield str(e.args[0]) if e.args else repr(e)


def check_optim(cfg: DictConfig) -> Iterator[str]:
    """Unknown ``optim`` keys, and LRAModule's own checks (lr, weight decay, schedule, on_nonfinite, skips).

    The module is built around a stand-in model, so its checks are listed with the simple rules;
    the model is built once those hold (``check_built_model``)."""
    yield from _int("optim.warmup_steps", cfg.optim.get("warmup_steps"), 0)
    n_classes = cfg.task.get("n_classes")
    if isinstance(n_classes, int) and not isinstance(n_classes, bool) and n_classes >= 2:  # else check_task says so
        yield from _refused(lambda: build_module(cfg, nn.Identity()))


def check_built_model(cfg: DictConfig) -> Iterator[str]:
    """Unknown model keys, the attention registry's and every constructor's checks."""
    yield from _refused(lambda: build_model(cfg))


def warnings_for(cfg: DictConfig) -> Iterator[str]:
    """Legal settings that are rarely meant."""
    steps, warmup = cfg.trainer.max_steps, cfg.optim.warmup_steps
    if steps > 0 and warmup >= steps:
        # not refused: LRA's own Retrieval config warms up for 8,000 of its 5,000 steps (rsqrt schedule)
        yield (
            f"optim.warmup_steps={warmup} >= trainer.max_steps={steps}: the learning rate never leaves warm-up"
            f"{' and the cosine decay never starts' if cfg.optim.schedule == 'cosine' else ''}"
        )
    n = cfg.task.max_len + (cfg.model.pool == "cls")  # the length attention sees (CLS token included)
    a = cfg.attention
    declared = declaration(a.name)
    key = declared.exact_at_length
    if key is not None and a[key] >= n:
        yield f"attention.{key}={a[key]} >= sequence length {n}: {a.name} computes exact attention at this length"
    if declared.warnings is not None:
        yield from declared.warnings({k: v for k, v in a.items() if k != "name"}, n)


def check_spt(cfg: DictConfig) -> Iterator[str]:
    """The ``spt`` group (lra/spt.py): objective, budgets, mask ratio; ``causal`` needs a causal form."""
    spt = cfg.get("spt")
    if spt is None:
        return
    yield from _refused(lambda: check_keys("spt", spt, SPT_KEYS))
    goal = spt.get("objective")
    if goal not in OBJECTIVES:
        yield f"spt.objective={_show(goal)}: must be one of {', '.join(OBJECTIVES)} (or choose spt=none|masked|causal)"
        return
    if goal == "none":
        return
    name = cfg.attention.name
    if goal == "causal" and name in available() and not declaration(name).causal:
        causal = [n for n in available() if declaration(n).causal]
        yield (
            f"spt=causal: attention '{name}' has no causal form; use spt=masked "
            f"(causal forms: {', '.join(causal) or 'none'})"
        )
    ratio = spt.get("mask_ratio")
    ratio = cfg.task.get("spt_mask_ratio") if ratio is None else ratio
    key = "spt.mask_ratio" if spt.get("mask_ratio") is not None else "task.spt_mask_ratio"
    if goal == "masked" and (isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio < 1):
        yield f"{key}={_show(ratio)}: must be a number in (0, 1), the fraction of real tokens masked"
    if spt.get("lr") is not None and (not isinstance(spt.lr, int | float) or not spt.lr > 0):
        yield f"spt.lr={_show(spt.lr)}: must be a number > 0, or null for optim.lr"
    interval = spt.get("val_check_interval")
    if interval is not None and not (
        (isinstance(interval, int) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1)
    ):
        yield f"spt.val_check_interval={interval}: must be a number of steps >= 1 or a fraction of an epoch in (0, 1]"
    steps = cfg.trainer.get("max_steps")
    if spt.get("compute_tied"):
        fraction = spt.get("fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
            yield f"spt.fraction={_show(fraction)}: must be in (0, 1), pretraining's share of trainer.max_steps"
        elif not isinstance(steps, int) or steps < 1 or not 1 <= round(fraction * steps) < steps:
            yield (
                f"spt.compute_tied=true: trainer.max_steps={_show(steps)} x spt.fraction={fraction} must leave "
                "each stage at least one step (trainer.max_steps=-1, epochs, cannot be split)"
            )
    elif spt.get("steps") != -1:
        yield from _int("spt.steps", spt.get("steps"), 1)
    elif not isinstance(cfg.trainer.get("max_epochs"), int) or cfg.trainer.max_epochs < 1:
        yield "spt.steps=-1: pretrains trainer.max_epochs epochs, which must then be an integer >= 1"
    devices = cfg.trainer.get("devices", 1)
    if devices not in (1, "1", None) or cfg.trainer.get("num_nodes", 1) != 1:
        yield f"spt={goal}: runs on one device for now; use trainer.devices=1 (or spt=none for several)"


def check_spt_model(cfg: DictConfig) -> Iterator[str]:
    """The pretraining model and module built on the meta device (the causal form included)."""
    if cfg.get("spt") is None or cfg.spt.objective == "none":
        return
    pre, _ = stage_configs(cfg)
    yield from _refused(lambda: build_pretrain_module(pre, build_pretrain_model(pre)))


def check_resume(cfg: DictConfig) -> Iterator[str]:
    """``resume`` (auto, never or an existing path) and ``checkpoint.every_n_steps`` (null or >= 1)."""
    every = cfg.checkpoint.every_n_steps
    if every is not None:
        yield from _int("checkpoint.every_n_steps", every, 1)
    mode = str(cfg.resume)
    if mode not in ("auto", "never") and not Path(mode).expanduser().exists():
        yield f"resume={mode}: must be auto, never, or an existing run folder or .ckpt file"


def check_seed(seed) -> Iterator[str]:
    """``seed``: an integer in 0 .. 2**32 - 1 (the range every seeded generator accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        yield f"seed={_show(seed)}: must be an integer in 0..{2**32 - 1}"


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of ``cfg``; log warnings for legal but doubtful settings."""
    problems = [
        *check_task(cfg.task, cfg.paths.data_dir),
        *check_model(cfg.model),
        *check_attention(cfg.attention),
        *check_optim(cfg),
        *check_data(cfg.data),
        *check_resume(cfg),
        *check_seed(cfg.seed),
        *check_spt(cfg),
        *check_trainer(
            cfg.trainer,
            cfg.optim,
            cuda_devices=torch.cuda.device_count(),
            bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        ),
    ]
    if not problems:  # the model's constructors assume the simple rules hold
        problems = [*check_built_model(cfg), *check_spt_model(cfg)]
    if problems:
        raise ConfigError("invalid configuration (nothing was prepared or trained):\n  " + "\n  ".join(problems))
    for warning in warnings_for(cfg):
        log.warning(warning)
