"""A LightningDataModule over prepared arrays (memory-mapped; nothing is re-tokenised)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lra.data.prepared import load_split


class ArrayDataset(Dataset):
    """Rows of a memory-mapped id array with their labels: ``{"ids": (N,) or (2, N) long, "label": long}``."""

    def __init__(self, ids: np.ndarray, labels: np.ndarray):
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "ids": torch.from_numpy(np.asarray(self.ids[i], dtype=np.int64)),
            "label": torch.tensor(int(self.labels[i])),
        }


class EpochSampler(Sampler[int]):
    """Shuffles ``n`` indices with a permutation that depends only on (seed, epoch).

    Lightning calls ``set_epoch`` at each epoch start. ``resume_at(epoch, done)`` makes the next
    pass over ``epoch`` skip its first ``done`` indices, so a run resumed mid-epoch sees exactly the
    examples an uninterrupted run would have seen next.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, done: int) -> None:
        self._skip = (epoch, done)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        if self._skip is not None and self._skip[0] == self.epoch:
            order = order[self._skip[1] :]
        self._skip = None
        yield from order.tolist()


class LRADataModule(L.LightningDataModule):
    """Train/val/test loaders over ``folder/<split>.ids.npy``.

    ``val_split`` names the split used for validation (LRA's Text task validates on test). The
    training order is a function of (seed, epoch) and is saved in checkpoints (``state_dict``), so a
    resumed run continues with the batch an uninterrupted run would have trained on next.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_split: str = "val",
        seed: int = 0,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.val_split, self.seed = num_workers, val_split, seed
        self.datasets: dict[str, ArrayDataset] = {}
        self._resume: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", self.val_split, "test"):
            if split not in self.datasets:
                self.datasets[split] = ArrayDataset(*load_split(self.folder, split))

    def _loader(self, split: str, train: bool) -> DataLoader:
        sampler = None
        if train:
            sampler = EpochSampler(len(self.datasets[split]), self.seed)
            if self._resume:
                sampler.resume_at(self._resume["epoch"], self._resume["samples_done"])
                self._resume = None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train and len(self.datasets[split]) > self.batch_size,
            num_workers=self.num_workers,
            # the loader's own generator seeds workers: iterating a loader never draws from the
            # global RNG, whose state (dropout, hashing) a checkpoint restores
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def state_dict(self) -> dict:
        """Where training stands in the current epoch (saved in every checkpoint)."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "samples_done": progress.processed * self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state or None

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
