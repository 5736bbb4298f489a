"""Distributed training: 2 processes on CPU (gloo, ``trainer=ddp_cpu``) make one run with one record.

Each run here is a real ``python -m lra.train`` job: rank 0 starts rank 1 as Lightning does.
The splits are odd-sized (63 validation, 61 test examples), so shards are uneven and padding
would show as a wrong count.
"""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lra.build import build_model, pad_id
from lra.config import CONFIG_DIR, compose_config
from lra.data.datamodule import EpochSampler, LRADataModule, ShardSampler
from lra.module import LRAModule
from tests.test_resume import ckpt_step, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
N_VAL, N_TEST = 63, 61
BASE = [
    "experiment=quickstart",
    "task.profile=ddp",
    "task.max_len=32",
    "task.generator.n_train=256",
    f"task.generator.n_val={N_VAL}",
    f"task.generator.n_test={N_TEST}",
    "task.generator.max_length=30",
    "trainer.max_steps=40",
    "trainer.val_check_interval=10",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    "data.prepare_workers=1",
    "measure.warmup_steps=2",
    "logger=csv",
]
DDP = [*BASE, "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=8"]  # global batch 16
ONE = [*BASE, "data.batch_size=16"]
COMPARED = ("val_acc", "test_acc", "train_loss", "steps", "epochs", "val_examples", "test_examples")


def launch(args, cwd: Path, data: Path, env: dict | None = None) -> subprocess.Popen:
    """``python -m lra.train ARGS`` in its own session (so the whole job can be killed at once)."""
    env = {
        **os.environ,
        "LRA_DATA_DIR": str(data),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "lra.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """The job's exit status and output; a job still running after ``timeout`` s (ranks waiting
    on each other) is killed, all its ranks, and fails the test."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the job hung for {timeout} s:\n{(out + err)[-3000:]}") from None
    return proc.returncode, out + err


def run_ok(args, cwd: Path, data: Path) -> str:
    rc, log = finish(launch(args, cwd, data))
    assert rc == 0, log[-3000:]
    return log


def only_result(root: Path) -> tuple[Path, dict]:
    (path,) = root.rglob("result.json")
    return path.parent, json.loads(path.read_text())


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return [(int(r["step"]), float(r["train/loss"])) for r in rows if r["train/loss"]]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def evaluate(ckpt: Path, split: str, overrides: list[str], data: Path) -> float:
    """Accuracy of a checkpoint's weights over a whole split, in this process: the oracle."""
    cfg = compose_config([*overrides, f"paths.data_dir={data}"])
    dm = LRADataModule(data / "listops" / "ddp", batch_size=7, val_split="val")
    dm.setup()
    module = LRAModule(build_model(cfg), n_classes=cfg.task.n_classes, pad_id=pad_id(cfg.task), lr=1e-3, weight_decay=0)
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    module.eval()
    correct = 0
    with torch.no_grad():
        for batch in dm.val_dataloader() if split == "val" else dm.test_dataloader():
            correct += int((module(batch["ids"]).argmax(-1) == batch["label"]).sum())
    return correct / len(dm.datasets[split])


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_step_trains_the_examples_one_process_trains_with_the_global_batch(world):
    n, b = 100, 4
    one = list(EpochSampler(n, seed=3, batch_size=b * world))
    shards = [list(EpochSampler(n, seed=3, world_size=world, rank=r, batch_size=b)) for r in range(world)]
    steps = n // (b * world)
    assert all(len(s) == steps * b for s in shards)
    for k in range(steps):  # step k: rank r's batch is its k-th block of b; together one process's batch k
        together = [i for s in shards for i in s[k * b : (k + 1) * b]]
        assert together == one[k * b * world : (k + 1) * b * world]
    seen = [i for s in shards for i in s]
    assert len(set(seen)) == len(seen) == steps * b * world  # at most once per epoch, all but n mod (b*world)


def test_the_order_depends_on_seed_and_epoch_and_a_resume_skips_what_was_trained():
    def epoch(seed, e, rank=0, skip=None):
        s = EpochSampler(64, seed=seed, world_size=2, rank=rank, batch_size=4)
        s.set_epoch(e)
        if skip is not None:
            s.resume_at(e, skip)
        return list(s)

    assert epoch(0, 0) == epoch(0, 0) != epoch(0, 1) and epoch(0, 0) != epoch(1, 0)
    for rank in (0, 1):  # 3 global steps of 8 done before the restart: each rank continues at its block 4
        assert epoch(0, 2, rank, skip=24) == epoch(0, 2, rank)[12:]


