"""Interrupted runs resume to the numbers of an uninterrupted run; run directories are never shared."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lra.config import compose_config
from lra.resume import AtomicCheckpointIO, RunDirLock, find_previous, fingerprint
from lra.table import main as lra_table
from lra.train import run
from tests.test_table import md_rows
from tests.test_train import TINY

# 40 optimizer steps, validation (and checkpoint) every 10: long enough to interrupt after the
# first checkpoint, and dropout is on, so a resume that lost the random state would diverge.
LONG = [
    *TINY,
    "trainer.max_steps=40",
    "trainer.val_check_interval=10",
    "trainer.deterministic=true",
    "model.dropout=0.1",
    "data.batch_size=8",
    "logger=csv",
]
COMPARED = ("val_acc", "test_acc", "train_loss", "steps", "epochs")


def launch(args, cwd: Path, data: Path, prelude: str = "", env: dict | None = None) -> subprocess.Popen:
    """``lra-train ARGS`` in a subprocess (``prelude``: Python run first, e.g. a signal handler)."""
    code = f"{prelude}\nimport sys\nfrom lra.train import main\nsys.argv = ['lra-train', *{list(args)!r}]\nmain()"
    env = {
        **os.environ,
        "LRA_DATA_DIR": str(data),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


def wait_for(path_glob, root: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(root.glob(path_glob))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path_glob} appeared:\n{finish(proc)[1][-3000:]}")
        time.sleep(0.01)
    raise AssertionError(f"{path_glob} did not appear in {timeout} s")


def results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


def ckpt_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Prepared data and the uninterrupted run every resumed run must match."""
    root = tmp_path_factory.mktemp("resume")
    proc = launch([*LONG, f"paths.runs={root / 'reference'}"], root, root / "data")
    rc, log = finish(proc)
    assert rc == 0, log[-3000:]
    (reference,) = results(root / "reference")
    return root, reference


