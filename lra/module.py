"""The LightningModule: cross-entropy training with AdamW, LRA's schedules and torchmetrics accuracy."""

from __future__ import annotations

import math
import random

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

SCHEDULES = ("rsqrt", "cosine", "constant")


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
    """

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
    ):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {lr}")
        if schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got '{schedule}'")
        self.model, self.pad_id = model, pad_id
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, tuple(betas), eps
        self.schedule, self.warmup_steps, self.total_steps = schedule, warmup_steps, total_steps
        self.acc = nn.ModuleDict(
            {s: MulticlassAccuracy(n_classes, average="micro") for s in ("train_", "val_", "test_")}
        )
        self.last_train_loss = float("nan")

    def mask(self, ids: Tensor) -> Tensor | None:
        return None if self.pad_id is None else ids != self.pad_id

    def forward(self, ids: Tensor) -> Tensor:
        return self.model(ids, self.mask(ids))

    def _step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        logits = self(batch["ids"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        self.acc[split + "_"](logits.argmax(-1), batch["label"])
        on_step = split == "train"
        self.log(
            f"{split}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=len(batch["label"])
        )
        self.log(f"{split}/acc", self.acc[split + "_"], on_step=on_step, on_epoch=not on_step, prog_bar=True)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self.last_train_loss = float(loss.detach())
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning does not save the random generators; dropout and clustered attention's fresh
        # hyperplanes draw from them, so a resumed run restores them to continue identically.
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_to_torch(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
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
