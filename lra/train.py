"""``lra-train``: compose a config with Hydra, train and test with Lightning, write result.json.

lra-train experiment=quickstart
lra-train task=listops attention=cast trainer.max_steps=2000 seed=1
lra-train -m experiment=lra/listops attention=vanilla,cast seed=0,1,2

A user error (a bad config value, missing data, a taken run folder, a full disk) is one line on stderr
and exit status 2; ``--debug`` (or ``HYDRA_FULL_ERROR=1``) shows its traceback (see ``lra.errors``).

A run folder is written only by the process that holds its lock: Hydra is told not to write
``.hydra/`` or the log file itself (``hydra.output_subdir: null``, ``hydra/job_logging: lra``), and
the entry point here writes them once the lock is taken (``lra.run_dir``), so a run refused because
another process holds the folder, or because the folder holds a finished run or another config's run,
leaves every file there as it was. The objects of a run come from its config through ``lra.build``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import lra.resolvers  # noqa: F401  (the configs' ${sqrt_pow2:...} etc.)
from lra.attention_configs import store_plugin_configs
from lra.build import (
    budget_warning,
    build_datamodule,
    build_loggers,
    build_model,
    build_module,
    build_trainer,
    d_mlp_used,
    global_batch,
    total_steps,
    vanilla_params,
)
from lra.callbacks import PeakMemory, StepTimer, describe_timing
from lra.config import CONFIG_DIR
from lra.data.tasks import ensure_prepared
from lra.dist import Job, job_of, rank0_decides, wait_for_spawner
from lra.errors import DEBUG_FLAG, USER_ERRORS, Reported, debug_requested, run_cli
from lra.measure import cpu_conditions, load_average, record_device
from lra.results import git_sha, make_record, save_result
from lra.resume import already_done, prepare_run_dir
from lra.run_dir import RunDirLock, add_log_file, check_run_dir, read_run_file, save_hydra_files
from lra.spt import objective, stage_configs
from lra.spt_stage import load_encoder, run_pretraining
from lra.validate import validate_config

log = logging.getLogger(__name__)
store_plugin_configs()  # attention=<name> for mechanisms of other packages (lra.attention entry points)


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
    trainer = build_trainer(fine_tuning(cfg), run_dir, csv_loggers)
    job = job_of(trainer)
    lock = RunDirLock(run_dir).acquire() if job.is_zero else None
    try:
        if on_claimed is not None and job.is_zero:
            on_claimed()
        return _run(cfg, run_dir, overrides, trainer, job)
    finally:
        if lock is not None:
            lock.release()


def fine_tuning(cfg: DictConfig) -> DictConfig:
    """The config of the classifier's training: ``cfg`` itself, or under SPT its fine-tuning stage
    (``spt.compute_tied`` gives it what pretraining leaves of ``trainer.max_steps``)."""
    return cfg if objective(cfg) == "none" else stage_configs(cfg)[1]


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
    # CSV on every rank (it writes from rank 0 only); one wandb run, from rank 0, shared by the SPT stages
    wandb_loggers = build_loggers(cfg, run_dir, run_name, csv=False) if job.is_zero else []
    timer, memory = (next(c for c in trainer.callbacks if isinstance(c, t)) for t in (StepTimer, PeakMemory))
    ckpt = trainer.checkpoint_callback
    trainer.loggers = [*trainer.loggers, *wandb_loggers]
    try:
        try:
            spt = None
            if objective(cfg) != "none":  # lra.validate allows SPT on one device only
                spt = run_pretraining(cfg, run_dir, folder, wandb_loggers)
            fine = fine_tuning(cfg)
            L.seed_everything(cfg.seed, workers=True, verbose=job.is_zero)
            dm = build_datamodule(fine, folder)
            model = build_model(fine)
            if spt is not None and resume_from is None:  # a resumed fine-tuning restores its own weights
                load_encoder(model.encoder, spt["checkpoint"])
            module = build_module(fine, model, total_steps(fine, dm, job.world_size))
            n_params, vanilla = sum(p.numel() for p in model.parameters()), vanilla_params(fine)
            if job.is_zero:
                log.info("%s: %s parameters, data %s, run dir %s", run_name, f"{n_params:,}", folder, run_dir)
                over_budget = budget_warning(n_params, vanilla, matched=fine.model.get("match_params") == "vanilla")
                if over_budget:
                    log.warning("%s: %s", run_name, over_budget)
                if job.world_size > 1:
                    log.info("%s: %d ranks x batch %d", run_name, job.world_size, cfg.data.batch_size)
            trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
        except SystemExit as e:
            if type(e).__name__ != "SIGTERMException":
                raise
            if job.is_zero and objective(cfg) != "none" and spt is None:
                log.error("%s: pretraining stopped by SIGTERM; run the same command to resume", run_name)
            elif job.is_zero:
                log.error(
                    "%s: stopped by SIGTERM at step %d; run the same command to resume", run_name, trainer.global_step
                )
            else:
                log.error("rank %d: stopped by SIGTERM at step %d", job.rank, trainer.global_step)
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
        record = make_record(
            run={
                "task": cfg.task.name,
                "attention": cfg.attention.name,
                "seed": int(cfg.seed),
                "model": {**{k: cfg.model[k] for k in ("n_layers", "d_model", "n_heads")}, "d_mlp": d_mlp_used(fine)},
                "params": n_params,
                "params_vs_vanilla": n_params / vanilla,
            },
            training={
                "steps": int(trainer.global_step),
                "epochs": int(trainer.current_epoch),
                "train_loss": train_loss,
            },
            accuracy={
                "val_acc": float(val_acc),
                "test_acc": float(tested[0]["test/acc"]),
                "val_examples": None if val_examples is None else int(val_examples),
                "test_examples": int(tested[0]["test/examples"]),
            },
            timing=timing,
            memory={"peak_mem_mb": peak_mb},
            spt={"spt": spt},
            job={
                "device": record_device(memory.device),
                "world_size": job.world_size,
                "batch_size": int(cfg.data.batch_size),
                "global_batch": global_batch(cfg, job.world_size),
                "precision": str(trainer.precision),
            },
            cpu={**cpu_conditions(), "load_avg_start": load_at_start, "load_avg_end": load_average()},
            provenance={
                "wall_s": time.time() - started,
                "git_sha": git_sha(),
                "finished": time.time(),  # lra-table keeps the newest of repeated runs
                "overrides": overrides,
                "resumed_from": None,  # rank 0 reads it from run.json below
                "config": OmegaConf.to_container(cfg, resolve=True),
            },
        )
        if not job.is_zero:
            return record
        record["resumed_from"] = read_run_file(run_dir)["resumed_from"]
        save_result(run_dir, record)
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    """One run; returns its val_acc, the objective a sweeper maximises (``hparams_search``): choosing
    settings by test accuracy would tune on the test set."""
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
    return record["val_acc"]


def main() -> None:
    """The ``lra-train`` command: Hydra's, with user errors as one line and exit status 2."""
    argv = sys.argv[1:]
    debug = debug_requested(argv)
    sys.argv = [sys.argv[0], *(a for a in argv if a != DEBUG_FLAG)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises every error; run_cli decides what is shown
    sys.exit(run_cli("lra-train", _hydra_main, debug=debug))


if __name__ == "__main__":
    main()