def test_evaluation_shards_cover_the_split_once_without_padding():
    shards = [list(ShardSampler(61, world_size=2, rank=r)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(61)) and (len(shards[0]), len(shards[1])) == (31, 30)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-process run: (workspace, its run folder, its record)."""
    root = tmp_path_factory.mktemp("ddp")
    run_ok([*DDP, f"paths.runs={root / 'reference'}"], root, root / "data")
    run_dir, record = only_result(root / "reference")
    return root, run_dir, record


def test_two_processes_make_one_run_with_whole_split_metrics(reference):
    root, run_dir, record = reference
    assert [p.name for p in (root / "reference").glob("*/*")] == [run_dir.name]  # one run folder
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (record["world_size"], record["batch_size"], record["global_batch"]) == (2, 8, 16)
    assert (record["val_examples"], record["test_examples"]) == (N_VAL, N_TEST)  # every example once
    assert record["steps"] == 40 and record["tokens_per_s"] > 0 and record["peak_mem_mb"] > 0
    # the synced metrics equal one process's evaluation of the same weights over the whole split
    best = run_dir / "checkpoints" / "best.ckpt"
    assert record["test_acc"] == pytest.approx(evaluate(best, "test", DDP, root / "data"), abs=1e-6)
    assert record["val_acc"] == pytest.approx(evaluate(best, "val", DDP, root / "data"), abs=1e-6)


def test_one_process_with_the_same_global_batch_follows_the_same_loss_curve(reference, tmp_path):
    root, run_dir, record = reference
    run_ok([*ONE, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path, root / "data")
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    two_curve, one_curve = loss_curve(run_dir), loss_curve(tmp_path / "one")
    assert [s for s, _ in two_curve] == [s for s, _ in one_curve] == list(range(40))
    # same examples per optimizer step; float32 sums in another order differ in the last bits
    for (step, a), (_, b) in zip(two_curve, one_curve, strict=True):
        assert a == pytest.approx(b, abs=1e-5), f"step {step}: 2 processes {a}, 1 process {b}"
    assert (one["world_size"], one["global_batch"]) == (1, 16)
    assert (one["val_examples"], one["test_examples"]) == (N_VAL, N_TEST)


def test_sigkill_of_the_whole_job_then_the_same_command_resumes(reference, tmp_path):
    root, _, ref = reference
    args = [*DDP, "checkpoint.every_n_steps=5", f"paths.runs={tmp_path / 'runs'}"]
    proc = launch(args, tmp_path, root / "data")
    ckpt = wait_for("runs/*/*/checkpoints/last.ckpt", tmp_path, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # rank 0 and rank 1
    assert finish(proc)[0] == -signal.SIGKILL
    interrupted = ckpt.parents[1]
    assert not (interrupted / "result.json").exists() and 0 < ckpt_step(ckpt) < 40

    log = run_ok(args, tmp_path, root / "data")
    assert "Restored all states from the checkpoint" in log
    run_dir, resumed = only_result(tmp_path / "runs")
    assert {k: resumed[k] for k in COMPARED} == {k: ref[k] for k in COMPARED}
    assert resumed["resumed_from"] == [str(interrupted)] and resumed["world_size"] == 2


def test_sigterm_to_rank_1_stops_both_ranks_at_one_step_with_one_checkpoint(reference, tmp_path):
    root, _, ref = reference
    args = [*DDP, f"hydra.run.dir={tmp_path / 'run'}"]
    proc = launch(args, tmp_path, root / "data")
    ckpt = wait_for("run/checkpoints/last.ckpt", tmp_path, proc)
    (rank1,) = children(proc.pid)
    os.kill(rank1, signal.SIGTERM)
    rc, log = finish(proc)
    assert rc == 143, log[-3000:]
    deadline = time.time() + 30
    while alive(rank1) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(rank1), "rank 1 is still running"
    assert "rank 1 received SIGTERM" in log
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+); run the same command to resume", log)[1])
    assert f"rank 1: stopped by SIGTERM at step {stopped}\n" in log  # both ranks, the same step
    assert ckpt_step(ckpt) == stopped and log.count("last.ckpt at step") == 1  # written once, at that step
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not (tmp_path / "run" / "result.json").exists()

    log = run_ok(args, tmp_path, root / "data")  # the same command, the same folder: resumes
    _, resumed = only_result(tmp_path / "run")
    assert {k: resumed[k] for k in COMPARED} == {k: ref[k] for k in COMPARED}


def test_ranks_started_by_slurm_make_the_same_run(reference, tmp_path):
    """Two tasks started at once as ``srun --ntasks-per-node=2`` starts them (each its own
    ``lra-train``, SLURM's variables): Lightning takes the ranks from SLURM, rank 1 waits for
    rank 0's decision, and the run equals the one rank 0 spawned itself."""
    root, _, ref = reference
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0"}
    slurm |= {"SLURM_JOB_NAME": "lra", "SLURM_JOB_ID": "4243", "SLURM_STEP_ID": "0", "SLURM_NODELIST": "localhost"}
    slurm |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    args = [*DDP, f"hydra.run.dir={tmp_path / 'run'}"]
    tasks = [
        launch(args, tmp_path, root / "data", env={**slurm, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)})
        for r in (0, 1)
    ]
    outcomes = [finish(t) for t in tasks]
    assert [rc for rc, _ in outcomes] == [0, 0], outcomes[0][1][-2000:] + outcomes[1][1][-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outcomes[1][1]
    run_dir, record = only_result(tmp_path)
    assert {k: record[k] for k in COMPARED} == {k: ref[k] for k in COMPARED} and record["world_size"] == 2


def test_the_readme_multi_node_command_asks_slurm_for_one_task_per_gpu(tmp_path, monkeypatch):
    """The README's 2-node command, through the launcher config and submitit, gives this sbatch script."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (line,) = [ln for ln in README.read_text().splitlines() if "hydra.launcher.nodes=2" in ln]
    overrides = [a.split(",")[0] for a in line.split()[1:] if a != "-m"]  # one job of the sweep
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["nodes"] * launcher["tasks_per_node"] == cfg.trainer.devices * cfg.trainer.num_nodes == 8
    # what hydra_submitit_launcher's SlurmLauncher hands submitit; submitit wants an srun on PATH
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "submitit_folder", "max_num_timeout"}
    params = {k if k in base else f"slurm_{k}": v for k, v in launcher.items() if k not in skip}
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("lra-train", "uid")  # the sbatch file submitit writes
    for flag in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--signal=USR2@120"):
        assert f"#SBATCH {flag}\n" in script, script
