"""The pretraining stage of ``lra-train ... spt=masked|causal`` (objective: ``lra.spt``).

It runs in ``<run dir>/pretrain/``: its own CSV log (``pretrain/csv``), ``pretrain/checkpoints/best.ckpt``
(lowest ``spt/val/loss``) and ``last.ckpt`` (``lra.checkpointing.ResumeCheckpoints``: after every
validation, every ``checkpoint.every_n_steps`` steps and on SIGTERM), and, once it has finished,
``pretrain/stage.json`` with its summary (written atomically). The same command after a kill
continues from ``last.ckpt``; once ``stage.json`` exists the stage is not run again and fine-tuning
starts (or resumes) beside it. The wandb run, if any, is the fine-tuning's: metrics ``spt/...``.

The summary is the result record's ``spt`` field: objective, mask_ratio, steps, best_val_loss,
val_token_acc (token accuracy of best.ckpt on the validation split), checkpoint (best.ckpt's path),
and the stage's own measurement: train_loss, step_time_ms, step_time_mean_ms, timed_steps,
tokens_per_s, peak_mem_mb.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from lra.atomic import write_json_atomic
from lra.build import (
    build_datamodule,
    build_loggers,
    build_pretrain_model,
    build_pretrain_module,
    build_trainer,
    total_steps,
)
from lra.callbacks import PeakMemory, StepTimer, describe_timing
from lra.resume import checkpoints
from lra.spt import PRETRAIN_DIR, STAGE_FILE, mask_ratio, objective, stage_configs
from models.encoder import Encoder

log = logging.getLogger(__name__)
MONITOR = ("spt/val/loss", "min")


def stage_summary(run_dir: Path) -> dict | None:
    """The finished pretraining stage's summary in ``run_dir``, or None if it has not finished."""
    path = Path(run_dir) / PRETRAIN_DIR / STAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_pretraining(cfg: DictConfig, run_dir: Path, data: Path, wandb_loggers: list[Logger]) -> dict:
    """Run (or resume, or skip if finished) the pretraining stage of ``cfg``; its summary."""
    resume = str(cfg.resume) != "never"  # auto, or a run folder whose pretrain/ lra.resume.adopt copied here
    done = stage_summary(run_dir) if resume else None
    if done is not None:
        log.info("pretraining finished earlier (%s); fine-tuning", Path(run_dir) / PRETRAIN_DIR / STAGE_FILE)
        return done
    stage_dir = Path(run_dir) / PRETRAIN_DIR
    pre, _ = stage_configs(cfg)
    csv_loggers = build_loggers(pre, stage_dir, "", wandb=False)
    trainer = build_trainer(pre, stage_dir, csv_loggers, monitor=MONITOR)
    trainer.loggers = [*trainer.loggers, *wandb_loggers]
    found = checkpoints(stage_dir) if resume else []
    resume_from = str(found[0]) if found else None
    if resume_from:
        log.info("pretraining: resuming from %s", resume_from)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(pre, data)
    module = build_pretrain_module(pre, build_pretrain_model(pre), total_steps(pre, dm))
    trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
    timer, memory = (next(c for c in trainer.callbacks if isinstance(c, t)) for t in (StepTimer, PeakMemory))
    timing, train_loss, peak = timer.summary(), module.train_loss, memory.job_peak_mb(trainer)
    best = trainer.checkpoint_callback.best_model_path
    if best:  # the best checkpoint's own numbers (and the modules' state from it)
        validated = trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False)[0]
    else:  # no validation ran: the final weights are the checkpoint
        best = str(stage_dir / "checkpoints" / "last.ckpt")
        validated = trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False)[0]
    summary = {
        "objective": objective(cfg),
        "mask_ratio": mask_ratio(cfg) if objective(cfg) == "masked" else None,
        "steps": int(trainer.global_step),
        "best_val_loss": float(validated["spt/val/loss"]),
        "val_token_acc": float(validated["spt/val/acc"]),
        "checkpoint": str(Path(best).resolve()),
        "train_loss": train_loss,
        **{k: timing[k] for k in ("step_time_ms", "step_time_mean_ms", "timed_steps", "tokens_per_s")},
        "peak_mem_mb": peak,
    }
    write_json_atomic(stage_dir / STAGE_FILE, summary)
    log.info(
        "pretraining (%s): %d steps, best spt/val/loss %.4f, token accuracy %.4f | %s | peak memory %.0f MB | %s",
        summary["objective"],
        summary["steps"],
        summary["best_val_loss"],
        summary["val_token_acc"],
        describe_timing(timing),
        peak,
        best,
    )
    return summary


def encoder_state(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The encoder weights of a pretraining checkpoint (``model.encoder.*`` of its state dict)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    prefix = "model.encoder."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_encoder(encoder: Encoder, checkpoint: str | Path) -> None:
    """Set ``encoder``'s weights to those of the pretraining checkpoint (every key must match)."""
    encoder.load_state_dict(encoder_state(checkpoint), strict=True)
    log.info("fine-tuning starts from the encoder of %s (new classification head)", checkpoint)
