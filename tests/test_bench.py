"""lra-bench: the table builder on synthetic rows, the plan, and a tiny real sweep with provoked failures."""

import csv
import math
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from lra import bench_report
from lra.bench import OutDirTaken, check_out_dir, run, run_point
from lra.bench_plan import Point, plan, settings
from lra.config import compose_config
from lra.measure import BASELINE, FLOOR, NAIVE

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_mlp=64",
    "model.d_head=32",
    "batch=2",
    "repeats=1",
    "warmup=0",
    "cpu_threads=1",
    "device=cpu",
]


def bench_config(tmp_path, *overrides):
    return compose_config([*TINY, f"out_dir={tmp_path}", *overrides], config_name="bench")


# ---------------------------------------------------------------------------------------------
# Table builder on synthetic rows
# ---------------------------------------------------------------------------------------------
def synthetic(row, n, ms=None, mem=None, status="ok"):
    r = {"row": row, "length": n, "status": status}
    if status == "ok":
        r.update(train_step_median_ms=ms, train_step_tokens_per_s=1000 * n / ms, train_step_mem_mb=mem)
        r.update(inference_median_ms=ms / 4, inference_tokens_per_s=4000 * n / ms, inference_mem_mb=mem / 2)
    return r


ROWS = [
    synthetic(FLOOR, 1024, 100, 50),
    synthetic(FLOOR, 2048, 200, 100),
    synthetic(FLOOR, 4096, 400, 200),
    synthetic(BASELINE, 1024, 300, 200),
    synthetic(BASELINE, 2048, 1000, 800),
    {**synthetic(BASELINE, 4096, 4000, 2000), "status": "timeout", "phases_done": "inference"},  # inference ran
    synthetic("lin", 1024, 150, 100),
    synthetic("lin", 2048, 300, 200),
    synthetic("lin", 4096, 600, 400),
]


def test_relative_columns_use_vanilla_at_the_same_length():
    idx = bench_report.index(ROWS)
    # tokens/s relative = vanilla's time / this time, at the same N (not another N's vanilla)
    assert bench_report.relative(idx, "lin", 1024, "train_step_tokens_per_s") == pytest.approx(300 / 150)
    assert bench_report.relative(idx, "lin", 2048, "train_step_tokens_per_s") == pytest.approx(1000 / 300)
    assert bench_report.relative(idx, "lin", 2048, "train_step_mem_mb") == pytest.approx(200 / 800)
    assert bench_report.relative(idx, "lin", 4096, "train_step_median_ms") is None  # vanilla timed out there
    # attention cost = (t - floor) / (vanilla - floor) at the same N
    assert bench_report.attention_cost(idx, "lin", 1024) == pytest.approx((150 - 100) / (300 - 100))
    assert bench_report.attention_cost(idx, "lin", 2048) == pytest.approx((300 - 200) / (1000 - 200))
    assert bench_report.attention_cost(idx, BASELINE, 2048) == pytest.approx(1.0)
    assert bench_report.attention_cost(idx, FLOOR, 2048) == pytest.approx(0.0)
    assert bench_report.attention_cost(idx, "lin", 4096) is None
    # the timed-out point's inference numbers count: relative inference speed exists at 4096
    assert bench_report.relative(idx, "lin", 4096, "inference_tokens_per_s") == pytest.approx(1000 / 150)


def test_table_cells_and_slopes():
    table = bench_report.build_table(ROWS, [1024, 2048, 4096], slope_from=1024)
    speed = table.split("### Training step (`train_step`): median")[1].split("###")[0]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in speed.splitlines()
             if line.startswith("| ") and "attention" not in line}  # fmt: skip
    assert list(lines) == [BASELINE, "lin", FLOOR]  # vanilla first, floor last
    assert lines[BASELINE] == ["300 (1.00x)", "1000 (1.00x)", "timeout"]
    assert lines["lin"] == ["150 (0.50x)", "300 (0.30x)", "600 (-)"]
    tokens = table.split("### Training step (`train_step`): tokens/s")[1].split("###")[0]
    assert "| lin | 6827 (2.00x) | 6827 (3.33x) | 6827 (-) |" in tokens  # 1024 tokens / 0.15 s
    cost = table.split("### Attention cost")[1].split("###")[0]
    assert "| lin | 0.25 | 0.12 | - |" in cost
    inference = table.split("### Inference forward (`inference`): median")[1].split("###")[0]
    assert "| vanilla | 75.0 (1.00x) | 250 (1.00x) | 1000 (1.00x) |" in inference  # ran before the timeout
    assert "| lin | 37.5 (0.50x) | 75.0 (0.30x) | 150 (0.15x) |" in inference
    scaling = table.split("### Scaling")[1]
    assert "| lin | 1.00 | 1.00 | 1.00 | 1.00 |" in scaling  # t and memory exactly proportional to N
    idx = bench_report.index(ROWS)
    assert bench_report.slope(idx, BASELINE, [1024, 2048, 4096], "train_step_median_ms") == pytest.approx(
        math.log(1000 / 300) / math.log(2)
    )  # the timed-out point is left out


