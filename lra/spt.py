"""Self-pretraining (SPT, Amos et al., ICLR 2024, arXiv 2310.02980): a denoising objective on the
task's own training inputs, before the classifier is trained on the labels.

Objectives (``spt.objective``), on ids x (B, N) with real-token mask r (r_i = x_i != pad; every
position is real for pixel tasks without padding):

- ``masked``: each real token is chosen with probability p (``spt.mask_ratio``, by default the
  task's ``task.spt_mask_ratio``: ListOps 0.10, Text and Retrieval 0.15, the pixel tasks 0.50)
  and replaced by the ``<mask>`` id V (V = ``task.vocab_size``: the embedding gets one more id, so
  with CLS pooling the CLS token's id becomes V + 1). The loss is the cross-entropy over the task's
  V ids at the chosen positions only: L = sum_{i in M} -log softmax(z_i)[x_i] / max(1, |M|).
  Padding is never chosen, and the CLS token (position 0 of the encoder) is never a target.
- ``causal``: next-token prediction with the mechanism's causal form (``attention.causal=true``):
  the feature at position j predicts x_j from x_<j (with CLS pooling the CLS token plays <bos>, so
  every real token is a target; with mean pooling x_0 is not). Refused by ``lra.validate`` for a
  mechanism without a causal form.

Retrieval pretrains on single documents: a pair (B, 2, N) is 2B sequences. The draw of masked
positions in training step s comes from a generator seeded by (seed, s), and in validation from
(seed, batch index), so a resumed run masks exactly as an uninterrupted one and every validation
scores the same positions. The stages' configs come from ``stage_configs``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from lra.module import LRAModule

OBJECTIVES = ("none", "masked", "causal")
IGNORE = -100  # cross_entropy's ignore_index: a position that is no target
PRETRAIN_DIR = "pretrain"  # the pretraining stage's folder inside the run folder
STAGE_FILE = "stage.json"  # in PRETRAIN_DIR once the stage has finished: its summary (lra.spt_stage)
SPT_KEYS = ("objective", "steps", "mask_ratio", "lr", "val_check_interval", "compute_tied", "fraction")


def objective(cfg: DictConfig) -> str:
    """``spt.objective`` ('none' when the config has no ``spt`` group)."""
    return str(OmegaConf.select(cfg, "spt.objective", default="none"))


def mask_ratio(cfg: DictConfig) -> float:
    """``spt.mask_ratio``, or the task's default ``task.spt_mask_ratio`` when it is null."""
    ratio = cfg.spt.mask_ratio
    return float(cfg.task.spt_mask_ratio if ratio is None else ratio)


def embedding_ids(cfg: DictConfig) -> int:
    """Ids the encoder embeds besides CLS: the task's, plus the ``<mask>`` id under ``spt=masked``
    (both stages, so the fine-tuning encoder has the pretrained encoder's shape)."""
    return int(cfg.task.vocab_size) + (objective(cfg) == "masked")


def split_steps(cfg: DictConfig) -> tuple[int, int]:
    """(pretraining steps, fine-tuning steps). ``spt.compute_tied=true``: one budget of
    ``trainer.max_steps`` split as round(spt.fraction * max_steps) and the rest; else ``spt.steps``
    and ``trainer.max_steps`` (-1: ``trainer.max_epochs`` epochs, as Lightning reads it)."""
    total = int(cfg.trainer.max_steps)
    if not cfg.spt.compute_tied:
        return int(cfg.spt.steps), total
    pre = round(float(cfg.spt.fraction) * total)
    return pre, total - pre


def stage_configs(cfg: DictConfig) -> tuple[DictConfig, DictConfig]:
    """(pretraining config, fine-tuning config): copies of ``cfg`` with each stage's step budget; the
    pretraining one also with ``spt.lr`` (if set), ``spt.val_check_interval`` and the causal form."""
    pre_steps, fine_steps = split_steps(cfg)
    pre, fine = cfg.copy(), cfg.copy()
    with open_dict(pre), open_dict(fine):
        fine.trainer.max_steps = fine_steps
        pre.trainer.max_steps = pre_steps
        if cfg.spt.lr is not None:
            pre.optim.lr = cfg.spt.lr
        interval = cfg.spt.val_check_interval  # steps (at most the stage's), a fraction of an epoch, or null
        if isinstance(interval, int) and pre_steps > 0:
            interval = min(interval, pre_steps)
        pre.trainer.val_check_interval = interval
        if objective(cfg) == "causal":
            pre.attention.causal = True
    return pre, fine


