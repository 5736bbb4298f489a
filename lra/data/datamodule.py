"""A LightningDataModule over prepared arrays (memory-mapped; nothing is re-tokenised)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

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


class LRADataModule(L.LightningDataModule):
    """Train/val/test loaders over ``folder/<split>.ids.npy``.

    ``val_split`` names the split used for validation (LRA's Text task validates on test).
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

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", self.val_split, "test"):
            if split not in self.datasets:
                self.datasets[split] = ArrayDataset(*load_split(self.folder, split))

    def _loader(self, split: str, train: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and len(self.datasets[split]) > self.batch_size,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
