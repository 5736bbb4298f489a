"""lra-bench's phases, grids and the numbers derived from them: median/p20/p80 of each phase against numpy,
the tokens grid, skipping after a timeout, the efficiency length, the share above the floor, old folders."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import lra.bench as bench
from lra import bench_report
from lra.bench_numbers import efficiency_length, efficiency_text, index, share_above_floor
from lra.bench_plan import plan, settings
from lra.bench_point import measure
from lra.measure import BASELINE, FLOOR, PHASES
from tests.test_bench import TINY, bench_config

ROOT = Path(__file__).resolve().parents[1]
MODEL = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=32, d_head=16, dropout=0.0, attn_dropout=0.0,
             positions="learned", pool="mean")  # fmt: skip
POINT = dict(attention="vanilla", options={}, length=32, model=MODEL, vocab_size=17, n_classes=2, batch=2,
             device="cpu", dtype="fp32", warmup=1, seed=0)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Each phase's numbers
# ---------------------------------------------------------------------------------------------
def test_each_phase_reports_median_p20_p80_of_its_timed_calls(monkeypatch):
    """A fake clock makes every timed call last a chosen time: the record's median, p20, p80 and
    tokens/s equal numpy's of those times (the warm-up call left out)."""
    durations = {p: [5.0, 1.0, 4.0, 2.0, 13.0, 3.0][: 4 + i % 2] for i, p in enumerate(PHASES)}  # ms, 4 or 5 calls
    # each phase: one warm-up call (the clock read once, when it starts), then the timed ones (read twice)
    reads = [t for p in PHASES for t in [None, *durations[p]]]
    ticks = iter(
        [x for k, d in enumerate(reads) for x in ((10.0 * k,) if d is None else (10.0 * k, 10.0 * k + d / 1e3))]
    )
    monkeypatch.setattr("lra.measure.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    recs = []
    for p in PHASES:  # one point per phase, so that each has its own number of timed calls
        recs += list(measure(**POINT, repeats=len(durations[p]), phases=[p]))
    assert [r["phase"] for r in recs] == list(PHASES)
    for rec in recs:
        p, ms = rec["phase"], np.array(durations[rec["phase"]])
        assert rec[f"{p}_median_ms"] == pytest.approx(np.median(ms))
        assert rec[f"{p}_p20_ms"] == pytest.approx(np.percentile(ms, 20))
        assert rec[f"{p}_p80_ms"] == pytest.approx(np.percentile(ms, 80))
        assert rec[f"{p}_tokens_per_s"] == pytest.approx(2 * 32 / (np.median(ms) / 1000))
        assert [float(t) for t in rec[f"{p}_times_ms"].split(";")] == pytest.approx(list(ms))
        assert isinstance(rec[f"{p}_mem_mb"], float) and f"{p}_reserved_mb" not in rec  # CPU: no reserved


def test_a_real_tiny_point_times_every_phase_in_order_and_counts_its_memory():
    recs = list(measure(**{**POINT, "length": 64}, repeats=3))
    assert [r["phase"] for r in recs] == list(PHASES)
    for rec in recs:
        p = rec["phase"]
        times = [float(t) for t in rec[f"{p}_times_ms"].split(";")]
        assert len(times) == 3 and min(times) > 0
        assert rec[f"{p}_p20_ms"] == pytest.approx(np.percentile(times, 20), rel=1e-4)
        assert rec[f"{p}_p80_ms"] == pytest.approx(np.percentile(times, 80), rel=1e-4)
        assert rec[f"{p}_p20_ms"] <= rec[f"{p}_median_ms"] <= rec[f"{p}_p80_ms"]
    assert recs[-1]["train_step_mem_mb"] > 0  # weights, gradients, AdamW's moments, activations
    only = list(measure(**POINT, repeats=1, phases=["train_step", "op_forward"]))
    assert [r["phase"] for r in only] == ["op_forward", "train_step"]  # a subset, in the order they run


def test_phases_default_to_all_four_and_a_bad_one_is_named(tmp_path):
    assert settings(bench_config(tmp_path))["phases"] == list(PHASES)
    assert settings(bench_config(tmp_path, "phases=[train_step,inference]"))["phases"] == ["inference", "train_step"]
    with pytest.raises(ValueError, match=r"^phases: unknown phase\(s\) train; valid: op_forward, op_forward_backward"):
        settings(bench_config(tmp_path, "phases=[train]"))


# ---------------------------------------------------------------------------------------------
# Grids and skipping
# ---------------------------------------------------------------------------------------------
def test_the_tokens_grid_keeps_batch_times_length_constant(tmp_path):
    cfg = bench_config(tmp_path, "grid=tokens", "tokens=1024", "lengths=[64,128,256,1024]", "mechanisms=[vanilla]")
    points = plan(cfg)
    assert {p.length * p.setup["batch"] for p in points} == {1024}
    assert [p.setup["batch"] for p in points if p.row == FLOOR] == [16, 8, 4, 1]
    fixed = plan(bench_config(tmp_path, "lengths=[64,128]", "mechanisms=[vanilla]"))
    assert all(p.setup == {} for p in fixed)  # fixed_batch: the sweep's batch everywhere
    with pytest.raises(ValueError, match=r"tokens=1000 is not a multiple of lengths \[64, 128\]"):
        plan(bench_config(tmp_path, "grid=tokens", "tokens=1000", "lengths=[64,128]"))
    proc = subprocess.run([sys.executable, "-m", "lra.bench", *TINY, "grid=lra", f"out_dir={tmp_path / 'o'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == "lra-bench: grid must be one of fixed_batch, tokens, got 'lra'\n"


def test_a_row_that_timed_out_is_skipped_at_every_longer_length(tmp_path, monkeypatch):
    """A fake point that times out at 128: that row is not run at 256 or 512, also under the tokens grid
    (where each point has its own batch); the other rows run everywhere, and nothing is skipped without
    skip_longer."""
    cfg = bench_config(tmp_path, "grid=tokens", "tokens=512", "lengths=[64,128,256,512]", "mechanisms=[vanilla,tssa]")
    ran = []

    def fake_run_point(point, setup, *, mem_limit_gb):
        ran.append((point.row, point.length))
        if (point.row, point.length) == ("tssa", 128):
            return {**bench.point_row(point), "status": "timeout", "detail": "no result within 1 s"}
        return {**bench.point_row(point), "status": "ok", "train_step_median_ms": 1.0}

    monkeypatch.setattr(bench, "run_point", fake_run_point)
    setup = {"phases": ["train_step"]}
    rows = bench.sweep(plan(cfg), setup, mem_limit_gb=None, skip_longer=True)
    by = {(r["row"], r["length"]): r for r in rows}
    assert ("tssa", 256) not in ran and ("tssa", 512) not in ran and ("tssa", 64) in ran
    assert by[("tssa", 256)]["status"] == by[("tssa", 512)]["status"] == "skipped"
    assert by[("tssa", 512)]["detail"] == "not run: timeout at N=128" and by[("tssa", 512)]["batch"] == 1
    assert all(by[(r, 512)]["status"] == "ok" for r in (BASELINE, FLOOR))
    ran.clear()
    bench.sweep(plan(cfg), setup, mem_limit_gb=None, skip_longer=False)
    assert ("tssa", 512) in ran


# ---------------------------------------------------------------------------------------------
# Efficiency length and share above the floor on hand-made rows
# ---------------------------------------------------------------------------------------------
LENGTHS = [1024, 2048, 4096, 8192, 16384]
VANILLA = [10, 20, 40, 80, None]  # train step ms; None: timed out at 16K
TRAIN = {  # ms per length; a string is the point's status
    "late": [12, 19, 30, 50, 90],  # slower at 1K, faster from 2K on (and runs where vanilla timed out)
    "flip": [9, 21, 39, 70, 90],  # faster, slower, then faster: from 4K
    "never": [11, 22, 44, 88, "timeout"],
    "lost_at_8k": [5, 10, 20, 81, 90],  # slower at 8K, faster at 16K where vanilla timed out: from 16K
    "both_fail": [5, 10, 20, 40, "timeout"],  # 16K decides nothing (vanilla failed too): from 1K
    "errors": [5, 10, 20, "error", "skipped"],  # failed where vanilla ran: a loss, so none
}


def hand_rows() -> list[dict]:
    rows = []
    for name, ms in [(BASELINE, VANILLA), (FLOOR, [4, 8, 16, 32, 64]), *TRAIN.items()]:
        for n, t in zip(LENGTHS, ms):
            if isinstance(t, (int, float)):
                rows.append({"row": name, "length": n, "status": "ok", "train_step_median_ms": float(t),
                             "inference_median_ms": float(t) / 2 if name != "flip" else 1.0})  # fmt: skip
            else:
                rows.append({"row": name, "length": n, "status": t or "timeout", "phases_done": ""})
    return rows


def test_the_efficiency_length_is_where_a_mechanism_starts_to_beat_vanilla_for_good():
    idx = index(hand_rows())
    got = {name: efficiency_length(idx, name, LENGTHS, "train_step") for name in TRAIN}
    assert got == {"late": 2048, "flip": 4096, "never": None, "lost_at_8k": 16384, "both_fail": 1024, "errors": None}
    assert efficiency_text(idx, "never", LENGTHS, "train_step") == "none up to 16K"
    assert efficiency_text(idx, "late", LENGTHS, "train_step") == "2K"
    alone = index([r for r in hand_rows() if r["row"] != BASELINE])
    assert efficiency_text(alone, "late", LENGTHS, "train_step") == "-"  # no vanilla: nothing to beat, not "none"
    # per phase: flip's inference (1 ms) is faster than vanilla's (5 ms at 1K) at every length
    assert efficiency_length(idx, "flip", LENGTHS, "inference") == 1024
    table = bench_report.build_table(hand_rows(), LENGTHS)
    eff = table.split("### Efficiency length")[1].split("###")[0]
    assert "| flip | 1K | 4K |" in eff and "| never | none up to 16K | none up to 16K |" in eff
    assert "| vanilla |" not in eff and "| floor |" not in eff


def test_the_speed_plot_names_each_efficiency_length(tmp_path):
    drawn = bench_report.plot(hand_rows(), tmp_path / "speed.png", [("train_step_median_ms", "ms")], "t")
    labels = drawn["train_step_median_ms"]
    assert "late (beats SDPA from 2K)" in labels and "flip (beats SDPA from 4K)" in labels
    assert "never" in labels and BASELINE in labels  # no efficiency length: the plain name
    assert (tmp_path / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_share_plot_has_one_line_per_mechanism_of_its_step_above_the_floor(tmp_path):
    rows = hand_rows()
    idx = index(rows)
    assert share_above_floor(idx, "late", 2048) == pytest.approx((19 - 8) / 19)
    assert share_above_floor(idx, BASELINE, 16384) is None and share_above_floor(idx, FLOOR, 1024) == 0
    labels = bench_report.plot_share(rows, tmp_path / "share.png", "t")
    assert labels == [BASELINE, *TRAIN]  # every row but the floor, each with numbers
    assert (tmp_path / "share.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = bench_report.build_table(rows, LENGTHS)
    share = table.split("### Share of the training step above the floor")[1].split("###")[0]
    assert "| late | 0.67 | 0.58 | 0.47 | 0.36 | 0.29 |" in share  # (t - t_floor) / t: (12 - 4) / 12, ...


# ---------------------------------------------------------------------------------------------
# A committed folder from before the phases
# ---------------------------------------------------------------------------------------------
def test_a_folder_from_before_the_phases_rebuilds_in_todays_format(tmp_path):
    src = ROOT / "results/efficiency/cpu-amd-epyc-lineup/points.csv"
    shutil.copy(src, tmp_path / "points.csv")
    old = {(r["row"], int(r["length"])): r for r in bench_report.read_csv(src)}
    bench_report.main([str(tmp_path)])
    table = (tmp_path / "table.md").read_text()
    vanilla = old[(BASELINE, 1024)]
    times = [float(t) for t in vanilla["train_step_times_ms"].split(";")]
    assert vanilla["train_step_median_ms"] == pytest.approx(np.median(times), abs=0.01)
    lo, hi = (round(np.percentile(times, q)) for q in (20, 80))
    step = table.split("### Training step (`train_step`): median")[1].split("###")[0]
    assert f"| vanilla | {vanilla['train_step_median_ms']:.0f} [{lo}, {hi}] (1.00x) |" in step
    assert step.split("| vanilla |")[1].split("\n")[0].strip().endswith("| timeout |")  # 16K timed out
    assert "### Inference forward (`inference`)" in table and "op_forward" not in table  # phases it has
    assert all((tmp_path / png).is_file() for png in ("speed.png", "memory.png", "share.png"))


_INFERENCE_MB = """
import json, sys
from lra.bench_point import measure
model = dict(n_layers=2, d_model=64, n_heads=2, d_mlp=128, d_head=64, dropout=0.0, attn_dropout=0.0,
             positions="learned", pool="mean")
recs = measure(attention="longformer", options={}, length=2048, model=model, vocab_size=17, n_classes=2, batch=2,
               device="cpu", dtype="fp32", warmup=0, repeats=1, seed=0, phases=sys.argv[1].split(","))
print(json.dumps({r["phase"]: r[r["phase"] + "_mem_mb"] for r in recs}))
"""


def test_a_phase_after_the_op_phases_counts_its_own_memory():
    """The op phases free their tensors before the encoder's baseline; the heap keeps those pages unless they
    are handed back, and inference would then reuse them and read ~0 MB. Its memory must not depend on
    whether the op phases ran first (seen in a sweep: longformer at 4K read 0.2 MB instead of 128)."""

    def inference_mb(phases: str) -> float:
        out = subprocess.run([sys.executable, "-c", _INFERENCE_MB, phases], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])["inference"]

    alone, after_ops = inference_mb("inference"), inference_mb("op_forward,op_forward_backward,inference")
    assert alone > 10, alone  # the activations of a 2-layer encoder at 2K tokens: tens of MB
    assert after_ops == pytest.approx(alone, rel=0.3), (alone, after_ops)
