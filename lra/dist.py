"""Several ranks, one run: who owns the run folder, how the other ranks learn rank 0's decisions.

A run trained on N devices is N processes (ranks). Lightning's DDP starts them in one of two ways:

- **it spawns them itself** (``trainer=ddp`` / ``trainer=ddp_cpu`` on one machine): rank 0 is the
  command the user typed; it starts ranks 1..N-1 as subprocesses re-running the same command, with
  ``hydra.run.dir`` set to rank 0's folder, once ``Trainer.fit`` begins;
- **the cluster starts them** (SLURM ``srun``, ``torchrun``): every rank starts at the same time.

Either way rank 0 alone locks the run folder, decides what to resume from, prepares the data and
writes ``run.json``, checkpoints and ``result.json``. It then writes its decision to
``run_dir/.rank0.json`` tagged with a *job token* that every rank of this launch knows and no
other launch shares (an id rank 0 puts in the environment its subprocesses inherit; on SLURM the
job, step and restart count; under torchrun its run id and restart count). The other ranks wait
for that file with their token, so a requeued job never reads its previous attempt's decision.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from lra.atomic import write_json_atomic

log = logging.getLogger(__name__)

DECISION_FILE = ".rank0.json"
TOKEN_ENV = "LRA_JOB_TOKEN"
RANK0_PID_ENV = "LRA_RANK0_PID"
WAIT_S = 1800.0  # how long a rank > 0 waits for rank 0 (data preparation of a generated task included)


@dataclass(frozen=True)
class Job:
    """This process's place in the run: ``rank`` of ``world_size`` (devices x nodes)."""

    rank: int
    world_size: int
    spawns_ranks: bool  # rank 0 starts the other ranks itself (Lightning's subprocess launcher)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0


def job_of(trainer: L.Trainer) -> Job:
    """The rank and world size Lightning computed from the trainer arguments and the environment."""
    env = trainer.strategy.cluster_environment if hasattr(trainer.strategy, "cluster_environment") else None
    spawns = trainer.world_size > 1 and env is not None and not env.creates_processes_externally
    return Job(rank=trainer.global_rank, world_size=trainer.world_size, spawns_ranks=spawns)


def job_token(job: Job) -> str:
    """An id every rank of this launch computes alike and a later launch does not."""
    if job.world_size == 1:
        return "single"
    if job.spawns_ranks:  # rank 0 before spawning: a fresh id the subprocesses inherit
        token = uuid.uuid4().hex
        os.environ[TOKEN_ENV] = token
        os.environ[RANK0_PID_ENV] = str(os.getpid())
        return token
    if os.environ.get(TOKEN_ENV):  # a subprocess rank 0 spawned
        return os.environ[TOKEN_ENV]
    if os.environ.get("SLURM_JOB_ID"):
        keys = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT")
        return "slurm-" + "-".join(os.environ.get(k, "0") for k in keys)
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return "env-{}:{}".format(os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", ""))


def rank0_decides(run_dir: Path, job: Job, decide: Callable[[], dict]) -> dict:
    """Rank 0 runs ``decide()`` and shares its (JSON) result; the other ranks wait for it and return it.

    An error on rank 0 is shared too, so the other ranks stop with rank 0's message instead of waiting.
    """
    if job.world_size == 1:
        return decide()
    path = Path(run_dir) / DECISION_FILE
    token = job_token(job)
    if job.is_zero:
        try:
            value = decide()
        except BaseException as e:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"token": token, "error": f"{type(e).__name__}: {e}"})
            raise
        write_json_atomic(path, {"token": token, "value": value})
        return value
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            shared = json.loads(path.read_text())
        except (OSError, ValueError):
            shared = None
        if shared and shared.get("token") == token:
            if "error" in shared:
                raise RuntimeError(f"rank {job.rank}: rank 0 stopped ({shared['error']})")
            return shared["value"]
        time.sleep(0.05)
    raise TimeoutError(f"rank {job.rank}: rank 0 wrote no {path} for this job in {WAIT_S:.0f} s; is rank 0 running?")


def all_reduce(trainer: L.Trainer, values: list[float], op: str = "sum") -> list[float]:
    """``values`` reduced over the ranks (``op``: sum, max or mean); every rank must call it, in the same order."""
    if op not in ("sum", "max", "mean"):
        raise ValueError(f"op={op!r}: one of sum, max, mean")
    if trainer.world_size == 1:
        return [float(v) for v in values]
    if not torch.distributed.is_initialized():
        raise RuntimeError(f"{trainer.world_size} ranks but no process group: reduce inside fit/validate/test")
    t = torch.tensor(values, dtype=torch.float64, device=trainer.strategy.root_device)
    reduce_op = torch.distributed.ReduceOp
    torch.distributed.all_reduce(t, op=reduce_op.MAX if op == "max" else reduce_op.SUM)
    if op == "mean":
        t /= trainer.world_size
    return t.tolist()


def any_rank(trainer: L.Trainer, *flags: bool) -> list[bool]:
    """For each flag, whether it is set on any rank (an all-reduce; every rank must call it)."""
    return [v > 0 for v in all_reduce(trainer, [float(f) for f in flags], op="max")]


def wait_for_spawner(timeout_s: float = 60.0) -> None:
    """In a rank rank 0 spawned: wait until rank 0 has exited.

    Lightning's launcher watches its subprocesses and SIGKILLs rank 0 when one exits with a non-zero
    status, so a rank that stops with 143 (SIGTERM) must not exit before rank 0 has finished.
    """
    spawner = os.environ.get(RANK0_PID_ENV)
    if not spawner or os.getppid() != int(spawner):
        return
    deadline = time.monotonic() + timeout_s
    while os.getppid() == int(spawner) and time.monotonic() < deadline:
        time.sleep(0.05)