def draw_mask(real: Tensor, ratio: float, generator: torch.Generator) -> Tensor:
    """Positions to mask (bool, like ``real``): each real position with probability ``ratio``, never
    another. The uniforms are drawn on the CPU from ``generator`` (the same draw on every device)."""
    u = torch.rand(real.shape, generator=generator).to(real.device)
    return (u < ratio) & real


def masked_inputs(ids: Tensor, real: Tensor, chosen: Tensor, mask_id: int) -> tuple[Tensor, Tensor]:
    """(inputs with the chosen positions set to ``mask_id``, targets: the original ids there, IGNORE elsewhere)."""
    targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    inputs = torch.where(chosen, torch.full_like(ids, mask_id), ids)
    return inputs, targets


def causal_targets(ids: Tensor, real: Tensor, cls: bool) -> Tensor:
    """Targets aligned with the encoder's positions 0..N-1: with a CLS token, feature j predicts
    x_j; without one, feature j predicts x_{j+1} (the last position has none). IGNORE for padding."""
    targets = torch.where(real, ids, torch.full_like(ids, IGNORE))  # (B, N)
    if cls:
        return targets
    return torch.cat([targets[:, 1:], torch.full_like(targets[:, :1], IGNORE)], dim=1)


def token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the target positions (targets != IGNORE); 0 when there are none.
    logits (..., V), targets (...)."""
    flat, t = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
    total = F.cross_entropy(flat, t, ignore_index=IGNORE, reduction="sum")
    return total / (t != IGNORE).sum().clamp_min(1)


class PretrainModule(LRAModule):
    """Trains a ``models.encoder.TokenPredictor`` with the ``masked`` or ``causal`` objective.

    Reuses ``LRAModule``'s optimizer, schedule, non-finite handling and checkpointed random state;
    its metrics are ``spt/train/loss``, ``spt/val/loss`` and the token accuracy ``spt/val/acc``
    over the target positions. Labels are not used.
    """

    metric_prefix = "spt/"

    def __init__(
        self,
        model: nn.Module,
        *,
        objective: str,
        mask_ratio: float,
        mask_id: int,
        vocab_size: int,
        pad_id: int | None,
        cls: bool,
        seed: int,
        **optim,
    ):
        super().__init__(model, n_classes=vocab_size, pad_id=pad_id, **optim)
        if objective not in ("masked", "causal"):
            raise ValueError(f"spt.objective={objective}: pretraining needs masked or causal")
        if not 0 < mask_ratio < 1 or not math.isfinite(mask_ratio):
            raise ValueError(f"spt.mask_ratio={mask_ratio}: must be a number in (0, 1)")
        self.objective, self.ratio, self.mask_id, self.cls, self.seed = objective, mask_ratio, mask_id, cls, seed

    def mask_generator(self, index: int, split: str) -> torch.Generator:
        return torch.Generator().manual_seed(
            (self.seed * 1_000_003 + index) * 4 + ("train", "val", "test").index(split)
        )

    def targets_for(self, ids: Tensor, index: int, split: str) -> tuple[Tensor, Tensor]:
        """(encoder inputs, targets aligned with the output positions after the CLS token, if any)."""
        real = torch.ones_like(ids, dtype=torch.bool) if self.pad_id is None else ids != self.pad_id
        if self.objective == "masked":
            chosen = draw_mask(real, self.ratio, self.mask_generator(index, split))
            return masked_inputs(ids, real, chosen, self.mask_id)
        return ids, causal_targets(ids, real, self.cls)

    def predict_batch(self, batch: dict[str, Tensor], index: int | None = None, split: str = "train") -> tuple:
        """Logits (M, V) and targets (M,) of the M target positions, and ``token_loss``. Training
        draws its mask from the optimizer step (``index=None``), evaluation from the batch index."""
        if index is None:
            index = self.global_step
        ids = batch["ids"]
        ids = ids.flatten(0, 1) if ids.dim() == 3 else ids  # Retrieval: each document on its own
        inputs, targets = self.targets_for(ids, index, split)
        logits = self.model(inputs, self.mask(ids))  # (B, N', V)
        if self.cls:  # masked: drop the CLS position; causal: the CLS feature predicts x_0, the last none
            logits = logits[:, 1:] if self.objective == "masked" else logits[:, :-1]
        keep = targets != IGNORE
        loss = token_loss(logits, targets)
        return logits[keep], targets[keep], loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log(batch, "val", *self.predict_batch(batch, batch_idx, "val"))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log(batch, "test", *self.predict_batch(batch, batch_idx, "test"))
