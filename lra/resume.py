"""Interrupted runs resume: which checkpoint a run continues from, and checkpoint files written atomically.

A run directory's identity (``run.json``'s fingerprint) and its lock are ``lra.run_dir``'s. When
``lra-train`` starts with ``resume=auto`` (the default) it looks, in this order, for

1. a checkpoint in its own run directory (a SLURM requeue runs the same job in the same folder),
2. the newest unfinished run with the same fingerprint under ``paths.runs`` and ``paths.multirun``
   (the same command typed again gets a new timestamped folder); that run's checkpoints are
   copied into the new folder, the old folder is left as it was,

and continues from its newest checkpoint: ``checkpoints/last.ckpt`` (saved after every validation,
every ``checkpoint.every_n_steps`` and when the run is stopped by SIGTERM or the submitit requeue
signal, each time at the end of a loop iteration: see ``lra.checkpointing.ResumeCheckpoints``) or
Lightning's ``hpc_ckpt_<n>.ckpt`` (its SLURM auto-requeue on SIGUSR1). If the newest run of the same
config finished (result.json), the config is done: ``lra-train`` logs ``already done: <path>`` and
returns that run's record without training (``already_done``), so a sweep killed in one job and typed
again skips the jobs that finished; ``resume=never`` runs again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from lra.atomic import write_atomic, write_json_atomic
from lra.results import load_result
from lra.run_dir import RUN_FILE, RunDirLock, check_run_dir, fingerprint, read_run_file
from lra.spt import PRETRAIN_DIR, STAGE_FILE

log = logging.getLogger(__name__)

DONE_FILE = "done.json"  # in a job folder that found its config already done: where the run is


def checkpoints(run_dir: Path) -> list[Path]:
    """A run directory's resumable checkpoints, newest first."""
    found = [Path(run_dir) / "checkpoints" / "last.ckpt", *Path(run_dir).glob("hpc_ckpt_*.ckpt")]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)


def pretraining_progress(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds self-pretraining progress (``lra.spt_stage``): a finished stage or a checkpoint."""
    stage = Path(run_dir) / PRETRAIN_DIR
    return (stage / STAGE_FILE).is_file() or bool(checkpoints(stage))


def find_previous(fp: str, roots: list[Path], exclude: Path) -> Path | None:
    """The run a new run of fingerprint ``fp`` continues: newest first, the first that finished
    (result.json: nothing left to do) or is unfinished, unlocked and has a checkpoint (of either
    stage under self-pretraining)."""
    runs = []
    for root in roots:
        if not root.is_dir():
            continue
        for f in root.rglob(RUN_FILE):
            info = read_run_file(f.parent)
            if info and info.get("fingerprint") == fp and f.parent.resolve() != exclude.resolve():
                runs.append((info.get("started", 0.0), f.parent))
    for _, run_dir in sorted(runs, key=lambda r: r[0], reverse=True):
        resumable = checkpoints(run_dir) or pretraining_progress(run_dir)
        if (run_dir / "result.json").exists() or (not RunDirLock.held(run_dir) and resumable):
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


def adopt(src_dir: Path, dst_dir: Path) -> Path | None:
    """Copy ``src_dir``'s newest checkpoint (and ``best.ckpt``) into ``dst_dir/checkpoints``, with the
    checkpoint callbacks' paths pointing at ``dst_dir``, and likewise its self-pretraining stage
    (``pretrain/``: checkpoints and ``stage.json``); returns the copy of the newest checkpoint of the
    training stage (None if it has none yet: pretraining resumes from its own copy)."""
    src_dir, dst_dir = Path(src_dir).resolve(), Path(dst_dir).resolve()
    if pretraining_progress(src_dir):
        src_stage, dst_stage = src_dir / PRETRAIN_DIR, dst_dir / PRETRAIN_DIR
        found = checkpoints(src_stage)
        copy_checkpoints(found[0] if found else None, src_stage, dst_stage, src_dir, dst_dir)
        if (src_stage / STAGE_FILE).is_file():
            summary = json.loads((src_stage / STAGE_FILE).read_text())
            write_json_atomic(dst_stage / STAGE_FILE, _retarget(summary, str(src_dir), str(dst_dir)))
    found = checkpoints(src_dir)
    return copy_checkpoints(found[0] if found else None, src_dir, dst_dir, src_dir, dst_dir)


def copy_checkpoints(newest: Path | None, src: Path, dst: Path, old_root: Path, new_root: Path) -> Path | None:
    """``newest`` as ``dst/checkpoints/last.ckpt`` and ``src/checkpoints/best.ckpt`` beside it, the
    callbacks' paths moved from ``old_root`` to ``new_root``; the copy of ``newest`` (or None)."""
    (dst / "checkpoints").mkdir(parents=True, exist_ok=True)
    copied = None
    for name, path in (("last.ckpt", newest), ("best.ckpt", src / "checkpoints" / "best.ckpt")):
        if path is None or not path.is_file():
            continue
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if "callbacks" in ckpt:
            ckpt["callbacks"] = _retarget(ckpt["callbacks"], str(old_root), str(new_root))
        torch_save_atomic(ckpt, dst / "checkpoints" / name)
        copied = copied or (dst / "checkpoints" / name if name == "last.ckpt" else None)
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
        elif own and pretraining_progress(run_dir):  # killed in (or right after) pretraining: lra.spt_stage resumes it
            source = run_dir
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
