"""A run directory: who may write to it and which run it holds.

One process writes to a run directory: the one holding ``.lock`` (``RunDirLock``, an ``flock`` the
kernel drops when the process dies). Every run directory holds ``run.json`` with the run's
*fingerprint*: a hash of its resolved config without the keys that cannot change its numbers
(``lra.results.NO_EFFECT``: loggers, progress bar, loader workers), so a folder that holds a
finished run, or an unfinished run of another config, is refused (``check_run_dir``) before
anything is written to it. Hydra is told not to write into the folder itself; once the lock is
taken, ``lra-train`` writes Hydra's ``.hydra/`` files and its log file there
(``save_hydra_files``, ``add_log_file``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lra.atomic import write_text_atomic
from lra.errors import UserError
from lra.results import without_no_effect

RUN_FILE = "run.json"
LOCK_FILE = ".lock"


def fingerprint(cfg: DictConfig) -> str:
    """A hash of the resolved config without the keys in ``lra.results.NO_EFFECT``."""
    c = without_no_effect(OmegaConf.to_container(cfg, resolve=True))
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunDirRefused(UserError, RuntimeError):
    """This run may not write to the run directory (another process holds it, or it holds another run)."""


def read_run_file(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


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


def save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra's ``run_job`` writes to ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml), atomically."""
    hydra_cfg = HydraConfig.instance().cfg
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", hydra_cfg),
        ("overrides.yaml", hydra_cfg.hydra.overrides.task),
    ):
        write_text_atomic(folder / name, OmegaConf.to_yaml(node))


def add_log_file(path: Path) -> logging.Handler:
    """Append the root logger's records to ``path`` in Hydra's format (its ``job_logging`` file handler)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
