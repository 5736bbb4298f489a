"""Config to objects: the one place a resolved config becomes the model, the DataModule, the
LightningModule, the Trainer with its callbacks, and the loggers.

Each builder reads one config group and calls a constructor whose argument names equal the keys
(``model.*`` -> ``models.encoder.Encoder``, ``optim.*`` -> ``LRAModule``, ``trainer.*`` ->
``lightning.Trainer``), minus the arguments the harness sets itself (``*_SET_HERE``). A key that
no constructor reads (a typo, or a key set by the wrong file) is refused by ``check_keys``, which
names the valid keys. ``lra.validate`` calls the same builders on the meta device (parameters
without storage, no compute), so every constructor's check runs before any data is prepared, and
``lra.train`` calls them for real: there is no second code path that could drift from this one.

The parameter budget (LRA's rule: compare mechanisms at about the same parameter count) is counted
here too, on the meta device: ``vanilla_params(cfg)`` is the count of the same task and model with
``configs/attention/vanilla.yaml``. With ``model.match_params=vanilla`` the model's MLP width is
chosen to match it; the count is affine in d_mlp, P(d) = P(1) + (d - 1) * s with s = P(2) - P(1)
(each block's two linear layers: s = n_layers * (2 * d_model + 1)), so the d_mlp used is
max(1, round(1 + (P_vanilla - P(1)) / s)), the integer width whose count is closest to vanilla's.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import random
import warnings
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from lra.callbacks import NonFiniteLoss, PeakMemory, StepTimer
from lra.checkpointing import ResumeCheckpoints
from lra.config import CONFIG_DIR
from lra.csv_log import LoggedRows, RunCSVLogger
from lra.data.datamodule import LRADataModule
from lra.module import LRAModule
from lra.resume import AtomicCheckpointIO
from lra.spt import PretrainModule, embedding_ids, mask_ratio, objective
from models.encoder import Classifier, Encoder, PairClassifier, TokenPredictor

# constructor arguments that come from elsewhere than their config group
MODEL_SET_HERE = ("vocab_size", "max_len", "attention", "attention_options", "lra_mask")  # task, attention
OPTIM_SET_HERE = ("model", "n_classes", "pad_id", "total_steps")  # the model, task, schedule length
TRAINER_SET_HERE = ("logger", "callbacks", "default_root_dir", "plugins", "use_distributed_sampler")
MODEL_NOT_ENCODER = ("d_head", "match_params")  # the classifier head's width; the parameter budget switch
MATCH_PARAMS = (None, "vanilla")  # model.match_params: keep model.d_mlp | match vanilla's parameter count
PARAMS_LIMIT = 1.10  # LRA's budget: at most 10% more parameters than vanilla's


def check_keys(group: str, keys: Iterable[str], valid: Iterable[str]) -> None:
    """Refuse a config key nothing reads (a typo, or a key set by the wrong file), naming the valid ones."""
    valid = list(valid)
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(f'{group}.{k}' for k in unknown)}; valid: {', '.join(sorted(valid))}"
        )


def arguments(constructor, set_here: Iterable[str]) -> list[str]:
    """The keyword arguments of ``constructor`` a config group may set (``self`` and ``set_here`` excluded)."""
    return [k for k in inspect.signature(constructor).parameters if k not in ("self", *set_here)]


def build_encoder(cfg: DictConfig) -> Encoder:
    """The encoder from the task, model and attention configs (keys equal constructor arguments); the MLP
    width is ``d_mlp_used(cfg)``; under ``spt=masked`` it embeds one more id, ``<mask>`` (``lra.spt.embedding_ids``)."""
    m, task = cfg.model, cfg.task
    attention = OmegaConf.to_container(cfg.attention, resolve=True)
    options = {k: v for k, v in OmegaConf.to_container(m, resolve=True).items() if k not in MODEL_NOT_ENCODER}
    check_keys("model", [*options, *MODEL_NOT_ENCODER], [*arguments(Encoder, MODEL_SET_HERE), *MODEL_NOT_ENCODER])
    options["d_mlp"] = d_mlp_used(cfg)
    return Encoder(
        vocab_size=embedding_ids(cfg),
        max_len=task.max_len,
        attention=attention.pop("name"),
        attention_options=attention,
        lra_mask=bool(OmegaConf.select(task, "mask_zero_pixels", default=False)),  # LRA's CLS mask and mean pool
        **options,
    )


def build_pretrain_model(cfg: DictConfig) -> TokenPredictor:
    """Encoder + a per-position head over the task's ``vocab_size`` ids (self-pretraining, ``lra.spt``)."""
    return TokenPredictor(build_encoder(cfg), n_out=int(cfg.task.vocab_size), d_model=cfg.model.d_model)


