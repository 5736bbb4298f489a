"""lra-table's statistics: t-intervals over seeds, the paired difference to vanilla, parameter ratios,
and published numbers kept out of our averages. Expected numbers are worked by hand from a t table."""

import csv
import io

import pytest

from lra.table_stats import paired_difference, t_interval
from tests.test_table import LRA_SOURCES, ROW, md_rows, table, write_result

T2, T1 = 4.303, 12.706  # t_{0.975, 2} and t_{0.975, 1}, from a printed t table


def test_t_interval_of_three_seeds_by_hand():
    iv = t_interval([0.5, 0.6, 0.7])
    assert iv.mean == pytest.approx(0.6) and iv.std == pytest.approx(0.1) and iv.n == 3
    assert iv.half == pytest.approx(0.2484, abs=1e-4)  # 4.303 * 0.1 / sqrt(3)
    assert (iv.low, iv.high) == (pytest.approx(0.3516, abs=1e-4), pytest.approx(0.8484, abs=1e-4))
    two = t_interval([1.0, 3.0])  # s = sqrt(2), half = 12.706 * sqrt(2) / sqrt(2)
    assert two.half == pytest.approx(T1, abs=1e-3)


def test_one_seed_has_no_interval():
    iv = t_interval([0.42])
    assert (iv.mean, iv.n, iv.std, iv.half, iv.low, iv.high) == (0.42, 1, None, None, None, None)
    with pytest.raises(ValueError, match="no values"):
        t_interval([])


def test_paired_difference_uses_only_the_shared_seeds():
    ours = {0: 0.70, 1: 0.80, 2: 0.95, 5: 0.30}
    base = {0: 0.50, 1: 0.70, 2: 0.60, 7: 0.10}
    d = paired_difference(ours, base)  # seeds 0, 1, 2: differences 0.20, 0.10, 0.35
    assert d.n == 3 and d.mean == pytest.approx(0.216667, abs=1e-6)
    assert d.std == pytest.approx(0.125831, abs=1e-6)  # sqrt((0.0167^2 + 0.1167^2 + 0.1333^2) / 2)
    assert d.half == pytest.approx(T2 * 0.125831 / 3**0.5, abs=1e-4)  # 0.3126
    assert paired_difference({0: 0.5}, {1: 0.5}) is None
    assert paired_difference({0: 0.5, 1: 0.6}, {1: 0.4}).half is None  # one shared seed: no interval


def test_table_shows_the_paired_difference_and_the_seeds_it_covers(tmp_path, capsys):
    for seed, acc in ((0, 0.50), (1, 0.70), (2, 0.60), (7, 0.10)):
        write_result(tmp_path, "vanilla", "listops", seed, acc)
    for seed, acc in ((0, 0.70), (1, 0.80), (2, 0.95), (5, 0.30)):
        write_result(tmp_path, "cast", "listops", seed, acc)
    write_result(tmp_path, "vanilla", "text", 0, 0.6)
    write_result(tmp_path, "cast", "text", 3, 0.6)  # no seed in common with vanilla's text run
    write_result(tmp_path, "tssa", "text", 0, 0.65)
    write_result(tmp_path, "tssa", "image", 0, 0.65)  # vanilla has no image run
    out = table([tmp_path], capsys)
    paired = md_rows(out, 1)
    assert paired["vs vanilla"][:4] == ["ListOps", "Text", "Retrieval", "Image"]
    assert "vanilla" not in paired  # the baseline is not compared with itself
    # differences 20, 10, 35: mean 21.667, s = 12.583, half-width 4.3027 * 12.583 / sqrt(3) = 31.258
    assert paired["cast"][:3] == ["+21.67 [-9.59, +52.92] n=3", "no shared seeds", "-"]
    assert paired["tssa"][:4] == ["-", "+5.00 n=1", "-", "no vanilla run"]
    rows = {
        (r["attention"], r["task"]): r
        for r in csv.DictReader(io.StringIO(table([tmp_path, "--format", "csv"], capsys)))
    }
    cast = rows[("cast", "listops")]
    assert float(cast["vs_vanilla"]) == pytest.approx(21.6667, abs=1e-3) and cast["shared_seeds"] == "3"
    assert float(cast["vs_vanilla_low"]) == pytest.approx(21.6667 - 31.26, abs=0.01)
    assert (rows[("cast", "text")]["vs_vanilla"], rows[("cast", "text")]["shared_seeds"]) == ("", "0")
    assert rows[("vanilla", "listops")]["shared_seeds"] == ""  # the baseline itself
    van = rows[("vanilla", "listops")]  # [50, 70, 60, 10]: mean 47.5, s = 26.30, t_{0.975,3} = 3.182
    assert float(van["ci_low"]) == pytest.approx(47.5 - 3.182 * 26.2996 / 2, abs=0.01)
    assert rows[("tssa", "text")]["ci_low"] == ""  # one run: no interval


