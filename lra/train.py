"""``lra-train``: compose a config with Hydra, train and test with Lightning, write result.json.

lra-train experiment=quickstart
lra-train task=listops attention=cast trainer.max_steps=2000 seed=1
lra-train -m experiment=lra/listops attention=vanilla,cast seed=0,1,2

A user error (a bad config value, missing data, a taken run folder, a full disk) is one line on stderr
and exit status 2; ``--debug`` (or ``HYDRA_FULL_ERROR=1``) shows its traceback (see ``lra.errors``).

A run folder is written only by the process that holds its lock: Hydra is told not to write
``.hydra/`` or the log file itself (``hydra.output_subdir: null``, ``hydra/job_logging: lra``), and
this module writes them once the lock is taken, so a run refused because another process holds the
folder, or because the folder holds a finished run or another config's run, leaves every file there
as it was.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

import lra.resolvers  # noqa: F401  (the configs' ${sqrt_pow2:...} etc.)
from lra.callbacks import NonFiniteLoss, PeakMemory, StepTimer, describe_timing
from lra.csv_log import LoggedRows, RunCSVLogger
from lra.data.datamodule import LRADataModule
from lra.data.tasks import ensure_prepared
from lra.dist import Job, job_of, rank0_decides, wait_for_spawner
from lra.errors import DEBUG_FLAG, USER_ERRORS, Reported, debug_requested, run_cli
from lra.measure import cpu_conditions, load_average, record_device
from lra.module import LRAModule
from lra.results import git_sha, write_json_atomic
from lra.resume import (
    AtomicCheckpointIO,
    ResumeCheckpoints,
    RunDirLock,
    already_done,
    check_run_dir,
    prepare_run_dir,
    read_run_file,
)
from lra.validate import validate_config
from models.encoder import Classifier, Encoder, PairClassifier

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def check_keys(group: str, keys, valid) -> None:
    """Refuse a config key nothing reads (a typo, or a key set by the wrong file), naming the valid ones."""
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(f'{group}.{k}' for k in unknown)}; valid: {', '.join(sorted(valid))}"
        )


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """Encoder + head from the task, model and attention configs (keys equal constructor arguments)."""
    m, task = cfg.model, cfg.task
    attention = OmegaConf.to_container(cfg.attention, resolve=True)
    options = {k: v for k, v in OmegaConf.to_container(m, resolve=True).items() if k != "d_head"}
    set_here = ("vocab_size", "max_len", "attention", "attention_options", "lra_mask")
    valid = [k for k in inspect.signature(Encoder).parameters if k not in set_here]
    check_keys("model", [*options, "d_head"], [*valid, "d_head"])
    encoder = Encoder(
        vocab_size=task.vocab_size,
        max_len=task.max_len,
        attention=attention.pop("name"),
        attention_options=attention,
        lra_mask=bool(OmegaConf.select(task, "mask_zero_pixels", default=False)),  # LRA's CLS mask and mean pool
        **options,
    )
    if task.pair:
        return PairClassifier(
            encoder, n_classes=task.n_classes, d_model=m.d_model, d_head=m.d_head, combine=task.combine
        )
    return Classifier(encoder, n_classes=task.n_classes, d_model=m.d_model, d_head=m.d_head)


def pad_id(task: DictConfig) -> int | None:
    """Padding id for the mask; pixel tasks have none unless the reference behaviour is asked for."""
    if OmegaConf.select(task, "mask_zero_pixels", default=False):
        return 0
    return task.pad_id


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


_NOT_OPTIM = ("model", "n_classes", "pad_id", "total_steps")


def global_batch(cfg: DictConfig, world_size: int = 1) -> int:
    """Examples per optimizer step over the whole job: per-rank batch x ranks x accumulated batches."""
    return int(cfg.data.batch_size) * world_size * int(cfg.trainer.accumulate_grad_batches)


def total_steps(cfg: DictConfig, dm: LRADataModule, world_size: int = 1) -> int:
    if cfg.trainer.max_steps and cfg.trainer.max_steps > 0:
        return int(cfg.trainer.max_steps)
    return int(cfg.trainer.max_epochs) * math.ceil(len(dm.datasets["train"]) / global_batch(cfg, world_size))


def build_trainer(cfg: DictConfig, run_dir: Path, csv_loggers: list[Logger]) -> L.Trainer:
    """The Trainer with the harness's callbacks and the CSV logger (wandb joins on rank 0 once the
    Trainer has computed the ranks)."""
    # best.ckpt only: last.ckpt is ResumeCheckpoints' (listed after this one, so it saves after it)
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/acc", mode="max")
    callbacks = [
        StepTimer(warmup=cfg.measure.warmup_steps),
        PeakMemory(),
        NonFiniteLoss(),
        *(LoggedRows(lg) for lg in csv_loggers if isinstance(lg, RunCSVLogger)),
        ckpt,
        ResumeCheckpoints(ckpt.dirpath, cfg.checkpoint.every_n_steps),
    ]
    return L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=csv_loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # LRADataModule gives each rank its shard (and eval without padding)
    )


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], *, on_claimed: Callable[[], None] | None = None) -> dict:
    """Train, validate and test one configuration; returns the result record (also in run_dir/result.json).

    With ``resume=auto`` a config that already has a finished run is not trained again: that run's
    record is returned (``lra.resume.already_done``). Under DDP every rank calls this; rank 0 owns
    the run folder (its lock, run.json, checkpoints, result.json, wandb) and decides what to resume
    from (``lra/dist.py``). ``on_claimed`` runs on rank 0 once it holds ``run_dir`` (the entry point
    writes Hydra's files then).
    """
    validate_config(cfg)  # a bad config fails here, before any data is prepared or a checkpoint looked for
    run_dir = Path(run_dir)
    done = already_done(cfg, run_dir)
    if done is not None:
        return done
    check_run_dir(cfg, run_dir)  # before the lock, which would write its pid into a folder it may not take
    csv_loggers = build_loggers(cfg, run_dir, "", wandb=False)
    trainer = build_trainer(cfg, run_dir, csv_loggers)
    job = job_of(trainer)
    lock = RunDirLock(run_dir).acquire() if job.is_zero else None
    try:
        if on_claimed is not None and job.is_zero:
            on_claimed()
        return _run(cfg, run_dir, overrides, trainer, job)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg: DictConfig, run_dir: Path, overrides: list[str], trainer: L.Trainer, job: Job) -> dict:
    started, load_at_start = time.time(), load_average()
    run_name = f"{cfg.attention.name}-{cfg.task.name}-s{cfg.seed}"

    def decide() -> dict:  # rank 0 only
        resume_from = prepare_run_dir(cfg, run_dir)
        folder = ensure_prepared(
            OmegaConf.to_container(cfg.task, resolve=True),
            cfg.paths.data_dir,
            overrides=overrides,
            workers=cfg.data.prepare_workers,
        )
        return {"resume_from": resume_from, "data": str(folder)}

    shared = rank0_decides(run_dir, job, decide)
    resume_from, folder = shared["resume_from"], Path(shared["data"])
    L.seed_everything(cfg.seed, workers=True, verbose=job.is_zero)
    dm = LRADataModule(
        folder,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        val_split=cfg.task.val_split,
        seed=cfg.seed,
    )
    dm.setup()
    model = build_model(cfg)
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    check_keys("optim", optim, [k for k in inspect.signature(LRAModule).parameters if k not in _NOT_OPTIM])
    steps = total_steps(cfg, dm, job.world_size)
    module = LRAModule(model, n_classes=cfg.task.n_classes, pad_id=pad_id(cfg.task), total_steps=steps, **optim)
    n_params = sum(p.numel() for p in model.parameters())
    if job.is_zero:
        log.info("%s: %s parameters, data %s, run dir %s", run_name, f"{n_params:,}", folder, run_dir)
        if job.world_size > 1:
            log.info("%s: %d ranks x batch %d", run_name, job.world_size, cfg.data.batch_size)

    timer, memory = (next(c for c in trainer.callbacks if isinstance(c, t)) for t in (StepTimer, PeakMemory))
    ckpt = trainer.checkpoint_callback
    # CSV on every rank (it writes from rank 0 only); one wandb run, from rank 0
    loggers = [*trainer.loggers, *(build_loggers(cfg, run_dir, run_name, csv=False) if job.is_zero else [])]
    trainer.loggers = loggers
    wandb_loggers = [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]
    try:
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
        except SystemExit as e:
            if type(e).__name__ != "SIGTERMException":
                raise
            step = trainer.global_step
            if job.is_zero:
                log.error("%s: stopped by SIGTERM at step %d; run the same command to resume", run_name, step)
            else:
                log.error("rank %d: stopped by SIGTERM at step %d", job.rank, step)
                wait_for_spawner()
            raise SystemExit(128 + signal.SIGTERM) from None
        # before testing, which restores the callbacks' and the module's state from the best checkpoint
        timing, train_loss = timer.summary(), module.train_loss
        val_examples = trainer.callback_metrics.get("val/examples")
        if ckpt.best_model_path:
            val_acc = float(ckpt.best_model_score)
            tested = trainer.test(module, datamodule=dm, ckpt_path=ckpt.best_model_path, verbose=False)
        else:  # training ended before the first validation: evaluate the final weights
            validated = trainer.validate(module, datamodule=dm, verbose=False)[0]
            val_acc, val_examples = validated["val/acc"], validated["val/examples"]
            tested = trainer.test(module, datamodule=dm, verbose=False)
        # collectives: every rank takes part, rank 0 writes (train_loss is the same on every rank)
        peak_mb = memory.job_peak_mb(trainer)
        record = {
            "task": cfg.task.name,
            "attention": cfg.attention.name,
            "seed": int(cfg.seed),
            "model": {k: cfg.model[k] for k in ("n_layers", "d_model", "n_heads", "d_mlp")},
            "params": n_params,
            "steps": int(trainer.global_step),
            "epochs": int(trainer.current_epoch),
            "val_acc": float(val_acc),
            "test_acc": float(tested[0]["test/acc"]),
            "val_examples": None if val_examples is None else int(val_examples),
            "test_examples": int(tested[0]["test/examples"]),
            "train_loss": train_loss,
            **timing,
            "peak_mem_mb": peak_mb,
            "device": record_device(memory.device),
            "world_size": job.world_size,
            "batch_size": int(cfg.data.batch_size),
            "global_batch": global_batch(cfg, job.world_size),
            "precision": str(trainer.precision),
            "wall_s": time.time() - started,
            **cpu_conditions(),
            "load_avg_start": load_at_start,
            "load_avg_end": load_average(),
            "git_sha": git_sha(),
            "finished": time.time(),  # lra-table keeps the newest of repeated runs
            "overrides": overrides,
            "resumed_from": None,
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        if not job.is_zero:
            return record
        record["resumed_from"] = read_run_file(run_dir)["resumed_from"]
        write_json_atomic(run_dir / "result.json", record)
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and v is not None}
        for lg in wandb_loggers:
            try:
                lg.experiment.summary.update(numbers)
            except Exception as e:
                warnings.warn(f"could not write the wandb summary ({e}); result.json is complete", stacklevel=1)
        log.info(
            "%s: val_acc %.4f test_acc %.4f | %s | peak memory %.0f MB | %s",
            run_name,
            record["val_acc"],
            record["test_acc"],
            describe_timing(timing),
            record["peak_mem_mb"],
            run_dir / "result.json",
        )
        return record
    finally:
        for lg in wandb_loggers:
            try:
                lg.experiment.finish()
            except Exception:
                pass


def save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra's ``run_job`` writes to ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml), atomically."""
    hydra_cfg = HydraConfig.instance().cfg
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", hydra_cfg),
        ("overrides.yaml", hydra_cfg.hydra.overrides.task),
    ):
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        OmegaConf.save(node, tmp)
        os.replace(tmp, folder / name)


def add_log_file(path: Path) -> logging.Handler:
    """Append the root logger's records to ``path`` in Hydra's format (its ``job_logging`` file handler)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    handlers: list[logging.Handler] = []

    def claimed() -> None:
        save_hydra_files(cfg, run_dir)
        handlers.append(add_log_file(run_dir / f"{hc.job.name}.log"))

    try:
        record = run(cfg, run_dir, list(hc.overrides.task), on_claimed=claimed)
    except USER_ERRORS as e:
        if hc.mode == RunMode.RUN:  # one run: straight to run_cli; a sweep's failures are Hydra's to collect
            raise Reported(e) from e
        raise
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return record["test_acc"]


def main() -> None:
    """The ``lra-train`` command: Hydra's, with user errors as one line and exit status 2."""
    argv = sys.argv[1:]
    debug = debug_requested(argv)
    sys.argv = [sys.argv[0], *(a for a in argv if a != DEBUG_FLAG)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises every error; run_cli decides what is shown
    sys.exit(run_cli("lra-train", _hydra_main, debug=debug))


if __name__ == "__main__":
    main()