def build_pretrain_module(cfg: DictConfig, model: torch.nn.Module, total_steps: int = 1) -> PretrainModule:
    """The pretraining LightningModule: the ``optim`` settings and the ``spt`` objective."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    check_keys("optim", optim, arguments(LRAModule, OPTIM_SET_HERE))
    return PretrainModule(
        model,
        objective=objective(cfg),
        mask_ratio=mask_ratio(cfg),
        mask_id=int(cfg.task.vocab_size),
        vocab_size=int(cfg.task.vocab_size),
        pad_id=pad_id(cfg.task),
        cls=cfg.model.pool == "cls",
        seed=int(cfg.seed),
        total_steps=total_steps,
        **optim,
    )


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """Encoder + classification head from the task, model and attention configs."""
    m, task = cfg.model, cfg.task
    encoder = build_encoder(cfg)
    if task.pair:
        return PairClassifier(
            encoder, n_classes=task.n_classes, d_model=m.d_model, d_head=m.d_head, combine=task.combine
        )
    return Classifier(encoder, n_classes=task.n_classes, d_model=m.d_model, d_head=m.d_head)


def count_params(cfg: DictConfig) -> int:
    """Parameters of ``build_model(cfg)``, built on the meta device (no storage, no compute). The random
    generators are restored afterwards: some constructors draw on the CPU (BigBird's pattern, Performer's
    features), and counting must not change the numbers of the run that counts."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return sum(p.numel() for p in build_model(cfg).parameters())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _with(cfg: DictConfig, *, d_mlp: int | None = None, vanilla: bool = False) -> DictConfig:
    """A copy of ``cfg`` with ``model.d_mlp`` fixed (no matching), or as vanilla at the configured size."""
    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.model.match_params = None
        if d_mlp is not None:
            c.model.d_mlp = d_mlp
        if vanilla:
            c.attention = OmegaConf.load(Path(CONFIG_DIR) / "attention" / "vanilla.yaml")
    return c


def vanilla_params(cfg: DictConfig) -> int:
    """Parameters of the vanilla Transformer at the same task and model size (model.d_mlp as configured)."""
    return count_params(_with(cfg, vanilla=True))


def d_mlp_used(cfg: DictConfig) -> int:
    """``model.d_mlp``; with ``model.match_params=vanilla`` the width whose count is closest to vanilla's."""
    if OmegaConf.select(cfg, "model.match_params") != "vanilla" or cfg.attention.name == "vanilla":
        return int(cfg.model.d_mlp)
    p1, p2 = count_params(_with(cfg, d_mlp=1)), count_params(_with(cfg, d_mlp=2))
    return max(1, round(1 + (vanilla_params(cfg) - p1) / (p2 - p1)))


def budget_warning(n_params: int, vanilla: int, *, matched: bool = False) -> str | None:
    """The warning for a model above LRA's parameter budget (more than 10% over vanilla's), or None;
    ``matched``: model.match_params=vanilla is on already (the MLP is as narrow as it gets)."""
    if n_params <= PARAMS_LIMIT * vanilla:
        return None
    fix = (
        "even with model.match_params=vanilla; lower the attention's own sizes"
        if matched
        else "model.match_params=vanilla narrows model.d_mlp to match"
    )
    return (
        f"{n_params:,} parameters, {n_params / vanilla:.2f}x vanilla's {vanilla:,} at this task and model size"
        f" (LRA's budget: at most {PARAMS_LIMIT:.2f}x); {fix}"
    )


def pad_id(task: DictConfig) -> int | None:
    """Padding id for the mask; pixel tasks have none unless the reference behaviour is asked for."""
    if OmegaConf.select(task, "mask_zero_pixels", default=False):
        return 0
    return task.pad_id


