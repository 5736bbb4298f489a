"""Kill one short training run at chosen points with SIGKILL, resume each, and report what came out.

``python -m tests.kill_points OUT.json ROOT POINT [POINT ...]`` runs, each in a forked child of this
process (so torch and Lightning are imported once): the uninterrupted run, then for every point a
run that SIGKILLs itself there, then the same run again in the same folder (``resume=auto``).
OUT.json maps "reference" and each point to the run's result.json and metrics.csv rows (or the
error). Points:

- ``last:K`` / ``best:K``: right after the K-th write of ``checkpoints/last.ckpt`` / ``best.ckpt``
- ``train:S`` / ``val:S``: at the training batch of optimizer step S+1 / the first batch of the
  validation after step S
- ``test``: at the first test batch; ``result``: just before result.json is written
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import lra.results
import lra.resume
import lra.train
from lra.config import compose_config
from lra.module import LRAModule
from tests.test_train import TINY

RUN = [
    *TINY,
    "trainer.max_steps=24",  # 16 steps per epoch: the run crosses an epoch boundary at step 16
    "trainer.val_check_interval=6",
    "checkpoint.every_n_steps=4",  # last.ckpt at 4, 6 (validation), 8, 12 (both), 16, 18, 20, fit end
    "trainer.deterministic=true",
    "model.dropout=0.1",  # a resume that lost the random state would diverge
    "trainer.limit_val_batches=2",
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_mlp=32",
    "model.d_head=32",
    "logger=csv",
]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Make this process SIGKILL itself at ``point``."""
    kind, _, arg = point.partition(":")
    if kind in ("last", "best"):
        name, writes, save = f"{kind}.ckpt", [0], lra.resume.torch_save_atomic

        def counted(obj, path):
            save(obj, path)
            if Path(path).name == name:
                writes[0] += 1
                if writes[0] == int(arg):
                    die()

        lra.resume.torch_save_atomic = counted
    elif kind in ("train", "val", "test"):
        hook = {"train": "training_step", "val": "validation_step", "test": "test_step"}[kind]
        original = getattr(LRAModule, hook)

        def step(self, batch, batch_idx):
            if kind == "test" or (self.global_step == int(arg) and not self.trainer.sanity_checking):
                die()
            return original(self, batch, batch_idx)

        setattr(LRAModule, hook, step)
    elif kind == "result":
        write = lra.results.write_json_atomic

        def before_result(path, obj):
            if Path(path).name == "result.json":
                die()
            write(path, obj)

        lra.results.write_json_atomic = before_result
    else:
        raise ValueError(f"unknown kill point {point}")


def in_child(fn) -> int:
    """Run ``fn`` in a forked child; its exit status (negative: killed by that signal)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException as e:  # the parent reads the status; the child never returns into the caller
            print(f"child failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def outcome(run_dir: Path) -> dict:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    return {"result": json.loads((run_dir / "result.json").read_text()), "rows": rows}


def main(out: Path, root: Path, points: list[str]) -> None:
    def train(run_dir: Path, point: str | None = None):
        def go():
            if point:
                arm(point)
            overrides = [*RUN, f"paths.runs={root / 'runs'}", f"paths.multirun={root / 'multirun'}"]
            lra.train.run(compose_config(overrides), run_dir, overrides)

        return go

    report = {}
    for name, point in [("reference", None), *((p, p) for p in points)]:
        run_dir = root / name.replace(":", "_")
        if point is None:
            status = in_child(train(run_dir))
        else:
            killed = in_child(train(run_dir, point))
            if killed != -signal.SIGKILL:
                report[name] = {"error": f"the run was not killed at {point} (exit status {killed})"}
                continue
            status = in_child(train(run_dir))
        report[name] = outcome(run_dir) if status == 0 else {"error": f"exit status {status}"}
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