def test_points_the_machine_may_have_bent_are_flagged():
    """A floor slower than an attention row, a negative attention share and a moving load are named, and the
    numbers concerned marked; ROWS (a quiet machine) have no flag."""
    assert bench_report.flags(ROWS) == ([], set())
    assert "None: the floor is the fastest row" in bench_report.build_table(ROWS, [1024, 2048, 4096])
    busy = [
        {**synthetic(FLOOR, 1024, 200, 50), "load_start": 4.2, "load_end": 4.9},
        {**synthetic(FLOOR, 2048, 900, 100), "load_start": 4.9, "load_end": 6.3},  # the load rose meanwhile
        {**synthetic(BASELINE, 1024, 300, 200), "load_start": 4.9, "load_end": 5.0},
        {**synthetic(BASELINE, 2048, 800, 800), "load_start": 5.0, "load_end": 5.2},  # faster than the floor
        {**synthetic("lin", 1024, 150, 100), "load_start": 5.2, "load_end": 5.6},  # faster than the floor
        {**synthetic("lin", 2048, 1000, 200), "load_start": 5.6, "load_end": 6.5},
    ]
    reasons, points = bench_report.flags(busy)
    assert "N=1K: the floor's training step (200.0 ms) is slower than lin (150.0 ms)" in reasons
    assert "N=1K: negative attention share for lin" in reasons
    assert "N=2K: the floor's training step (900.0 ms) is slower than vanilla (800.0 ms)" in reasons
    assert "N=2K: vanilla is not slower than the floor, so no attention share is meaningful" in reasons
    assert "while these points ran: floor N=2K (4.90 -> 6.30)" in reasons[-2]
    assert reasons[-1].startswith("the 1-minute load average moved from 4.20 to 6.50 during the sweep")
    flagged = {("lin", 1024, "train_step"), (FLOOR, 1024, "train_step"), (BASELINE, 2048, "train_step")}
    assert flagged | {(FLOOR, 2048, "inference")} <= points
    assert (BASELINE, 1024, "train_step") not in points and (BASELINE, 1024, "inference") not in points
    table = bench_report.build_table(busy, [1024, 2048])
    cost = table.split("### Attention cost")[1].split("###")[0]
    assert "| lin | -0.50 ! | -1.00 ! |" in cost and "| vanilla | 1.00 | 1.00 ! |" in cost
    assert table.split("### Flags")[1].count("\n- ") == len(reasons)
    assert "| lin | 100 (0.50x) | 200 (0.25x) |" in table.split("(`train_step`): peak memory")[1]  # memory: no mark


def test_plots_leave_failed_points_out(tmp_path):
    bench_report.plot(ROWS, tmp_path / "s.png", [("train_step_median_ms", "ms")], "t")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------
def test_plan_rows_options_and_unavailable(tmp_path):
    cfg = bench_config(tmp_path, "mechanisms=[vanilla,cast,not_a_mechanism]", "lengths=[1024,2048]")
    points = {(p.row, p.length): p for p in plan(cfg)}
    assert [r for r, n in points if n == 1024] == [BASELINE, NAIVE, "cast", "not_a_mechanism", FLOOR]
    assert points[(NAIVE, 2048)].options == {"impl": "naive"} and points[(NAIVE, 2048)].attention == "vanilla"
    assert points[("cast", 2048)].options == {"num_clusters": 32, "cluster_size": 64, "clustering": "topk"}
    assert points[("cast", 1024)].options["cluster_size"] == 32  # sized from the length (lra/resolvers.py)
    assert points[(FLOOR, 1024)].attention is None
    assert "not registered" in points[("not_a_mechanism", 1024)].unavailable
    with pytest.raises(ValueError, match="per_length.cats"):
        plan(bench_config(tmp_path, "+per_length.cats={1024: {num_clusters: 2}}"))


def test_each_run_writes_a_new_folder_and_a_taken_one_is_refused(tmp_path):
    """The default out_dir is new per run (device, date, time); a folder holding files, committed to git
    or not, is refused (exit 2, one line naming it and the override) and left as it was."""
    out_dir = compose_config(["device=cpu"], config_name="bench").out_dir
    assert re.fullmatch(r"results/efficiency/cpu-[a-z0-9-]+-\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}", out_dir), out_dir

    committed = tmp_path / "repo" / "results"
    committed.mkdir(parents=True)
    (committed / "README.md").write_text("## Notes (added by hand after the sweep)\n")
    git = ["git", "-C", str(committed), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "results"], check=True)
    args = [*TINY, "mechanisms=[vanilla]", "vanilla_naive=false", "floor=false", "lengths=[16]"]
    proc = subprocess.run([sys.executable, "-m", "lra.bench", *args, f"out_dir={committed}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        f"lra-bench: {committed} already holds results committed to git (README.md); leave out_dir out for a new"
        " folder per run, or add overwrite=true to write over them"
    )
    assert sorted(p.name for p in committed.iterdir()) == [".git", "README.md"]
    assert (committed / "README.md").read_text() == "## Notes (added by hand after the sweep)\n"

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "points.csv").write_text("row\n")
    with pytest.raises(OutDirTaken, match=f"{earlier} already holds files of an earlier run or by hand .points.csv."):
        check_out_dir(earlier, overwrite=False)
    check_out_dir(earlier, overwrite=True)
    check_out_dir(tmp_path / "new", overwrite=False)


