"""lra-table --plot and --bars: PNG files, one marker per (row, task) cell at its speed and accuracy, and
one clear line for a bad path or nothing to plot."""

import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.legend import Legend

from lra.table import find_results, load_records, make_table
from lra.table import main as lra_table
from lra.table_plot import AVG, accuracy_speed_figure, bars_figure
from tests.test_table import ROW, write_result

PNG = b"\x89PNG\r\n\x1a\n"


def grid(root, *, fast: float = 1.0):
    """vanilla and cast on the five tasks with 2 seeds, tssa on ListOps only with 1 seed; cast is ``fast``
    times vanilla's speed and uses half its memory."""
    for seed in (0, 1):
        for task, acc in ROW.items():
            write_result(root, "vanilla", task, seed, acc + 0.01 * seed, step_time_ms=10.0, peak_mem_mb=400.0)
            write_result(root, "cast", task, seed, acc, step_time_ms=10.0 / fast, peak_mem_mb=200.0)
    write_result(root, "tssa", "listops", 0, 0.3, step_time_ms=5.0, peak_mem_mb=100.0)


def table_of(root):
    return make_table(load_records(find_results([str(root)])))


def markers(ax) -> list[tuple[float, float, float]]:
    """(x, y, area) of every data marker in a panel."""
    return [
        (x, y, s) for c in ax.collections if c.get_gid() == "cells" for (x, y), s in zip(c.get_offsets(), c.get_sizes())
    ]


def test_one_marker_per_cell_at_its_speed_accuracy_and_memory(tmp_path):
    grid(tmp_path)
    table = table_of(tmp_path)
    fig, pts, left_out = accuracy_speed_figure(table)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert list(panels) == ["ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Avg (5)"]  # no Path-X run
    cells = {t: sum(1 for (_, task) in table.cells if task == t) for t in ROW}
    assert cells["listops"] == 3
    for task, title in zip(ROW, panels):
        assert len(markers(panels[title])) == cells[task], task
    assert len(markers(panels["Avg (5)"])) == 2  # tssa lacks four tasks: no average marker
    assert left_out == [] and len(pts) == sum(cells.values()) + 2
    listops = sorted(markers(panels["ListOps"]))
    # 1000 / 10 ms = 100 steps/s (vanilla, cast), 1000 / 5 ms = 200 (tssa); accuracy in %; area in proportion to MB
    assert [(x, round(y, 6)) for x, y, _ in listops] == [(100.0, 40.0), (100.0, 40.5), (200.0, 30.0)]
    area = {round(y, 1): s for _, y, s in listops}
    assert area[40.5] / area[40.0] == pytest.approx(400 / 200) and area[40.5] / area[30.0] == pytest.approx(4)
    assert next(p for p in pts if p.row == "vanilla" and p.task == AVG).acc == pytest.approx(table.avg5("vanilla"))
    assert panels["ListOps"].get_xlabel() == "training speed (steps/s)"
    assert panels["ListOps"].get_ylabel() == "test accuracy (%)"
    legends = [t.get_text() for leg in fig.findobj(Legend) for t in leg.get_texts()]
    assert {"vanilla", "cast", "tssa"} <= set(legends)  # one colour per mechanism, named
    assert panels["ListOps"].get_xscale() == "linear"  # 100 to 200 steps/s: within a decade


def test_log_x_when_the_speeds_span_more_than_a_decade(tmp_path):
    grid(tmp_path, fast=20.0)
    fig, _, _ = accuracy_speed_figure(table_of(tmp_path))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert panels["Text"].get_xscale() == "log"  # 100 vs 2000 steps/s
    assert sorted(x for x, _, _ in markers(panels["Text"])) == [pytest.approx(100.0), pytest.approx(2000.0)]


def test_plot_and_bars_are_written_as_png(tmp_path, capsys):
    grid(tmp_path / "runs")
    plot, bars = tmp_path / "out" / "acc.png", tmp_path / "out" / "bars.png"
    assert lra_table([str(tmp_path / "runs"), "--plot", str(plot), "--bars", str(bars)]) == 0
    assert plot.read_bytes()[:8] == PNG and bars.read_bytes()[:8] == PNG
    assert "| vanilla |" in capsys.readouterr().out  # the table is still printed


def test_bars_have_one_bar_per_cell_and_no_whisker_for_one_seed(tmp_path):
    grid(tmp_path)
    table = table_of(tmp_path)
    fig = bars_figure(table)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert len(panels["ListOps"].patches) == 3 and len(panels["Text"].patches) == 2
    heights = sorted(round(p.get_height(), 6) for p in panels["ListOps"].patches)
    assert heights == [30.0, 40.0, 40.5]
    whiskers = [c for c in panels["ListOps"].containers if isinstance(c, ErrorbarContainer)]
    assert len(whiskers) == 2  # vanilla and cast; tssa has one seed
    # vanilla [40, 41]: half-width 12.706 * 0.7071 / sqrt(2) = 6.353; cast's two seeds are equal: 0
    segments = [seg for w in whiskers for seg in w.lines[2][0].get_segments()]
    (lo, hi), *_ = [seg for seg in segments if seg[0][1] != seg[1][1]]
    assert (lo[1], hi[1]) == (pytest.approx(40.5 - 6.353, abs=1e-3), pytest.approx(40.5 + 6.353, abs=1e-3))
    assert [t.get_text() for t in panels["ListOps"].texts] == ["n=1"]  # tssa: one seed, no whisker


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("acc.jpg", "--plot {p}: plots are written as PNG, give a file name ending in .png"),
        ("folder.png", "--plot {p}: is a folder, give a file name ending in .png"),
        ("afile/acc.png", "--plot {p}: cannot make its folder"),
    ],
)
def test_a_bad_plot_path_is_one_clear_line(tmp_path, name, message):
    grid(tmp_path / "runs")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "afile").write_text("")
    path = tmp_path / name
    with pytest.raises(SystemExit) as e:
        lra_table([str(tmp_path / "runs"), "--plot", str(path)])
    assert str(e.value).startswith("lra-table: " + message.format(p=path)) and "\n" not in str(e.value)


def test_nothing_to_plot_is_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no result.json under"):
        lra_table([str(tmp_path / "empty"), "--plot", str(tmp_path / "a.png")])
    write_result(tmp_path / "runs", "vanilla", "listops", 0, 0.4, step_time_ms=None)
    with pytest.raises(SystemExit, match=r"--plot .*a.png: no run has both a step time \(step_time_ms\)"):
        lra_table([str(tmp_path / "runs"), "--plot", str(tmp_path / "a.png")])
    assert not (tmp_path / "a.png").exists()