def test_sigkill_then_same_command_resumes_in_place(workspace, tmp_path):
    """A killed job rerun in its own folder (a SLURM requeue) continues from its last checkpoint."""
    root, reference = workspace
    args = [*LONG, "checkpoint.every_n_steps=5", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = launch(args, tmp_path, root / "data")
    ckpt = wait_for("run/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    assert not (tmp_path / "run" / "result.json").exists()
    killed_at = ckpt_step(ckpt)
    assert 0 < killed_at < 40

    rc, log = finish(launch(args, tmp_path, root / "data"))
    assert rc == 0, log[-3000:]
    assert "resuming from" in log and "Restored all states from the checkpoint" in log
    (resumed,) = results(tmp_path)
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert resumed["resumed_from"] == [str(tmp_path / "run")]


def test_sigterm_saves_a_checkpoint_and_a_new_invocation_resumes(workspace, tmp_path):
    """SIGTERM: the step finishes, last.ckpt is saved, exit 143; the same command (a new run folder)
    adopts those checkpoints and ends with the uninterrupted run's numbers."""
    root, reference = workspace
    args = [*LONG, f"paths.runs={tmp_path / 'runs'}"]
    proc = launch(args, tmp_path, root / "data")
    first = wait_for("runs/*/*/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    rc, log = finish(proc)
    assert rc == 143, log[-3000:]
    assert "stopped by SIGTERM at step" in log and "run the same command to resume" in log
    stopped_at = int(log.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert ckpt_step(first) == stopped_at  # the checkpoint holds the very step the run stopped at
    interrupted = first.parents[1]

    rc, log = finish(launch(args, tmp_path, root / "data"))
    assert rc == 0 and "Restored all states from the checkpoint" in log, log[-3000:]
    (resumed,) = results(tmp_path / "runs")
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert resumed["resumed_from"] == [str(interrupted)]
    assert not (interrupted / "result.json").exists()  # the old folder is left as it was


def test_submitit_requeue_signal_checkpoints_then_hands_over(workspace, tmp_path):
    """Under the submitit launcher USR2 means "requeue": the step finishes, the checkpoint is saved,
    then submitit's handler runs (here it records the call and exits, as submitit does)."""
    root, reference = workspace
    marker = tmp_path / "requeued"
    prelude = textwrap.dedent(f"""
        import signal, sys
        def requeue(signum, frame):
            open({str(marker)!r}, "w").write("requeued")
            sys.exit(-1)
        signal.signal(signal.SIGUSR2, requeue)
    """)
    args = [*LONG, f"hydra.run.dir={tmp_path / 'run'}"]
    proc = launch(args, tmp_path, root / "data", prelude)
    first = wait_for("run/checkpoints/last.ckpt", tmp_path, proc)
    first_step = ckpt_step(first)
    proc.send_signal(signal.SIGUSR2)
    rc, log = finish(proc)
    assert rc != 0 and marker.read_text() == "requeued", log[-3000:]
    assert "saved" in log and ckpt_step(first) > first_step  # a fresh checkpoint at the signal's step
    rc, log = finish(launch(args, tmp_path, root / "data"))  # the requeued job: same folder
    assert rc == 0 and "Restored all states from the checkpoint" in log, log[-3000:]
    (resumed,) = results(tmp_path)
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}


def test_lightning_slurm_requeue_checkpoint_is_resumed_by_the_same_command(workspace, tmp_path):
    """A job started by hand with ``sbatch --signal=USR1@90``: on USR1 Lightning saves
    ``hpc_ckpt_1.ckpt`` and runs ``scontrol requeue <job>``; the requeued job types the same
    command (a new run folder) and continues from that checkpoint."""
    root, _ = workspace
    (tmp_path / "bin").mkdir()
    scontrol = tmp_path / "bin" / "scontrol"
    done = tmp_path / "scontrol.args"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {done}.tmp && mv {done}.tmp {done}\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "lra", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0"}
    slurm |= {"SLURM_LOCALID": "0", "SLURM_NODEID": "0", "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    args = [*LONG, f"paths.runs={tmp_path / 'runs'}"]
    proc = launch(args, tmp_path, root / "data", env=slurm)
    wait_for("runs/*/*/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGUSR1)
    hpc = wait_for("runs/*/*/hpc_ckpt_1.ckpt", tmp_path, proc)
    wait_for("scontrol.args", tmp_path, proc)  # Lightning saves, then requeues
    proc.send_signal(signal.SIGKILL)  # the time limit
    finish(proc)
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]

    rc, log = finish(launch(args, tmp_path, root / "data"))
    assert rc == 0 and "Restored all states from the checkpoint" in log, log[-3000:]
    (resumed,) = results(tmp_path / "runs")
    assert resumed["steps"] == 40 and resumed["resumed_from"] == [str(hpc.parent)]


def test_a_finished_run_directory_is_never_reused(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lra.resume")
    overrides = [*TINY, "trainer.max_steps=2", f"paths.data_dir={tmp_path}", "logger=none"]
    first = run(compose_config(overrides), tmp_path / "run", overrides)
    written = (tmp_path / "run" / "result.json").read_bytes()
    assert run(compose_config(overrides), tmp_path / "run", overrides) == first  # resume=auto: already done
    assert f"already done: {tmp_path / 'run'}" in caplog.text
    assert (tmp_path / "run" / "result.json").read_bytes() == written
    never = [*overrides, "resume=never"]
    with pytest.raises(RuntimeError, match="already holds a finished run .* give this run its own hydra.run.dir"):
        run(compose_config(never), tmp_path / "run", never)


def test_a_run_directory_in_use_is_refused(tmp_path):
    lock = RunDirLock(tmp_path).acquire()
    try:
        cfg = compose_config([*TINY, f"paths.data_dir={tmp_path}", "logger=none"])
        with pytest.raises(RuntimeError, match=rf"another lra-train process \(pid {os.getpid()}\) is writing to"):
            run(cfg, tmp_path, [])
        assert RunDirLock.held(tmp_path)
    finally:
        lock.release()
    assert not RunDirLock.held(tmp_path)


def test_an_unfinished_run_of_another_config_is_not_overwritten(tmp_path):
    overrides = [*TINY, "trainer.max_steps=2", f"paths.data_dir={tmp_path}", "logger=none"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"fingerprint": "0123456789abcdef", "started": 0}))
    with pytest.raises(RuntimeError, match="holds an unfinished run of a different config"):
        run(compose_config(overrides), tmp_path / "run", overrides)


def fake_run(root: Path, name: str, started: float, *, finished=False, checkpoint=True) -> Path:
    d = root / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"fingerprint": "f" * 16, "started": started}))
    if checkpoint:
        (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    if finished:
        (d / "result.json").write_text("{}")
    return d


def test_the_newest_finished_or_resumable_run_is_found(tmp_path):
    fake_run(tmp_path, "a", 1.0)  # interrupted, but a later run of the config finished
    b = fake_run(tmp_path, "b", 2.0, finished=True)
    assert find_previous("f" * 16, [tmp_path], exclude=tmp_path / "new") == b  # done: nothing to resume
    c = fake_run(tmp_path, "c", 3.0)
    fake_run(tmp_path, "d", 4.0, checkpoint=False)  # killed before its first checkpoint
    assert find_previous("f" * 16, [tmp_path], exclude=tmp_path / "new") == c
    assert find_previous("e" * 16, [tmp_path], exclude=tmp_path / "new") is None
    lock = RunDirLock(c).acquire()  # still running somewhere: not resumable
    try:
        assert find_previous("f" * 16, [tmp_path], exclude=tmp_path / "new") == b
    finally:
        lock.release()


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_killed_sweep_typed_again_skips_its_finished_job_and_each_seed_counts_once(tmp_path, capsys):
    """``lra-train -m ... seed=0,1`` SIGKILLed in its second job, then typed again (a new timestamped
    sweep folder): job 0 is reported done and left alone, job 1 finishes, lra-table counts 2 runs."""
    args = ["-m", *TINY, "trainer.max_steps=4", "trainer.val_check_interval=2", "logger=none", "seed=0,1"]
    args += [f"paths.multirun={tmp_path / 'multirun'}", f"paths.runs={tmp_path / 'runs'}"]
    proc = launch(args, tmp_path, tmp_path / "data")
    wait_for("multirun/*/*/1_*/run.json", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    (first,) = tmp_path.glob("multirun/*/*/0_*")
    assert (first / "result.json").is_file() and not list(tmp_path.glob("multirun/*/*/1_*/result.json"))
    before = files(first)
    time.sleep(1.1)  # the sweep folder is named to the second

    rc, log = finish(launch(args, tmp_path, tmp_path / "data"))
    assert rc == 0, log[-3000:]
    assert f"already done: {first}" in log
    assert files(first) == before  # not rerun, not touched
    (again,) = [d for d in tmp_path.glob("multirun/*/*/0_*") if d != first]
    assert not (again / "result.json").exists() and not (again / "run.json").exists()
    assert json.loads((again / "done.json").read_text())["done"] == str(first)
    assert [r["seed"] for r in results(tmp_path / "multirun")] == [0, 1]
    assert lra_table([str(tmp_path / "multirun")]) == 0
    assert md_rows(capsys.readouterr().out)["vanilla"][0].endswith("] n=2")


def test_a_checkpoint_write_that_dies_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 10}, path)

    def dies_midway(obj, f):  # torch.save is handed the temporary file (an open file since lra.atomic)
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 20}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"global_step": 10}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_fingerprint_ignores_presentation_but_not_numbers():
    base = compose_config(TINY)
    same = compose_config([*TINY, "logger=none", "trainer.enable_progress_bar=true", "data.num_workers=2"])
    other = compose_config([*TINY, "optim.lr=0.1"])
    assert fingerprint(base) == fingerprint(same) != fingerprint(other)
