"""lra-table on result.json files written here, results/published.yaml, and a real two-run sweep."""

import csv
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from lra.published import PUBLISHED, load_published
from lra.results import RESULT_FIELDS
from lra.table import FIVE, TASKS
from lra.table import main as lra_table
from lra.table_render import latex_escape
from models.attention import available
from tests.scripts import load_script
from tests.test_train import TINY

ROOT = Path(__file__).resolve().parents[1]
# A full LRA row of ours: test accuracies (fractions) per task.
# How a published row of LRA Table 1 is labelled (its Avg (6) is from the S4 paper's Table 10).
LRA_SOURCES = "(Tay et al., Table 1, arXiv 2011.04006; Avg (6): Gu et al., Table 10 (Appendix D.2), arXiv 2111.00396)"
ROW = {"listops": 0.40, "text": 0.60, "retrieval": 0.55, "image": 0.45, "pathfinder": 0.70}


def write_result(root: Path, attention: str, task: str, seed: int, test_acc: float, **changes) -> Path:
    """A complete record (``field=...`` in ``changes`` leaves that field out)."""
    record = {k: None for k in RESULT_FIELDS}
    record.update(
        task=task,
        attention=attention,
        seed=seed,
        test_acc=test_acc,
        val_acc=test_acc - 0.01,
        model={"n_layers": 2, "d_model": 64, "n_heads": 4, "d_mlp": 128},
        step_time_ms=10.0 + seed,
        peak_mem_mb=100.0 + 10 * seed,
        config={"task": {"max_len": 64}},
    )
    record.update(changes)
    path = root / f"{attention}-{task}-s{seed}" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({k: v for k, v in record.items() if v is not ...}))
    return path


def table(args, capsys) -> str:
    assert lra_table([str(a) for a in args]) == 0
    return capsys.readouterr().out


