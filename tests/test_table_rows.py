"""lra-table's rows: runs whose settings differ never share a cell, and rows follow LRA Table 1's order."""

import copy
import json
from pathlib import Path

import pytest

from lra.table import main as lra_table
from lra.table_cells import row_order
from tests.test_table import md_rows, write_result

# The resolved config of a real run (the last harness before the record had a schema).
REAL = json.loads((Path(__file__).parent / "data" / "results" / "unversioned-4230d61.json").read_text())


def real_run(root: Path, seed: int, acc: float, changes: dict[str, object] = {}) -> None:  # noqa: B006
    """A record of vanilla/listops whose config is the real one with ``changes`` (dotted keys) set."""
    config = copy.deepcopy(REAL["config"])
    for key, value in {"seed": seed, **changes}.items():
        *parents, last = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[last] = value
    write_result(root, "vanilla", "listops", seed, acc, config=config)


@pytest.mark.parametrize(
    ("key", "base", "other"),
    [("model.pool", "mean", "cls"), ("model.dropout", 0.0, 0.1), ("optim.lr", 0.003, 0.001)],
)
def test_runs_that_differ_in_one_setting_get_rows_of_their_own(tmp_path, capsys, key, base, other):
    real_run(tmp_path, 0, 0.40)
    real_run(tmp_path, 1, 0.42, {"paths.runs": "elsewhere", "logger.csv": True})  # where it is written: same cell
    real_run(tmp_path, 2, 0.90, {key: other})
    assert lra_table([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = md_rows(out)
    shown = sorted([(base, "41.00 ± 1.41 [28.29, 53.71] n=2"), (other, "90.00 n=1")], key=lambda v: str(v[0]))
    assert [(r, cells[0]) for r, cells in rows.items() if r != "Attention"] == [
        (f"vanilla ({key}={value})", cell) for value, cell in shown
    ]
    differ = " vs ".join(str(v) for v in sorted([base, other], key=str))
    assert f"vanilla/listops: runs with different settings, shown as separate rows ({key}: {differ})" in out


def test_rows_follow_lra_table_1_then_the_other_mechanisms_alphabetically(tmp_path, capsys):
    names = ["zeta", "tssa", "aardvark", "cast", "performer", "bigbird", "linformer", "longformer", "vanilla"]
    for seed, name in enumerate([*names, "clustered"]):
        write_result(tmp_path, name, "listops", seed, 0.4)
    write_result(
        tmp_path / "short", "cast", "listops", 20, 0.3, config={"task": {"max_len": 64}, "trainer": {"max_steps": 2}}
    )
    assert lra_table([str(tmp_path)]) == 0
    rows = [r for r in md_rows(capsys.readouterr().out) if r != "Attention"]
    split = ["cast (trainer.max_steps=(not recorded))", "cast (trainer.max_steps=2)"]  # together, by label
    assert rows == [
        "vanilla",  # the baseline
        *["longformer", "linformer", "bigbird", "performer"],  # in LRA Table 1's order (arXiv 2011.04006)
        *["clustered", *split, "tssa"],  # published.yaml's later entries, in its order
        *["aardvark", "zeta"],  # not in published.yaml: alphabetically
    ]


def test_row_order_puts_the_baseline_first_even_when_unlisted():
    order = ("linformer", "performer")
    names = ["zeta", "performer", "aardvark", "vanilla", "linformer"]
    assert sorted(names, key=lambda a: row_order(a, order)) == ["vanilla", "linformer", "performer", "aardvark", "zeta"]
