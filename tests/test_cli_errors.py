"""User errors reach the user as one message and exit status 2; a refused run touches nothing."""

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lra import errors, resume
from lra.atomic import write_json_atomic
from lra.data.cli import cli
from lra.data.cli import main as lra_data
from lra.errors import run_cli
from lra.resume import RunDirLock, torch_save_atomic
from lra.train import main as lra_train_main
from tests.test_bad_data import TASK

ROOT = Path(__file__).resolve().parents[1]


def lra_train(tmp_path: Path, run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "lra.train", "experiment=quickstart", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def a_run_dir(folder: Path, *extra: str) -> Path:
    """A run folder as lra-train leaves it: Hydra's record of the config and the log, plus ``extra`` of
    run.json (an unfinished run of another config) and result.json (a finished run)."""
    files = {
        ".hydra/config.yaml": "seed: 0\n",
        ".hydra/hydra.yaml": "hydra:\n  mode: RUN\n",
        ".hydra/overrides.yaml": "- experiment=quickstart\n",
        "train.log": "[2026-01-01 00:00:00,000][lra.train][INFO] - the run that owns this folder\n",
        "run.json": '{"fingerprint": "0123456789abcdef", "started": 0.0, "resumed_from": []}\n',
        "result.json": '{"test_acc": 0.5}\n',
    }
    for name, text in files.items():
        if "/" in name or name == "train.log" or name in extra:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return folder


def assert_one_message(proc: subprocess.CompletedProcess, start: str) -> None:
    assert proc.returncode == 2, proc.stderr
    # the message is the one lra-train line (Lightning may print its device banner before a lock refusal)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("lra-train")]
    assert len(ours) == 1 and ours[0].startswith(f"lra-train: {start}"), proc.stderr
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert "Error executing job" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (("run.json", "result.json"), "{run_dir} already holds a finished run (result.json)"),
        (("run.json",), "{run_dir} holds an unfinished run of a different config (run.json fingerprint 0123"),
    ],
    ids=["finished", "another config"],
)
def test_a_run_refused_by_what_the_folder_holds_leaves_it_byte_for_byte(tmp_path, extra, refusal):
    run_dir = a_run_dir(tmp_path / "run", *extra)
    before = state(run_dir)
    proc = lra_train(tmp_path, run_dir, "seed=3")
    assert_one_message(proc, refusal.format(run_dir=run_dir))
    assert state(run_dir) == before


def test_a_run_refused_by_a_held_lock_leaves_the_folder_byte_for_byte(tmp_path):
    run_dir = a_run_dir(tmp_path / "run")
    lock = RunDirLock(run_dir).acquire()  # the run that owns the folder is still going
    try:
        before = state(run_dir)
        proc = lra_train(tmp_path, run_dir)
        assert_one_message(proc, f"another lra-train process (pid {os.getpid()}) is writing to {run_dir}")
        assert state(run_dir) == before
    finally:
        lock.release()


def test_a_bad_value_names_its_key_and_debug_shows_the_traceback(tmp_path):
    proc = lra_train(tmp_path, tmp_path / "run", "seed=abc")
    assert_one_message(proc, "invalid configuration")
    assert "seed=abc: must be an integer in 0..4294967295" in proc.stderr and "int()" not in proc.stderr
    assert not (tmp_path / "run").exists() or state(tmp_path / "run") == {}
    proc = lra_train(tmp_path, tmp_path / "run", "seed=abc", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_a_config_composition_error_is_one_message(monkeypatch, capsys):
    """Hydra's own errors (before any run starts) too; in this process, as nothing is run."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # lra-train sets it to 1: this restores it after the test
    monkeypatch.setattr(sys, "argv", ["lra-train", "optim.lrr=0.1"])
    with pytest.raises(SystemExit) as info:
        lra_train_main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("lra-train: Could not override 'optim.lrr'.")
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err


def test_a_manifest_that_is_not_json_names_the_file_and_the_command(tmp_path, monkeypatch, capsys):
    data = f"paths.data_dir={tmp_path}"
    assert lra_data(["prepare", "listops", "--workers", "1", *TASK, data]) == 0
    manifest = tmp_path / "listops" / "tiny" / "manifest.json"
    manifest.write_text('{"task": "listops", "splits": {')  # cut short
    monkeypatch.setattr(sys, "argv", ["lra-data", "info", "listops", *TASK, data])
    capsys.readouterr()
    assert cli() == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lra-data: {manifest} is not valid JSON (")
    assert "remake it with: `lra-data prepare listops task.profile=tiny --force`" in err and "Traceback" not in err
    assert lra_data(["prepare", "listops", "--workers", "1", *TASK, data, "--force"]) == 0  # the named fix works
    assert json.loads(manifest.read_text())["task"] == "listops"


def test_a_full_disk_names_the_folder_and_the_bytes_needed(tmp_path, monkeypatch, capsys):
    real_save = torch.save
    monkeypatch.setattr(resume.torch, "save", lambda obj, f: real_save(obj, "/dev/full"))  # a real ENOSPC
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(OSError) as info:
        torch_save_atomic({"state_dict": {"w": torch.zeros(1000)}}, tmp_path / "ckpt" / "last.ckpt")
    assert info.value.errno == errno.ENOSPC
    needs = "writing there needs about 4,000 bytes and 1,000 bytes are free"
    assert str(info.value).startswith(f"no space left on the disk of {tmp_path / 'ckpt'}: {needs}")
    assert list((tmp_path / "ckpt").iterdir()) == []  # no partial file left

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=f"no space left on the disk of {tmp_path}: writing there needs about 17 bytes"):
        write_json_atomic(tmp_path / "result.json", {"acc": 0.5})  # '{\n  "acc": 0.5\n}\n' is 17 bytes
    assert list(tmp_path.glob("*.json*")) == []
    assert run_cli("lra-train", lambda: write_json_atomic(tmp_path / "r.json", [1]), debug=False) == 2
    assert capsys.readouterr().err.startswith(f"lra-train: no space left on the disk of {tmp_path}")
