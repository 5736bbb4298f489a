"""scripts/gpu_bench.sh: the commands it runs on a GPU (LRA Table 2 settings, 8-minute budget), its errors,
and its CPU dry run through the same entry points (a table row per registered mechanism)."""

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lra.measure import FLOOR, NAIVE
from models.attention import available

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_bench.sh"


def gpu_bench(tmp_path: Path, *args: str, gpu: str | None = "NVIDIA H100 80GB HBM3", timeout: float = 60):
    """Run the script with a stand-in ``nvidia-smi`` first on PATH (printing ``gpu``, or failing for None)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\necho '{gpu}'\n" if gpu else "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_the_gpu_sweep_is_lra_table_2_in_bf16_into_a_folder_named_after_the_gpu(tmp_path):
    proc = gpu_bench(tmp_path, "--print")
    assert proc.returncode == 0, proc.stderr
    tests, sweep, report = commands(proc.stdout)
    assert tests == "python -m pytest -m gpu -q"
    args = sweep.split()
    assert args[:3] == ["python", "-m", "lra.bench"]
    settings = dict(a.split("=", 1) for a in args[3:])
    assert settings["device"] == "cuda" and settings["dtype"] == "bf16" and settings["batch"] == "32"
    assert settings["grid"] == "fixed_batch"
    assert settings["lengths"] == "[1024,4096,16384]"  # 1K to 16K
    assert settings["out_dir"] == "results/efficiency/nvidia-h100-80gb-hbm3"
    assert settings["overwrite"] == "false" and "mechanisms" not in settings  # every registered one
    assert report.startswith("python -m lra.bench_report results/efficiency/nvidia-h100-80gb-hbm3")
    # the budget: tests + sweep caps, and the per-point timeout, leave the report its time inside 8 minutes
    text = SCRIPT.read_text()
    caps = {k: int(re.search(rf"^{k}=(\d+)$", text, re.M).group(1)) for k in ("TESTS_S", "SWEEP_S", "POINT_S")}
    assert caps["TESTS_S"] + caps["SWEEP_S"] <= 480 - 30 and settings["timeout_s"] == str(caps["POINT_S"])
    assert caps["POINT_S"] < caps["SWEEP_S"]


def test_the_dry_run_swaps_in_cpu_and_tiny_sizes(tmp_path):
    proc = gpu_bench(tmp_path, "--dry-run", "--print", gpu=None)  # needs no GPU
    assert proc.returncode == 0, proc.stderr
    tests, sweep, _ = commands(proc.stdout)
    assert tests == "python -m pytest -m gpu -q --collect-only"
    settings = dict(a.split("=", 1) for a in sweep.split()[3:])
    assert (settings["device"], settings["batch"], settings["lengths"]) == ("cpu", "2", "[64]")
    assert Path(settings["out_dir"]).is_relative_to(os.environ.get("TMPDIR", "/tmp"))


@pytest.mark.parametrize(
    ("args", "gpu", "message"),
    [
        (["--fast"], "NVIDIA H100 80GB HBM3", "gpu_bench.sh: unknown option '--fast'; valid: --dry-run, --print"),
        ([], None, "gpu_bench.sh: nvidia-smi finds no GPU on this machine; run it on the GPU machine, or --dry-run"),
    ],
)
def test_a_bad_option_or_no_gpu_is_one_line_and_status_2(tmp_path, args, gpu, message):
    proc = gpu_bench(tmp_path, *args, gpu=gpu)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(message)


# slow: a point per mechanism, each a fresh process; test_bench.py's tiny sweep and the --print tests cover the parts
@pytest.mark.slow
def test_the_dry_run_makes_a_table_with_a_row_per_registered_mechanism(tmp_path):
    proc = gpu_bench(tmp_path, "--dry-run", gpu=None, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = Path(dict(a.split("=", 1) for a in commands(proc.stdout)[1].split()[3:])["out_dir"])
    try:
        with open(out / "points.csv") as f:
            rows = {r["row"]: r for r in csv.DictReader(f)}
        expected = [*available(), NAIVE, FLOOR]
        assert sorted(rows) == sorted(expected)
        assert {r: rows[r]["status"] for r in expected} == dict.fromkeys(expected, "ok")
        table = (out / "table.md").read_text()
        for name in expected:
            assert re.search(rf"^\| {name} \|", table, re.M), f"no row for {name} in table.md"
    finally:
        shutil.rmtree(out, ignore_errors=True)
