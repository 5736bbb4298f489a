"""Interrupted runs resume; one process writes to a run directory.

Every run directory holds ``run.json`` with the run's *fingerprint*: a hash of its resolved config
without the keys that cannot change its numbers (loggers, progress bar, loader workers). When
``lra-train`` starts with ``resume=auto`` (the default) it looks, in this order, for

1. a checkpoint in its own run directory (a SLURM requeue runs the same job in the same folder),
2. the newest unfinished run with the same fingerprint under ``paths.runs`` and ``paths.multirun``
   (the same command typed again gets a new timestamped folder); that run's checkpoints are
   copied into the new folder, the old folder is left as it was,

and continues from its newest checkpoint: ``checkpoints/last.ckpt`` (saved after every validation,
every ``checkpoint.every_n_steps`` and when the run is stopped by SIGTERM or the submitit requeue
signal, each time at the end of a loop iteration: see ``ResumeCheckpoints``) or Lightning's
``hpc_ckpt_<n>.ckpt`` (its SLURM auto-requeue on SIGUSR1). If the newest run of the same config
finished (result.json), the config is done: ``lra-train`` logs ``already done: <path>`` and returns
that run's record without training (``already_done``), so a sweep killed in one job and typed again
skips the jobs that finished; ``resume=never`` runs again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from lra.atomic import write_atomic, write_json_atomic
from lra.dist import any_rank
from lra.errors import UserError
from lra.results import load_result, without_no_effect

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
DONE_FILE = "done.json"  # in a job folder that found its config already done: where the run is


def fingerprint(cfg: DictConfig) -> str:
    """A hash of the resolved config without the keys in ``lra.results.NO_EFFECT``."""
    c = without_no_effect(OmegaConf.to_container(cfg, resolve=True))
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunDirRefused(UserError, RuntimeError):
    """This run may not write to the run directory (another process holds it, or it holds another run)."""


def check_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse a run directory that holds a finished run, or an unfinished run of another config.

    Reads only, so a refused folder stays as it was; ``lra.train`` calls it before taking the lock
    (which writes its pid) and ``prepare_run_dir`` again under it."""
    if (Path(run_dir) / "result.json").exists():
        raise RunDirRefused(
            f"{run_dir} already holds a finished run (result.json); results are never overwritten: "
            "give this run its own hydra.run.dir"
        )
    own, fp = read_run_file(run_dir), fingerprint(cfg)
    if own and own.get("fingerprint") != fp:
        raise RunDirRefused(
            f"{run_dir} holds an unfinished run of a different config (run.json fingerprint "
            f"{own.get('fingerprint')}, this run {fp}); give this run its own hydra.run.dir"
        )


class RunDirLock:
    """An exclusive ``flock`` on ``run_dir/.lock`` for the life of the process.

    The kernel drops the lock when the process dies (even by SIGKILL), so a stale lock never
    blocks a resume; a live one means another ``lra-train`` is writing there.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirRefused(
                f"another lra-train process (pid {holder}) is writing to {self.path.parent}; two runs never "
                "share a run directory: wait for it, or give this run its own hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @staticmethod
    def held(run_dir: Path) -> bool:
        """True if a live process holds ``run_dir``'s lock."""
        path = Path(run_dir) / LOCK_FILE
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def checkpoints(run_dir: Path) -> list[Path]:
    """A run directory's resumable checkpoints, newest first."""
    found = [Path(run_dir) / "checkpoints" / "last.ckpt", *Path(run_dir).glob("hpc_ckpt_*.ckpt")]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)