def build_module(cfg: DictConfig, model: torch.nn.Module, total_steps: int = 1) -> LRAModule:
    """The LightningModule training ``model`` with the ``optim`` settings over ``total_steps`` steps."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    check_keys("optim", optim, arguments(LRAModule, OPTIM_SET_HERE))
    return LRAModule(model, n_classes=cfg.task.n_classes, pad_id=pad_id(cfg.task), total_steps=total_steps, **optim)


def build_datamodule(cfg: DictConfig, folder: Path) -> LRADataModule:
    """The DataModule over the prepared arrays in ``folder`` (set up: its datasets are open)."""
    dm = LRADataModule(
        folder,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        val_split=cfg.task.val_split,
        seed=cfg.seed,
    )
    dm.setup()
    return dm


def global_batch(cfg: DictConfig, world_size: int = 1) -> int:
    """Examples per optimizer step over the whole job: per-rank batch x ranks x accumulated batches."""
    return int(cfg.data.batch_size) * world_size * int(cfg.trainer.accumulate_grad_batches)


def total_steps(cfg: DictConfig, dm: LRADataModule, world_size: int = 1) -> int:
    """The schedule's length: ``trainer.max_steps``, or ``trainer.max_epochs`` epochs of the global batch."""
    if cfg.trainer.max_steps and cfg.trainer.max_steps > 0:
        return int(cfg.trainer.max_steps)
    return int(cfg.trainer.max_epochs) * math.ceil(len(dm.datasets["train"]) / global_batch(cfg, world_size))


def wandb_mode() -> str:
    """WANDB_MODE if the user set it; online with a configured account; offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import netrc

        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def build_loggers(
    cfg: DictConfig, run_dir: Path, run_name: str, *, csv: bool = True, wandb: bool = True
) -> list[Logger]:
    """The CSV logger (with ``csv``) and the wandb run (with ``wandb``) the config asks for."""
    loggers: list[Logger] = []
    if csv and cfg.logger.csv:
        loggers.append(RunCSVLogger(run_dir, name="csv"))
    if wandb and cfg.logger.wandb is not None:
        try:
            from lightning.pytorch.loggers import WandbLogger

            w = cfg.logger.wandb
            logger = WandbLogger(
                project=w.project,
                entity=w.entity,
                group=w.group or cfg.task.name,
                name=run_name,
                tags=sorted({cfg.task.name, cfg.attention.name, *w.tags}),
                save_dir=str(run_dir),
                mode=wandb_mode(),
                config=OmegaConf.to_container(cfg, resolve=True),
            )
            _ = logger.experiment  # start the run now, so a failure shows here and not mid-training
            loggers.append(logger)
        except Exception as e:  # a missing or failing wandb never kills a training run
            warnings.warn(
                f"wandb logging is off for this run ({type(e).__name__}: {e}); the CSV log is kept", stacklevel=1
            )
    return loggers


def check_trainer_keys(trainer: DictConfig) -> None:
    """Refuse ``trainer.*`` keys that are no ``lightning.Trainer`` argument, or that the harness sets."""
    check_keys("trainer", trainer, arguments(L.Trainer.__init__, TRAINER_SET_HERE))


def build_callbacks(
    cfg: DictConfig, run_dir: Path, csv_loggers: list[Logger], monitor: tuple[str, str] = ("val/acc", "max")
) -> list[L.Callback]:
    """Measurement (step time, peak memory), the non-finite-loss stop, the CSV rows kept in
    checkpoints, ``best.ckpt`` (best by ``monitor``: metric, min or max) and ``last.ckpt``, in the
    order Lightning must run them."""
    # best.ckpt only: last.ckpt is ResumeCheckpoints' (listed after this one, so it saves after it)
    metric, mode = monitor
    ckpt = ModelCheckpoint(dirpath=Path(run_dir) / "checkpoints", filename="best", monitor=metric, mode=mode)
    return [
        StepTimer(warmup=cfg.measure.warmup_steps),
        PeakMemory(),
        NonFiniteLoss(),
        *(LoggedRows(lg) for lg in csv_loggers if isinstance(lg, RunCSVLogger)),
        ckpt,
        ResumeCheckpoints(ckpt.dirpath, cfg.checkpoint.every_n_steps),
    ]


def build_trainer(
    cfg: DictConfig, run_dir: Path, csv_loggers: list[Logger], monitor: tuple[str, str] = ("val/acc", "max")
) -> L.Trainer:
    """The Trainer with the harness's callbacks and the CSV logger (wandb joins on rank 0 once the
    Trainer has computed the ranks); ``best.ckpt`` is the best by ``monitor``."""
    check_trainer_keys(cfg.trainer)
    return L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=csv_loggers or False,
        callbacks=build_callbacks(cfg, run_dir, csv_loggers, monitor),
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # LRADataModule gives each rank its shard (and eval without padding)
    )
