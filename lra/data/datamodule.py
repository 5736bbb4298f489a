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
    """Shuffles ``n`` indices with a permutation that depends only on (seed, epoch); with several ranks,
    yields this rank's share of it.

    Lightning calls ``set_epoch`` at each epoch start. ``resume_at(epoch, done)`` makes the next
    pass over ``epoch`` skip the first ``done`` indices of the permutation (all ranks together), so a
    run resumed mid-epoch sees exactly the examples an uninterrupted run would have seen next.

    With ``world_size`` W > 1 ranks of ``batch_size`` b, optimizer step k trains on permutation
    entries [k*W*b, (k+1)*W*b), rank r on its r-th block of b: the examples of each step are those
    one process with batch W*b would train on, and each example is seen at most once per epoch
    (the last n mod W*b are left out, as one process's ``drop_last`` leaves them out).
    """

    def __init__(self, n: int, seed: int, *, world_size: int = 1, rank: int = 0, batch_size: int = 1):
        if world_size > 1 and n < world_size * batch_size:
            raise ValueError(
                f"the training split has {n} examples, fewer than one global batch ({world_size} ranks x "
                f"data.batch_size={batch_size}); lower data.batch_size or the number of devices"
            )
        self.n, self.seed, self.epoch = n, seed, 0
        self.world_size, self.rank, self.batch_size = world_size, rank, batch_size
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, done: int) -> None:
        self._skip = (epoch, done)

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        return self.n // (self.world_size * self.batch_size) * self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        if self._skip is not None and self._skip[0] == self.epoch:
            order = order[self._skip[1] :]
        self._skip = None
        if self.world_size > 1:  # whole global batches only, so every rank takes the same number of steps
            step = self.world_size * self.batch_size
            order = order[: len(order) // step * step]
            order = order.view(-1, self.world_size, self.batch_size)[:, self.rank].reshape(-1)  # this rank's blocks
        yield from order.tolist()


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s share of ``range(n)`` for evaluation: every ``world_size``-th index, nothing
    repeated (unlike ``DistributedSampler``, which pads the last shard), so metrics synced across
    ranks count each example exactly once."""

    def __init__(self, n: int, *, world_size: int, rank: int):
        self.indices = range(rank, n, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class LRADataModule(L.LightningDataModule):
    """Train/val/test loaders over ``folder/<split>.ids.npy``.

    ``val_split`` names the split used for validation (LRA's Text task validates on test). The
    training order is a function of (seed, epoch, number of ranks) and is saved in checkpoints
    (``state_dict``), so a resumed run continues with the batch an uninterrupted run would have
    trained on next. Under DDP each rank reads its own shard (``batch_size`` is per rank; the
    Trainer must not replace the samplers: ``use_distributed_sampler=False``).
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

    def _ranks(self) -> tuple[int, int]:
        """(world size, rank) of the trainer this datamodule feeds; (1, 0) outside one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _loader(self, split: str, train: bool) -> DataLoader:
        world, rank = self._ranks()
        n = len(self.datasets[split])
        sampler = None
        if train:
            sampler = EpochSampler(n, self.seed, world_size=world, rank=rank, batch_size=self.batch_size)
            if self._resume:
                sampler.resume_at(self._resume["epoch"], self._resume["samples_done"])
                self._resume = None
        elif world > 1:
            sampler = ShardSampler(n, world_size=world, rank=rank)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train and n > self.batch_size,
            num_workers=self.num_workers,
            # the loader's own generator seeds workers: iterating a loader never draws from the
            # global RNG, whose state (dropout, hashing) a checkpoint restores
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def state_dict(self) -> dict:
        """Where training stands in the current epoch (saved in every checkpoint): ``samples_done`` counts
        the examples of all ranks together."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        done = progress.processed * self.batch_size * self.trainer.world_size
        return {"epoch": self.trainer.current_epoch, "samples_done": done}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state or None

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
