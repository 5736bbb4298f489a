"""The LightningModule: cross-entropy training with AdamW, LRA's schedules and torchmetrics accuracy."""

from __future__ import annotations

import logging
import math
import random
from collections import deque

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from lra.dist import all_reduce

log = logging.getLogger(__name__)
SCHEDULES = ("rsqrt", "cosine", "constant")
ON_NONFINITE = ("stop", "skip")


def lr_factor(step: int, *, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    - ``rsqrt`` (LRA's Flax schedule): ``min(1, s/warmup) * rsqrt(max(s, warmup))`` with s = step + 1;
      note that the base rate is then divided by sqrt(warmup) at the peak (0.05 -> 0.0016 for 1000).
    - ``cosine``: linear warm-up to 1, then cosine decay to 0 at ``total_steps``.
    - ``constant``: linear warm-up to 1, then 1.
    """
    s = step + 1
    warm = min(1.0, s / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "rsqrt":
        return warm / math.sqrt(max(s, warmup_steps, 1))
    if schedule == "cosine":
        if s <= warmup_steps:
            return warm
        progress = min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "constant":
        return warm
    raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got '{schedule}'")


def _numpy_state_to_torch(state: tuple) -> tuple:
    """numpy's generator state with its key array as a tensor (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = state
    return name, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)


class LRAModule(L.LightningModule):
    """Wraps a classifier; batches are ``{"ids": (B, N) or (B, 2, N), "label": (B,)}``.

    ``pad_id`` is the id of padding (mask = ids != pad_id), or None when every position is real
    (pixel tasks, unless the reference behaviour ``mask_zero_pixels`` is asked for).

    A NaN/inf training loss either reaches the ``NonFiniteLoss`` callback, which stops the run
    (``on_nonfinite="stop"``), or skips the batch (``"skip"``: no backward, no optimizer update;
    the step counter and the schedule still advance) up to ``max_consecutive_skips`` in a row.

    ``train_loss`` is the mean finite training loss over the last logging interval
    (``trainer.log_every_n_steps`` optimizer steps, i.e. that many times ``accumulate_grad_batches``
    batches), kept in checkpoints so a resumed run reports the same number.

    Metric names are ``train/loss``, ``val/acc``, ...; a subclass may prefix them (``metric_prefix``).
    """

    metric_prefix = ""

    def __init__(
        self,
        model: nn.Module,
        *,
        n_classes: int,
        pad_id: int | None,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        schedule: str = "rsqrt",
        warmup_steps: int = 0,
        total_steps: int = 1,
        on_nonfinite: str = "stop",
        max_consecutive_skips: int = 10,
    ):
        super().__init__()
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"optim.lr={lr}: must be a finite number > 0")
        if not weight_decay >= 0:
            raise ValueError(f"optim.weight_decay={weight_decay}: must be >= 0")
        if schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule={schedule}: must be one of {', '.join(SCHEDULES)}")
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"optim.on_nonfinite={on_nonfinite}: must be one of {', '.join(ON_NONFINITE)}")
        skips = max_consecutive_skips
        if isinstance(skips, bool) or not isinstance(skips, int) or skips < 1:
            raise ValueError(f"optim.max_consecutive_skips={max_consecutive_skips}: must be an integer >= 1")
        self.model, self.pad_id = model, pad_id
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, tuple(betas), eps
        self.schedule, self.warmup_steps, self.total_steps = schedule, warmup_steps, total_steps
        self.on_nonfinite, self.max_consecutive_skips = on_nonfinite, max_consecutive_skips
        self.consecutive_skips = self.skipped_batches = 0
        self.acc = nn.ModuleDict(
            {s: MulticlassAccuracy(n_classes, average="micro") for s in ("train_", "val_", "test_")}
        )
        # Evaluation loss and example count as metrics: under DDP their states are summed over the
        # ranks, so val/test numbers cover the whole split once, whatever each rank's share.
        self.eval_loss = nn.ModuleDict({s: MeanMetric() for s in ("val_", "test_")})
        self.examples = nn.ModuleDict({s: SumMetric() for s in ("val_", "test_")})
        self.last_train_loss = float("nan")
        self.recent_losses: deque[float] = deque()
        self._window_set = False

    def mask(self, ids: Tensor) -> Tensor | None:
        return None if self.pad_id is None else ids != self.pad_id

    def forward(self, ids: Tensor) -> Tensor:
        return self.model(ids, self.mask(ids))

    def predict_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Logits (M, n_classes), their targets (M,) and the mean cross-entropy (a scalar, in float32);
        here M = B, one prediction per example (``lra.spt.PretrainModule``: one per masked token)."""
        logits = self(batch["ids"])
        return logits, batch["label"], F.cross_entropy(logits.float(), batch["label"])

    def _log(self, batch: dict[str, Tensor], split: str, logits: Tensor, targets: Tensor, loss: Tensor) -> None:
        n, p = len(batch["ids"]), self.metric_prefix
        self.acc[split + "_"](logits.argmax(-1), targets)
        if split == "train":  # the step's loss averaged over the ranks (training_step): the global batch's
            value = torch.tensor(self.last_train_loss if math.isfinite(self.last_train_loss) else float(loss))
            self.log(f"{p}train/loss", value, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
            self.log(f"{p}train/acc", self.acc["train_"], on_step=True, on_epoch=False, prog_bar=True)
            return
        self.eval_loss[split + "_"].update(loss.detach().float(), weight=n)
        self.examples[split + "_"].update(torch.tensor(float(n), device=loss.device))
        self.log(f"{p}{split}/loss", self.eval_loss[split + "_"], on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{p}{split}/acc", self.acc[split + "_"], on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{p}{split}/examples", self.examples[split + "_"], on_step=False, on_epoch=True)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        logits, targets, loss = self.predict_batch(batch)
        # under DDP the mean over the ranks (the global batch's loss): every rank keeps the same
        # numbers (so rank 0's checkpoint holds them for all) and makes the same skip decision
        (value,) = all_reduce(self.trainer, [float(loss.detach())], op="mean")
        if math.isfinite(value):
            self.last_train_loss, self.consecutive_skips = value, 0
            self.recent_losses.append(value)
        elif self.on_nonfinite == "skip":
            return self._skip(value)
        self._log(batch, "train", logits, targets, loss)
        return loss

    def _skip(self, value: float) -> None:
        """Skip a batch with a non-finite loss: returning None makes Lightning skip backward and the update."""
        self.consecutive_skips += 1
        self.skipped_batches += 1
        if self.consecutive_skips > self.max_consecutive_skips:
            raise FloatingPointError(
                f"training loss was non-finite ({value}) for {self.consecutive_skips} batches in a row up to step "
                f"{self.global_step + 1}, more than optim.max_consecutive_skips={self.max_consecutive_skips}; "
                f"last finite loss {self.last_train_loss}. Lower optim.lr, raise optim.warmup_steps or use "
                "trainer.gradient_clip_val."
            )
        log.warning(
            "step %d: training loss is %s, batch skipped (%d in a row, %d in all; optim.on_nonfinite=skip)",
            self.global_step + 1,  # numbered as NonFiniteLoss numbers the step it stops at
            value,
            self.consecutive_skips,
            self.skipped_batches,
        )
        self.log("train/skipped_batches", float(self.skipped_batches), on_step=True, on_epoch=False)
        return None

    @property
    def train_loss(self) -> float | None:
        """The mean of ``recent_losses`` (None before the first finite training loss)."""
        return sum(self.recent_losses) / len(self.recent_losses) if self.recent_losses else None

    def on_fit_start(self) -> None:
        window = max(1, self.trainer.log_every_n_steps) * self.trainer.accumulate_grad_batches
        self.recent_losses = deque(self.recent_losses, maxlen=window)
        self._window_set = True

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log(batch, "val", *self.predict_batch(batch))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log(batch, "test", *self.predict_batch(batch))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning does not save the random generators; dropout and clustered attention's fresh
        # hyperplanes draw from them, so a resumed run restores them to continue identically.
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_to_torch(np.random.get_state()),
            "python": random.getstate(),
        }
        checkpoint["recent_losses"] = list(self.recent_losses)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "recent_losses" in checkpoint:
            # a checkpoint restored before on_fit_start (the usual order) is bounded there
            maxlen = self.recent_losses.maxlen if self._window_set else None
            self.recent_losses = deque(checkpoint["recent_losses"], maxlen=maxlen)
        states = checkpoint.get("rng_states")
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
        random.setstate(states["python"])

    def configure_optimizers(self):
        # No weight decay on biases, norms, embeddings/positions and what a module asks to exempt (TSSA's tau).
        exempt = set()
        for mname, m in self.model.named_modules():
            if hasattr(m, "no_weight_decay"):
                exempt |= {f"{mname}.{p}" if mname else p for p in m.no_weight_decay()}
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            skip = p.ndim < 2 or name in exempt or "embed" in name or name.endswith(".pos")
            (no_decay if skip else decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda step: lr_factor(
                step, schedule=self.schedule, warmup_steps=self.warmup_steps, total_steps=self.total_steps
            ),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