def read_run_file(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


def find_previous(fp: str, roots: list[Path], exclude: Path) -> Path | None:
    """The run a new run of fingerprint ``fp`` continues: newest first, the first that finished
    (result.json: nothing left to do) or is unfinished, unlocked and has a checkpoint."""
    runs = []
    for root in roots:
        if not root.is_dir():
            continue
        for f in root.rglob(RUN_FILE):
            info = read_run_file(f.parent)
            if info and info.get("fingerprint") == fp and f.parent.resolve() != exclude.resolve():
                runs.append((info.get("started", 0.0), f.parent))
    for _, run_dir in sorted(runs, key=lambda r: r[0], reverse=True):
        if (run_dir / "result.json").exists() or (not RunDirLock.held(run_dir) and checkpoints(run_dir)):
            return run_dir
    return None


def already_done(cfg: DictConfig, run_dir: Path) -> dict | None:
    """With ``resume=auto``: the record of the finished run of this config, if there is one, else None.

    ``run_dir`` itself (a job typed again into a fixed sweep folder) or the run ``find_previous``
    finds under ``paths.runs`` and ``paths.multirun``. Nothing is written to a finished run; a new,
    existing ``run_dir`` gets only ``done.json`` (the finished run's path), so it is not a run.
    """
    if str(cfg.resume) != "auto":
        return None
    run_dir, fp = Path(run_dir), fingerprint(cfg)
    own = read_run_file(run_dir)
    if (run_dir / "result.json").exists() and own and own.get("fingerprint") == fp:
        done = run_dir
    else:
        done = find_previous(fp, [Path(cfg.paths.runs), Path(cfg.paths.multirun)], exclude=run_dir)
        if done is None or not (done / "result.json").exists():
            return None
    try:
        record = load_result(done / "result.json")
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        log.warning("%s; running this config again", e)
        return None
    log.info("already done: %s (resume=never runs it again)", done)
    if done != run_dir and run_dir.is_dir() and not (run_dir / RUN_FILE).exists():
        write_json_atomic(run_dir / DONE_FILE, {"done": str(done), "fingerprint": fp})
    return record


def _retarget(obj, old: str, new: str):
    """``obj`` with every string that starts with ``old`` starting with ``new`` instead."""
    if isinstance(obj, str):
        return new + obj[len(old) :] if obj.startswith(old) else obj
    if isinstance(obj, dict):
        return {_retarget(k, old, new): _retarget(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_retarget(v, old, new) for v in obj)
    return obj


def adopt(src_dir: Path, dst_dir: Path) -> Path:
    """Copy ``src_dir``'s newest checkpoint (and ``best.ckpt``) into ``dst_dir/checkpoints``, with the
    checkpoint callbacks' paths pointing at ``dst_dir``; returns the copy of the newest one."""
    src_dir, dst_dir = Path(src_dir).resolve(), Path(dst_dir).resolve()
    (dst_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    newest = checkpoints(src_dir)[0]
    copied = None
    for name, src in (("last.ckpt", newest), ("best.ckpt", src_dir / "checkpoints" / "best.ckpt")):
        if not src.is_file():
            continue
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
        if "callbacks" in ckpt:
            ckpt["callbacks"] = _retarget(ckpt["callbacks"], str(src_dir), str(dst_dir))
        dst = dst_dir / "checkpoints" / name
        torch_save_atomic(ckpt, dst)
        copied = copied or dst
    return copied


def tensor_bytes(obj) -> int:
    """The bytes of every tensor in a (nested) checkpoint: about the size ``torch.save`` writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def torch_save_atomic(obj, path: Path) -> None:
    """``torch.save`` into a temporary file next to ``path``, then rename it over ``path``.

    A full disk raises an OSError naming the folder and the bytes needed (not torch's ``enforce fail``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(obj, f), needed=tensor_bytes(obj))


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> str | None:
    """Check that ``run_dir`` may take this run and pick the checkpoint to resume from.

    Returns the checkpoint path for ``Trainer.fit(ckpt_path=...)`` or None for a fresh start, and
    writes ``run.json``. Call with the run directory's lock held.
    """
    run_dir = Path(run_dir)
    fp = fingerprint(cfg)
    mode = str(cfg.resume)
    own = read_run_file(run_dir)
    check_run_dir(cfg, run_dir)
    resume_from = source = None
    if mode == "auto":
        own_checkpoints = checkpoints(run_dir) if own else []
        if own_checkpoints:
            resume_from, source = own_checkpoints[0], run_dir
        else:
            roots = [Path(cfg.paths.runs), Path(cfg.paths.multirun)]
            previous = find_previous(fp, roots, exclude=run_dir)
            if previous is not None and not (previous / "result.json").exists():
                resume_from, source = adopt(previous, run_dir), previous
    elif mode != "never":
        given = Path(mode).expanduser()
        if given.is_dir():
            if not checkpoints(given):
                raise FileNotFoundError(f"resume={mode}: no checkpoint in that run directory (checkpoints/last.ckpt)")
            resume_from, source = adopt(given, run_dir), given
        elif given.is_file():
            resume_from, source = given, given
        else:
            raise FileNotFoundError(
                f"resume={mode}: no such run directory or checkpoint; use resume=auto, resume=never or a path"
            )
    info = {
        "fingerprint": fp,
        "started": (own or {}).get("started", time.time()),
        "resumed_from": [*(own or {}).get("resumed_from", []), *([str(source)] if source else [])],
    }
    write_json_atomic(run_dir / RUN_FILE, info)
    if resume_from is not None:
        log.info("resuming from %s (%s)", resume_from, source)
    return None if resume_from is None else str(resume_from)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file in the checkpoint's own folder and renamed into place.

    Lightning's default goes through a temporary file in the system temp folder, which is a copy
    (not an atomic rename) when that folder is on another file system than the run.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        torch_save_atomic(checkpoint, Path(path))


class ResumeCheckpoints(Checkpoint):
    """Owns ``checkpoints/last.ckpt``: saved after every validation, every ``every_n_steps`` optimizer
    steps (if set) and when the run is told to stop, always at the end of a loop iteration, so that a
    run resumed from it continues at exactly the point where the uninterrupted run stood.

    Lightning saves a checkpoint in the middle of its iteration when asked from ``on_train_batch_end``:
    the step's logged row and its validation come after the save, and a resumed run skips both. So:

    - a step whose validation is due is saved after that validation (``on_validation_end``, after
      ``ModelCheckpoint`` has updated ``best.ckpt``: Lightning runs ``Checkpoint`` callbacks last, in
      list order, so list this one after the ``ModelCheckpoint``); a resumed run does not validate again;
    - any other step is saved when Lightning's iteration ends (after the row of the step is logged),
      the one point of the loop without a callback hook: ``on_fit_start`` wraps the epoch loop's
      ``on_advance_end`` for the length of the fit;
    - the final step (``trainer.max_steps``) is saved once the fit has ended (``on_train_end``, after
      Lightning's epoch-end bookkeeping): Lightning skips the loop of a fit restored at
      ``max_steps``, so a checkpoint from earlier in that iteration would leave its end undone.

    Stopping signals:

    - SIGTERM (``kill``, ``scancel``, preemption): Lightning stops at the end of the current iteration;
      this callback saves there (unless in the middle of gradient accumulation, where the last
      regular checkpoint stands) and the process exits with status 143.
    - The submitit requeue signal (``$SUBMITIT_PREEMPT_SIGNAL``, USR2 by default; only when a
      handler is installed, i.e. under the submitit launcher): the next optimizer step finishes,
      the checkpoint is saved, then submitit's handler requeues the job, which resumes here.

    With several ranks a signal may reach one rank only (``kill`` of one pid, a node's preemption).
    Lightning's own SIGTERM handler then runs a collective inside the signal handler and the
    ranks stop at different steps (or hang); so from the first training step this callback's
    handler only notes the signal, and after every optimizer step the ranks agree (an all-reduce)
    whether any of them got one: all stop after the same step and save the checkpoint once.
    """

    def __init__(self, dirpath: Path, every_n_steps: int | None = None):
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self._signal = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
        self._requeue_handler = None
        self._requeue_pending = False
        self._step_at_batch_start = 0
        self._at_boundary = True
        self._due = False  # a step checkpoint waits for the end of this iteration
        self._saved_step = -1  # the optimizer step last.ckpt holds, from this process
        self._unwrap = None
        self._sigterm = False  # under DDP: this rank got SIGTERM (the ranks agree after each step)
        self._rank = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        previous = signal.getsignal(self._signal)
        if callable(previous):
            self._requeue_handler = previous
            signal.signal(self._signal, self._on_requeue_signal)
        loop = trainer.fit_loop.epoch_loop
        original = loop.on_advance_end

        def on_advance_end(*args, **kwargs):
            original(*args, **kwargs)
            self._on_iteration_end(trainer)

        loop.on_advance_end = on_advance_end
        self._unwrap = lambda: delattr(loop, "on_advance_end")

    def on_train_start(self, trainer, pl_module) -> None:
        # after Lightning installed its handlers (fit start); its teardown restores the original one
        self._rank = trainer.global_rank
        if trainer.world_size > 1:
            self._sigterm = False
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        log.warning("rank %d received SIGTERM: all ranks stop after this optimizer step", self._rank)
        self._sigterm = True

    def on_fit_end(self, trainer, pl_module) -> None:
        self._teardown()

    def _teardown(self) -> None:
        if self._requeue_handler is not None:
            signal.signal(self._signal, self._requeue_handler)
        if self._unwrap is not None:
            self._unwrap()
            self._unwrap = None

    def _on_requeue_signal(self, signum, frame) -> None:
        log.warning("received %s: saving a checkpoint after this step, then requeueing", signal.Signals(signum).name)
        self._requeue_pending = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._at_boundary = trainer.global_step != self._step_at_batch_start
        if trainer.world_size > 1 and self._at_boundary:
            self._sigterm, self._requeue_pending = any_rank(trainer, self._sigterm, self._requeue_pending)
            if self._sigterm:
                # Lightning's own flag: it stops every rank at the end of this step as it stops one process
                trainer._signal_connector.received_sigterm = True
        if self.every_n_steps and self._at_boundary and trainer.global_step % self.every_n_steps == 0:
            self._due = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._final(trainer):
            return
        self._save(trainer, quiet=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, quiet=True)

    @staticmethod
    def _final(trainer) -> bool:
        return trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step

    def _on_iteration_end(self, trainer) -> None:
        if not self._at_boundary or self._final(trainer):
            return
        if self._due and self._saved_step != trainer.global_step:
            self._save(trainer, quiet=True)
        self._due = False
        if self._requeue_pending:
            if self._saved_step != trainer.global_step:
                self._save(trainer)
            handler, self._requeue_pending = self._requeue_handler, False
            self._teardown()
            if handler is None:  # another rank got the requeue signal: this one stops with it (saved above)
                trainer._signal_connector.received_sigterm = True
                return
            handler(self._signal, None)  # submitit: requeue this job and exit

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if type(exception).__name__ == "SIGTERMException":
            if not self._at_boundary:
                log.warning("stopped inside gradient accumulation: the last regular checkpoint stands")
            elif self._saved_step != trainer.global_step:
                self._save(trainer)
            else:  # saved after this step's validation
                log.warning("%s holds step %d; run the same command again to resume", self.path, trainer.global_step)
        self._teardown()

    def _save(self, trainer, quiet: bool = False) -> None:
        trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes the file
        self._saved_step = trainer.global_step
        if not quiet and trainer.is_global_zero:
            log.warning("saved %s at step %d; run the same command again to resume", self.path, trainer.global_step)