def md_tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of the output in order, each a list of rows (header first, no rule line)."""
    tables, in_table = [], False
    for line in text.splitlines():
        if line.startswith("|---"):  # the rule under a header
            continue
        if not line.startswith("| "):
            in_table = False
            continue
        if not in_table:
            tables.append([])
            in_table = True
        tables[-1].append([c.strip() for c in line.strip("|").split(" | ")])
    return tables


def md_rows(text: str, which: int = 0) -> dict[str, list[str]]:
    """Rows of the ``which``-th Markdown table (0: accuracy, 1: paired difference, 2: params) by first cell."""
    return {r[0]: r[1:] for r in md_tables(text)[which]}


def test_seeds_are_aggregated_and_missing_cells_shown_as_dashes(tmp_path, capsys):
    accs = [0.40, 0.42, 0.47]
    for seed, acc in enumerate(accs):
        write_result(tmp_path, "vanilla", "listops", seed, acc)
    write_result(tmp_path, "vanilla", "image", 0, 0.4512)
    rows = md_rows(table([tmp_path], capsys))
    assert rows["Attention"][:6] == ["ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X"]
    expected_std = statistics.stdev([40.0, 42.0, 47.0])
    # t_{0.975,2} = 4.303 (t table): half-width 4.303 * 3.606 / sqrt(3) = 8.957
    assert rows["vanilla"][0] == f"43.00 ± {expected_std:.2f} [34.04, 51.96] n=3"
    assert rows["vanilla"][3] == "45.12 n=1"  # one run: no ±, no interval
    assert rows["vanilla"][1] == rows["vanilla"][2] == rows["vanilla"][5] == "-"
    assert rows["vanilla"][6:8] == ["-", "-"]  # four of five tasks missing: no average, not an average over zeros


def test_five_and_six_task_averages(tmp_path, capsys):
    for attention in ("vanilla", "cast", "tssa"):
        for task, acc in ROW.items():
            write_result(tmp_path, attention, task, 0, acc)
    write_result(tmp_path, "cast", "pathx", 0, 0.505)  # within chance + 1 point: a failed Path-X
    write_result(tmp_path, "tssa", "pathx", 0, 0.80)
    rows = md_rows(table([tmp_path], capsys))
    avg5 = statistics.fmean(100 * a for a in ROW.values())  # 54.0
    assert rows["vanilla"][5] == "-"
    assert rows["vanilla"][6:8] == [f"{avg5:.2f}", f"{(5 * avg5 + 50) / 6:.2f}"]  # missing Path-X counted as 50
    assert rows["cast"][5] == "FAIL (50.50 n=1)"
    assert rows["cast"][6:8] == [f"{avg5:.2f}", f"{(5 * avg5 + 50) / 6:.2f}"]  # failed Path-X counted as 50
    assert rows["tssa"][6:8] == [f"{avg5:.2f}", f"{(5 * avg5 + 80) / 6:.2f}"]  # a real Path-X result counts as is
    assert list(rows) == ["Attention", "vanilla", "cast", "tssa"]  # the baseline first


def test_a_missing_task_blocks_both_averages(tmp_path, capsys):
    for task in FIVE[:4]:
        write_result(tmp_path, "vanilla", task, 0, ROW[task])
    write_result(tmp_path, "vanilla", "pathx", 0, 0.9)
    assert md_rows(table([tmp_path], capsys))["vanilla"][6:8] == ["-", "-"]


def test_efficiency_columns_are_medians_over_seeds(tmp_path, capsys):
    for seed in range(3):
        write_result(tmp_path, "vanilla", "listops", seed, 0.4)  # step 10, 11, 12 ms; memory 100, 110, 120 MB
    rows = md_rows(table([tmp_path, "--efficiency"], capsys))
    assert rows["Attention"][-2:] == ["ListOps ms", "ListOps MB"]
    assert rows["vanilla"][-2:] == ["11.0", "110"]


def test_latex_escapes_and_uses_booktabs(tmp_path, capsys):
    assert latex_escape("a_b & 50% #1 ± 2") == r"a\_b \& 50\% \#1 $\pm$ 2"
    write_result(tmp_path, "improved_clustered", "listops", 0, 0.4)
    write_result(tmp_path, "improved_clustered", "listops", 1, 0.5)
    text = table([tmp_path, "--format", "latex"], capsys)
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"improved\_clustered & 45.00 $\pm$ 7.07 [-18.53, 108.53] n=2 & -" in text
    assert "improved_clustered" not in text and r"Test accuracy (\%)" in text


def test_csv_is_one_row_per_attention_and_task(tmp_path, capsys):
    for seed, acc in enumerate([0.40, 0.44]):
        write_result(tmp_path, "vanilla", "listops", seed, acc)
    for task, acc in ROW.items():
        write_result(tmp_path, "cast", task, 0, acc)
    rows = list(csv.DictReader(io.StringIO(table([tmp_path, "--format", "csv"], capsys))))
    assert [(r["attention"], r["task"]) for r in rows] == [("vanilla", "listops")] + [
        ("cast", t) for t in [*FIVE, "avg5", "avg6"]
    ]
    first = rows[0]
    assert (first["n"], first["seeds"], float(first["mean"])) == ("2", "0;1", pytest.approx(42.0))
    assert float(first["std"]) == pytest.approx(statistics.stdev([40.0, 44.0]))
    assert float(first["val_mean"]) == pytest.approx(41.0)
    assert float(rows[-2]["mean"]) == pytest.approx(54.0) and float(rows[-1]["mean"]) == pytest.approx(53.3333333)


def test_incomplete_record_is_refused_naming_the_file(tmp_path, capsys, caplog):
    write_result(tmp_path, "vanilla", "listops", 0, 0.4)
    bad = write_result(tmp_path, "vanilla", "listops", 1, 0.9, peak_mem_mb=...)  # field left out
    with pytest.raises(SystemExit, match=f"{bad}: incomplete result record, missing peak_mem_mb"):
        lra_table([str(tmp_path)])
    rows = md_rows(table([tmp_path, "--skip-incomplete"], capsys))
    assert rows["vanilla"][0] == "40.00 n=1"
    assert str(bad) in caplog.text


def test_a_job_run_twice_counts_once_the_newest(tmp_path, capsys):
    old = write_result(tmp_path / "sweep1", "vanilla", "listops", 0, 0.40, finished=100.0)
    write_result(tmp_path / "sweep1", "vanilla", "listops", 1, 0.44, finished=101.0)
    new = write_result(tmp_path / "sweep2", "vanilla", "listops", 0, 0.50, finished=200.0)
    out = table([tmp_path], capsys)
    assert md_rows(out)["vanilla"][0] == f"47.00 ± {statistics.stdev([50.0, 44.0]):.2f} [8.88, 85.12] n=2"
    assert (
        f"vanilla/listops seed 0: 2 finished runs of the same settings; counted the newest ({new}), left out {old}"
        in out
    )
    # records from before result.json had "finished": the file's time decides
    older = write_result(tmp_path / "old1", "cast", "text", 0, 0.30, finished=...)
    newer = write_result(tmp_path / "old2", "cast", "text", 0, 0.35, finished=...)
    os.utime(older, (1000, 1000))
    os.utime(newer, (2000, 2000))
    out = table([tmp_path], capsys)
    assert md_rows(out)["cast"][1] == "35.00 n=1" and f"left out {older}" in out


def config(steps: int, precision: str = "32-true", runs: str = "runs") -> dict:
    """A resolved config that differs in settings (steps, precision) or only where it is written (runs)."""
    return {"seed": 0, "task": {"max_len": 64}, "trainer": {"max_steps": steps, "precision": precision},
            "paths": {"runs": runs}, "logger": {"csv": runs == "runs"}}  # fmt: skip


def test_runs_with_different_settings_are_split_and_the_keys_named(tmp_path, capsys):
    for seed, acc in ((0, 0.40), (1, 0.42)):
        write_result(tmp_path / "real", "vanilla", "listops", seed, acc, config=config(1500))
    for seed, acc in ((2, 0.10), (3, 0.12)):  # distinct seeds, a debug run's settings
        write_result(tmp_path / "debug", "vanilla", "listops", seed, acc, config=config(2, runs="elsewhere"))
    write_result(tmp_path / "real", "vanilla", "text", 0, 0.6, config=config(1500, runs="elsewhere"))
    out = table([tmp_path], capsys)
    rows = md_rows(out)
    assert list(rows) == ["Attention", "vanilla", "vanilla (trainer.max_steps=1500)", "vanilla (trainer.max_steps=2)"]
    assert rows["vanilla (trainer.max_steps=1500)"][0] == "41.00 ± 1.41 [28.29, 53.71] n=2"
    assert rows["vanilla (trainer.max_steps=2)"][0] == "11.00 ± 1.41 [-1.71, 23.71] n=2"
    assert rows["vanilla"][1] == "60.00 n=1"  # text: one setting (paths and loggers do not split)
    assert "vanilla/listops: runs with different settings, shown as separate rows (trainer.max_steps: 2 vs 1500)" in out
    csv_rows = list(csv.DictReader(io.StringIO(table([tmp_path, "--format", "csv"], capsys))))
    assert [(r["attention"], r["settings"], r["n"]) for r in csv_rows] == [
        ("vanilla", "", "1"), ("vanilla", "trainer.max_steps=1500", "2"), ("vanilla", "trainer.max_steps=2", "2")
    ]  # fmt: skip

    rows = md_rows(table([tmp_path, "--where", "trainer.max_steps=2"], capsys))
    assert list(rows) == ["Attention", "vanilla"] and rows["vanilla"][:2] == ["11.00 ± 1.41 [-1.71, 23.71] n=2", "-"]
    rows = md_rows(table([tmp_path, "--where", "trainer.max_steps!=2", "--where", "task.name=listops"], capsys))
    assert list(rows) == ["Attention", "vanilla"] and rows["vanilla"][:2] == ["41.00 ± 1.41 [28.29, 53.71] n=2", "-"]
    with pytest.raises(SystemExit, match=r"no run has the key 'trainer.max_stesp' \(.*trainer.max_steps"):
        lra_table([str(tmp_path), "--where", "trainer.max_stesp=2"])
    with pytest.raises(SystemExit, match="expected key=value"):
        lra_table([str(tmp_path), "--where", "trainer.max_steps"])

    write_result(tmp_path / "bf16", "vanilla", "listops", 0, 0.5, config=config(1500, precision="bf16-mixed"))
    write_result(tmp_path / "old", "vanilla", "listops", 5, 0.3, config={"task": {"max_len": 64}})  # no trainer
    rows = md_rows(table([tmp_path, "--where", "task.name=listops"], capsys))
    assert rows["vanilla (trainer.max_steps=1500, trainer.precision=bf16-mixed)"][0] == "50.00 n=1"
    assert rows["vanilla (trainer.max_steps=(not recorded), trainer.precision=(not recorded))"][0] == "30.00 n=1"


def test_compare_published_shows_the_difference(tmp_path, capsys):
    write_result(tmp_path, "vanilla", "listops", 0, 0.40)
    write_result(tmp_path, "cast", "listops", 0, 0.30)
    out = table([tmp_path, "--compare", "published"], capsys)
    rows = md_rows(out)
    assert rows[f"published: Transformer {LRA_SOURCES}"][:7] == [
        "36.37",
        "64.27",
        "57.46",
        "42.44",
        "71.40",
        "FAIL",
        "54.39",
    ]
    assert rows["ours - published"][:3] == ["+3.63", "-", "-"]  # only where both exist
    assert rows["published: CAST (van Engelenhoven et al., not read, arXiv 2402.04239): not found"][0] == "-"
    assert "Long Range Arena: A Benchmark for Efficient Transformers, Table 1, arXiv 2011.04006" in out


def test_published_numbers_have_sources_and_agree_with_their_averages():
    published = load_published(PUBLISHED)
    for kind, entries in published.items():
        for name, e in entries.items():
            for key in ("source", "avg6_source"):
                if key in e:
                    assert e[key]["title"] and e[key]["table"] and e[key]["arxiv"], (kind, name, key)
            assert e.get("status", "reported") in ("reported", "not reported", "not found"), (kind, name)
            if e.get("status") == "not found":
                assert e["searched"], (kind, name)
    # transcription check: each printed average is the mean of the printed task numbers
    for name, e in published["accuracy"].items():
        if e.get("status", "reported") == "reported":
            five = [e[t] for t in FIVE]
            assert e["pathx"] == "FAIL"
            assert e["avg6"] == pytest.approx((sum(five) + 50) / 6, abs=0.01), name
            if "avg5_note" not in e:
                assert e["avg5"] == pytest.approx(statistics.fmean(five), abs=0.01), name
    for name, e in published["efficiency"].items():
        if "speedup" in e:  # the bracketed speed-ups: steps/s relative to the Transformer
            base = published["efficiency"]["vanilla"]["steps_per_s"]
            for n, s in e["speedup"].items():
                assert s == pytest.approx(e["steps_per_s"][n] / base[n], abs=0.06), (
                    name,
                    n,
                )  # the paper rounds loosely
    assert set(available()) <= set(published["accuracy"]), "every registered attention needs a published entry"


def test_a_two_run_sweep_makes_a_table_with_two_seeds(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "lra.train",
        "-m",
        *TINY,
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "logger=none",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=600)
    found = sorted(p.relative_to(sweep).as_posix() for p in sweep.rglob("result.json"))
    assert found == ["0_vanilla-listops-s0/result.json", "1_vanilla-listops-s1/result.json"]
    cell = md_rows(table([sweep], capsys))["vanilla"][0]
    assert cell.endswith("] n=2"), cell


def test_reproduce_print_covers_every_task_and_mechanism(capsys):
    assert load_script("reproduce_table").main(["lra", "--print", "--seeds", "0,1", "--out", "sweeps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(TASKS)
    for task, line in zip(TASKS, lines):
        words = line.split()
        assert words[:3] == ["lra-train", "-m", f"experiment=lra/{task}"]
        assert f"attention={','.join(available())}" in words and "seed=0,1" in words
        assert f"hydra.sweep.dir={Path('sweeps') / task}" in words


def test_slurm_launcher_config_composes_and_writes_the_sbatch_script(tmp_path, monkeypatch):
    """The launcher is built from the config and submits through submitit, here without a cluster:
    a dummy srun passes submitit's cluster check and the submission itself is intercepted."""
    submitit = pytest.importorskip("submitit")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from lra.train import CONFIG_DIR

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.timeout_min=90",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "experiment=quickstart",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    submitted = {}
    monkeypatch.setattr(
        submitit.AutoExecutor, "map_array", lambda self, fn, *args: submitted.update(executor=self, args=args) or []
    )
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    assert launcher.params["max_num_timeout"] == 3
    launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    assert [list(o) for o in submitted["args"][0]] == [["seed=0"], ["seed=1"]]
    sbatch = submitted["executor"]._executor._make_submission_file_text("python -m lra.train", "uid")
    for line in (
        "--partition=debug",
        "--time=90",
        "--gpus-per-node=1",
        "--cpus-per-task=8",
        "--mem=32GB",
        f"--output={tmp_path / 'sweep'}/.submitit/",
        "--signal=USR2@120",  # the requeue signal lra-train checkpoints on (tests/test_resume.py)
    ):
        assert f"#SBATCH {line}" in sbatch
    with pytest.raises(Exception, match="partiton"), initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partiton=x"], return_hydra_config=True)


def test_reproduce_reports_what_it_cannot_run(tmp_path):
    reproduce = load_script("reproduce_table")
    assert reproduce.skip_reason("nope", "listops", []) == "no preset configs/experiment/nope/listops.yaml yet"
    reason = reproduce.skip_reason("lra", "listops", ["task.source=release", f"paths.data_dir={tmp_path}"])
    assert f"no prepared data at {tmp_path / 'listops' / 'lra'}" in reason
    assert "lra-data prepare listops --source release --path DIR experiment=lra/listops task.source=release" in reason
    assert reproduce.skip_reason("mini", "listops", [f"paths.data_dir={tmp_path}"]) is None  # generated on first use
    assert (
        reproduce.device_slug(
            [{"device": "NVIDIA H100 80GB HBM3"}, {"device": "cpu (2 cores)"}, {"device": "NVIDIA H100 80GB HBM3"}]
        )
        == "nvidia-h100-80gb-hbm3"
    )
