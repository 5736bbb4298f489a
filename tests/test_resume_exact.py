"""A run SIGKILLed at any point and resumed ends with the uninterrupted run's record and metrics.csv."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Where the kill lands in one 24-step run (validation after 6, 12, 18, 24; last.ckpt at 4, 6, 8, 12,
# 16, 18, 20 and when the fit ends; see tests/kill_points.py): after a validation's best.ckpt but
# before its last.ckpt, after the checkpoint of a validation, of a step due both, of a step at the
# epoch boundary (16) and the final one, between checkpoints, during the validation of a step whose
# checkpoint is due (12) and of the final step, before test and before result.json.
POINTS = [
    "best:1",
    "last:2",
    "last:4",
    "last:5",
    "last:8",
    "train:10",
    "val:12",
    "val:24",
    "test",
    "result",
]
SAME = ("val_acc", "test_acc", "train_loss", "steps", "epochs", "timed_steps", "params")


def measured(column: str) -> bool:
    return column.startswith("perf/")  # step time and memory: measurements, not results


def rows(outcome: dict) -> list[dict]:
    """metrics.csv rows without the measurement columns (and rows that held only those)."""
    kept = [{k: v for k, v in r.items() if v != "" and not measured(k)} for r in outcome["rows"]]
    return [r for r in kept if set(r) - {"epoch", "step"}]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    out = root / "out.json"
    env = {**os.environ, "LRA_DATA_DIR": str(root / "data"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.kill_points", str(out), str(root), *POINTS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "error" not in report["reference"], report["reference"]
    return report


@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_numbers(outcomes, point):
    reference, resumed = outcomes["reference"], outcomes[point]
    assert "error" not in resumed, resumed["error"]
    assert {k: resumed["result"][k] for k in SAME} == {k: reference["result"][k] for k in SAME}
    assert rows(resumed) == rows(reference)


def test_the_reference_run_logged_every_validation_and_the_test(outcomes):
    """The comparison above is only as strong as the rows it compares."""
    logged = rows(outcomes["reference"])
    assert [int(r["step"]) for r in logged if "val/acc" in r] == [5, 11, 17, 23]  # after steps 6, 12, 18, 24
    assert sum("train/loss" in r for r in logged) == 12 and sum("test/acc" in r for r in logged) == 1