def test_params_and_their_ratio_to_vanilla_of_the_same_model_size(tmp_path, capsys):
    small = {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_mlp": 128}
    big = {**small, "d_model": 128}
    write_result(tmp_path, "vanilla", "listops", 0, 0.4, params=200_000, model=small)
    write_result(tmp_path, "vanilla", "listops", 1, 0.4, params=200_000, model=small)
    write_result(tmp_path, "cast", "listops", 0, 0.4, params=230_000, model=small)
    write_result(tmp_path / "big", "cast", "listops", 1, 0.4, params=800_000, model=big)
    write_result(tmp_path, "cast", "text", 0, 0.4, params=250_000, model=small)
    out = table([tmp_path], capsys)
    params = md_rows(out, 2)
    assert params["vanilla"][:2] == ["200,000 (1.00×)", "-"]
    big_row = "cast (model.d_model=128)"
    assert params["cast (model.d_model=64)"][0] == "230,000 (1.15×)"  # 230k / 200k
    assert params[big_row][0] == "800,000"  # no vanilla of d_model 128: no ratio
    assert md_rows(out, 1)[big_row][0] == "no vanilla run of the same model size"


def test_comparison_names_the_settings_the_two_rows_differ_in(tmp_path, capsys):
    write_result(tmp_path, "vanilla", "listops", 0, 0.4, config={"task": {"max_len": 64}, "optim": {"lr": 1e-3}})
    write_result(tmp_path, "cast", "listops", 0, 0.5, config={"task": {"max_len": 64}, "optim": {"lr": 3e-3}})
    out = table([tmp_path], capsys)
    assert md_rows(out, 1)["cast"][0] == "+10.00 n=1"
    assert "cast/listops vs vanilla: the runs also differ in optim.lr" in out


def test_a_published_number_never_enters_an_average(tmp_path, capsys):
    for task in ("listops", "text", "retrieval", "image"):  # Pathfinder missing: published.yaml has it
        write_result(tmp_path, "vanilla", task, 0, ROW[task])
    for task, acc in ROW.items():
        write_result(tmp_path, "linformer", task, 0, acc + 0.1)
    plain = md_rows(table([tmp_path], capsys))
    out = table([tmp_path, "--compare", "published"], capsys)
    rows = md_rows(out)
    assert rows["vanilla"][6:8] == ["-", "-"] == plain["vanilla"][6:8]  # not filled from the paper's 71.40
    assert rows["linformer"] == plain["linformer"]  # 64.00 / 61.67 from our five runs only
    assert rows["linformer"][6:8] == ["64.00", "61.67"]
    assert rows[f"published: Transformer {LRA_SOURCES}"][4] == "71.40"
    assert rows[f"published: Linformer {LRA_SOURCES}"][6] == "51.36"
    assert all("published" not in r for r in md_rows(out, 1))  # nor in the paired comparison
    assert "published: Long Range Arena: A Benchmark for Efficient Transformers, Table 1, arXiv 2011.04006." in out
    text = table([tmp_path, "--format", "csv", "--compare", "published"], capsys)
    csv_rows = {(r["attention"], r["task"]): r for r in csv.DictReader(io.StringIO(text))}
    avg5 = csv_rows[("linformer", "avg5")]  # ours in mean, the paper's beside it in its own column
    assert (float(avg5["mean"]), float(avg5["published"])) == (pytest.approx(64.0), 51.36)
    assert csv_rows[("linformer", "listops")]["published_source"] == "Tay et al., Table 1, arXiv 2011.04006"
    assert csv_rows[("linformer", "avg6")]["published_source"] == "Gu et al., Table 10 (Appendix D.2), arXiv 2111.00396"
    assert ("vanilla", "avg5") not in csv_rows  # our vanilla has four tasks: no average, whatever the paper has


def test_a_split_vanilla_is_matched_on_the_keys_its_rows_differ_in(tmp_path, capsys):
    def steps(n: int) -> dict:
        return {"task": {"max_len": 64}, "trainer": {"max_steps": n}}

    for seed, acc in ((0, 0.40), (1, 0.42)):
        write_result(tmp_path / "long", "vanilla", "listops", seed, acc, config=steps(1500))
        write_result(tmp_path / "short", "vanilla", "listops", seed, acc - 0.3, config=steps(2))
        write_result(tmp_path / "long", "cast", "listops", seed, acc + 0.05, config=steps(1500))
    write_result(tmp_path / "other", "tssa", "listops", 0, 0.5, config=steps(7))
    paired = md_rows(table([tmp_path], capsys), 1)
    assert paired["cast"][0] == "+5.00 [+5.00, +5.00] n=2"  # against vanilla's 1500-step row, not the 2-step one
    assert paired["tssa"][0] == "vanilla has several rows (trainer.max_steps differ)"
