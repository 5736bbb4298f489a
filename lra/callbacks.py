"""Measurement callbacks: optimizer-step time, throughput and peak memory (the measuring itself: lra.measure)."""

from __future__ import annotations

import logging
import math
import statistics
import time

import lightning as L
import torch

from lra.dist import all_reduce
from lra.measure import peak_mb, reset_peak, sync

log = logging.getLogger(__name__)


class StepTimer(L.Callback):
    """Times each optimizer step (forward, backward, optimizer; every batch of an accumulated step),
    CUDA synchronised.

    The first ``warmup`` steps are not timed (allocator warm-up, kernel selection). Over the timed
    steps only it reports ``step_time_ms`` (the median) and ``step_time_mean_ms``, and throughputs
    as the timed steps' total count over their total time (so ``tokens_per_s`` equals tokens per
    step / ``step_time_mean_ms``; a median that is far below the mean means some steps were slowed
    down, e.g. by other processes on the CPUs). ``tokens_per_s`` counts real (non-padding) tokens,
    ``all_tokens_per_s`` every position.

    Under DDP every rank times its own steps (synchronising its own device) and the counts are
    summed over the ranks at each step, so the throughput is the whole job's; the times kept (and
    saved in checkpoints) are rank 0's.
    """

    def __init__(self, warmup: int = 5):
        self.warmup = warmup
        self.times: list[float] = []
        self.real_tokens = self.all_tokens = self.samples = 0
        self._t0 = 0.0
        self._pending = [0.0, 0, 0, 0]  # time, all tokens, real tokens, samples of the current optimizer step
        self._seen = self._global_step = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        sync(pl_module.device)
        self._global_step = trainer.global_step
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        ids = batch["ids"]
        mask = pl_module.mask(ids)
        real = ids.numel() if mask is None else int(mask.sum())
        for i, value in enumerate((time.perf_counter() - self._t0, ids.numel(), real, len(ids))):
            self._pending[i] += value
        if trainer.global_step == self._global_step:  # gradient accumulation: the step spans more batches
            return
        dt, all_tokens, real_tokens, samples = self._pending
        self._pending = [0.0, 0, 0, 0]
        self._seen += 1
        if self._seen <= self.warmup:
            return
        all_tokens, real_tokens, samples = (int(v) for v in all_reduce(trainer, [all_tokens, real_tokens, samples]))
        self.times.append(dt)
        self.all_tokens += all_tokens
        self.real_tokens += real_tokens
        self.samples += samples
        pl_module.log(f"{prefix(pl_module)}perf/step_ms", 1000 * dt, on_step=True, on_epoch=False)

    def state_dict(self) -> dict:
        """The timed steps so far: a resumed run reports the median over all of them."""
        return {"times": self.times, "tokens": [self.all_tokens, self.real_tokens, self.samples], "seen": self._seen}

    def load_state_dict(self, state: dict) -> None:
        self.times = list(state["times"])
        self.all_tokens, self.real_tokens, self.samples = state["tokens"]
        self._seen = state["seen"]

    def summary(self) -> dict[str, float | None]:
        """The timing fields of the result record (None when no step was timed, with a warning)."""
        fields = ("step_time_ms", "step_time_mean_ms", "tokens_per_s", "all_tokens_per_s", "samples_per_s")
        if not self.times:
            log.warning(
                "no training step was timed: the run made %d optimizer step(s) and measure.warmup_steps=%d are "
                "not timed, so step_time_ms and tokens_per_s are null; raise trainer.max_steps or lower "
                "measure.warmup_steps",
                self._seen,
                self.warmup,
            )
            return {**dict.fromkeys(fields), "timed_steps": 0}
        total = sum(self.times)
        return {
            "step_time_ms": 1000 * statistics.median(self.times),
            "step_time_mean_ms": 1000 * total / len(self.times),
            "tokens_per_s": self.real_tokens / total,
            "all_tokens_per_s": self.all_tokens / total,
            "samples_per_s": self.samples / total,
            "timed_steps": len(self.times),
        }


def prefix(pl_module: L.LightningModule) -> str:
    """The stage's metric prefix (``spt/`` while self-pretraining, else empty)."""
    return getattr(pl_module, "metric_prefix", "")


def describe_timing(timing: dict) -> str:
    """``StepTimer.summary()`` in a few words for the log line."""
    if not timing["timed_steps"]:
        return "no step timed"
    return (
        f"step {timing['step_time_ms']:.1f} ms median, {timing['step_time_mean_ms']:.1f} ms mean, "
        f"{timing['tokens_per_s']:.0f} tokens/s over {timing['timed_steps']} timed steps"
    )


class PeakMemory(L.Callback):
    """Peak memory in MB during fit and test (``job_peak_mb``: the largest of the ranks').

    GPU: the CUDA allocator's peak (reset at fit start). CPU: the process's peak resident set
    (VmHWM); Linux lets a process reset it (``clear_refs``), so in a sweep that runs several
    jobs in one process each job reports its own peak, not the largest so far.
    """

    def __init__(self):
        self.device = torch.device("cpu")

    def on_fit_start(self, trainer, pl_module) -> None:
        self.device = pl_module.device
        reset_peak(self.device)

    def peak_mb(self) -> float:
        """This process's peak."""
        return peak_mb(self.device)

    def job_peak_mb(self, trainer: L.Trainer) -> float:
        """The largest peak over the ranks (every rank must call it)."""
        return all_reduce(trainer, [self.peak_mb()], op="max")[0]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log(f"{prefix(pl_module)}perf/peak_mem_mb", self.peak_mb(), sync_dist=True, reduce_fx="max")


class NonFiniteLoss(L.Callback):
    """Stops the run at the first NaN/inf training loss, naming the step and the last finite loss."""

    def __init__(self):
        self.last_finite: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # the module skipped this batch (optim.on_nonfinite=skip)
            return
        value = float(loss.detach())
        if math.isfinite(value):
            self.last_finite = value
            return
        raise FloatingPointError(
            f"training loss became {value} at step {trainer.global_step}; last finite loss "
            f"{self.last_finite}. Lower optim.lr, raise optim.warmup_steps or use trainer.gradient_clip_val."
        )