def test_console_script_and_cli_compose():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lra-bench"] == "lra.bench:main"
    out = subprocess.run(
        [sys.executable, "-m", "lra.bench", "--cfg", "job", "mechanisms=[vanilla,tssa]", "lengths=[64]", "batch=2"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert "- vanilla\n- tssa" in out and "batch: 2" in out and "d_model: 256" in out


# ---------------------------------------------------------------------------------------------
# A tiny real sweep: files, and failures recorded without stopping it
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """vanilla@64 and floor@64 succeed; vanilla(_naive)@128 raise in the child (an option vanilla does
    not take), vanilla_naive@64 runs out of memory (a 1 MB cap), floor@128 times out (50 ms)."""
    out = tmp_path_factory.mktemp("bench")
    cfg = bench_config(out, "mechanisms=[vanilla]", "lengths=[64,128]", "+per_length.vanilla.128.bogus=1")
    provoke = {(NAIVE, 64): {"mem_limit_gb": 1e-3}, (FLOOR, 128): {"timeout_s": 0.05}}
    points = [replace(p, **provoke.get((p.row, p.length), {})) for p in plan(cfg)]
    rows = run(cfg, command="lra-bench (test)", points=points)
    return out, {(r["row"], r["length"]): r for r in rows}


def test_sweep_writes_wellformed_outputs(swept):
    out, _ = swept
    with open(out / "points.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["row"], r["length"], r["status"]) for r in table] == [
        (BASELINE, "64", "ok"), (BASELINE, "128", "error"), (NAIVE, "64", "oom"), (NAIVE, "128", "skipped"),
        (FLOOR, "64", "ok"), (FLOOR, "128", "timeout"),
    ]  # fmt: skip
    for r in table:
        assert (r["load_start"] and r["load_end"]) if r["status"] != "skipped" else not r["load_start"]
        assert r["device_name"] and r["torch"] and r["dtype"] == "fp32" and r["batch"] == "2" and r["repeats"] == "1"
    for r in table[0], table[4]:
        assert float(r["train_step_median_ms"]) > 0 and float(r["inference_median_ms"]) > 0
        assert float(r["train_step_tokens_per_s"]) == pytest.approx(2 * 64 / float(r["train_step_median_ms"]) * 1e3)
        assert float(r["train_step_mem_mb"]) > 0 and float(r["inference_mem_mb"]) > 0
    md = (out / "table.md").read_text()
    assert "| vanilla | " in md and "| floor | " in md and "batch 2" in md
    for png in ("speed.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.md").read_text()
    assert "lra-bench (test)" in readme and "Load average" in readme
    bench_report.main([str(out), "--slope-from", "4096"])  # rebuilt from points.csv alone: the same table
    assert (out / "table.md").read_text() == md


def test_failures_are_rows_and_the_sweep_goes_on(swept):
    _, by = swept
    assert "unknown option(s) bogus" in by[(BASELINE, 128)]["detail"]  # raised in the child: error, not crash
    assert "memory" in by[(NAIVE, 64)]["detail"].lower()  # an allocation failed under the cap
    assert by[(NAIVE, 128)]["detail"] == "not run: oom at N=64"
    assert by[(FLOOR, 128)]["detail"].startswith("no result within 0.05 s")
    assert by[(FLOOR, 64)]["status"] == "ok"  # points after failures still ran
    table = bench_report.build_table(list(by.values()), [64, 128])
    assert f"| {NAIVE} | oom | skipped |" in table and "| floor | " in table


def test_unavailable_point_needs_no_process():
    point = Point("clustered_x", "clustered_x", {}, 64, 1.0, unavailable="not registered")
    row = run_point(point, {}, mem_limit_gb=None)
    assert row["status"] == "unavailable" and row["detail"] == "not registered"


@pytest.mark.gpu
def test_cuda_point_uses_bf16_and_the_gpu_batch(tmp_path):
    cfg = bench_config(tmp_path, "device=auto", "batch=null", "batch_gpu=4", "mechanisms=[vanilla]", "lengths=[64]")
    setup = settings(cfg)
    assert setup["device"] == "cuda" and setup["dtype"] == "bf16" and setup["batch"] == 4
    row = run_point(plan(cfg)[0], setup, mem_limit_gb=None)
    assert row["status"] == "ok" and 0 < row["train_step_mem_mb"] <= row["train_step_reserved_mb"] < 2000
