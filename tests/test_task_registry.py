"""The task registry: a task registered in one place appears in ``lra-data`` and ``lra-table`` by itself."""

import statistics
from pathlib import Path

import numpy as np
import pytest
from hydra.core.config_store import ConfigStore

from lra.data import synthetic
from lra.data.cli import main as lra_data
from lra.data.prepared import PreparedWriter, load_split, prepared_dir, read_manifest
from lra.data.registry import SYNTHETIC, TASKS, Generator, register_task
from lra.data.tasks import TASK_NAMES
from lra.table import FIVE, TITLES
from tests.test_table import ROW, md_rows, table, write_result

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TOY_CONFIG = {  # what the toy task's config file (configs/task/) would hold
    "name": "toy",
    "profile": "tiny",
    "source": "generate",
    "path": None,
    "max_len": 4,
    "vocab_size": 8,
    "n_classes": 2,
    "pad_id": 0,
    "pair": False,
    "val_split": "val",
    "rows": 6,
}


def toy_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The toy generator: row i is (i, i+1, i+2, i+3) mod 7 + 1 with label i mod 2."""
    i = np.arange(n)[:, None]
    return ((i + np.arange(4)) % 7 + 1).astype(np.uint8), np.arange(n) % 2


def read_toy(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(path) / "toy.npz") as f:
        return f["ids"], f["labels"]


def prepare_toy(task, data_dir, *, source, path, read, meta, workers):
    ids, labels = toy_rows(int(task["rows"])) if source == "generate" else read(path)
    out = prepared_dir(data_dir, "toy", task["profile"])
    with PreparedWriter(out, task="toy", profile=task["profile"], source=source, meta=meta) as w:
        for split in ("train", "val", "test"):
            w.add_split(split, ids, labels)
    return out


def write_toy(task, out, *, workers, options, task_config):
    ids, labels = toy_rows(options["rows"] or int(task["rows"]))
    Path(out).mkdir(parents=True, exist_ok=True)
    np.savez(Path(out) / "toy.npz", ids=ids, labels=labels)
    return f"wrote {len(ids)} toy rows to {out}"


@pytest.fixture
def toy():
    """A throwaway task, declared as a task module declares one, and its task config as a ConfigStore node."""
    register_task(
        "toy",
        title="Toy task",
        column=7,
        average=False,
        sources=("generate", "release"),
        readers={"release": read_toy},
        prepare=prepare_toy,
        expected_meta=lambda task: {"max_len": int(task["max_len"]), "rows": int(task["rows"])},
        generated_source="generate",
        generator=Generator(write_toy, options={"--rows": {"type": int, "help": "toy: number of rows"}}),
    )
    store = ConfigStore.instance()
    store.store(group="task", name="toy", node=TOY_CONFIG)
    yield
    del TASKS["toy"]
    del store.repo["task"]["toy.yaml"]


def test_a_registered_task_is_prepared_and_generated_by_lra_data(toy, tmp_path, capsys):
    data = f"paths.data_dir={tmp_path / 'data'}"
    assert lra_data(["prepare", "toy", data]) == 0
    folder = tmp_path / "data" / "toy" / "tiny"
    ids, labels = load_split(folder, "test")
    expected_ids, expected_labels = toy_rows(6)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(labels, expected_labels)
    assert read_manifest(folder)["meta"] == {"max_len": 4, "rows": 6}

    raw = tmp_path / "raw"
    assert lra_data(["generate", "toy", "--out", str(raw), "--rows", "3"]) == 0  # the toy's own flag
    assert f"wrote 3 toy rows to {raw}" in capsys.readouterr().out
    assert lra_data(["prepare", "toy", "--source", "release", "--path", str(raw), data, "task.profile=raw"]) == 0
    np.testing.assert_array_equal(load_split(tmp_path / "data" / "toy" / "raw", "train")[0], toy_rows(3)[0])

    with pytest.raises(SystemExit, match=r"no generator for 'text' \(generators: listops, pathfinder, pathx, toy\)"):
        lra_data(["generate", "text", "--out", str(raw)])


@pytest.mark.parametrize("command", ["prepare", "generate", "verify", "info"])
def test_a_registered_task_is_a_choice_of_every_lra_data_subcommand(toy, capsys, command):
    with pytest.raises(SystemExit):
        lra_data([command, "--help"])
    help_text = capsys.readouterr().out
    assert "{image,listops,pathfinder,pathx,retrieval,text,toy}" in help_text
    assert ("--rows ROWS" in help_text) == (command == "generate")


def test_a_registered_task_is_a_column_of_lra_table(toy, tmp_path, capsys):
    for task, acc in {**ROW, "toy": 0.9}.items():
        write_result(tmp_path, "vanilla", task, 0, acc)
    rows = md_rows(table([tmp_path], capsys))
    titles = ["ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X", "Toy task", "Avg (5)", "Avg (6)"]
    assert rows["Attention"] == titles
    avg5 = statistics.fmean(100 * a for a in ROW.values())  # the toy does not count in the 5-task mean
    averages = [f"{avg5:.2f}", f"{(5 * avg5 + 50) / 6:.2f}"]  # a missing Path-X counts as 50 in Avg (6)
    one = [f"{100 * ROW[t]:.2f} n=1" for t in ROW]  # one run each: no std, no interval
    assert rows["vanilla"] == [*one, "-", "90.00 n=1", *averages]


def test_the_lra_tasks_in_the_lra_papers_order():
    assert list(TASK_NAMES) == ["listops", "text", "retrieval", "image", "pathfinder", "pathx"]
    assert list(FIVE) == ["listops", "text", "retrieval", "image", "pathfinder"]  # Path-X is not in Avg (5)
    assert [TITLES[t] for t in TASK_NAMES] == ["ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X"]


def test_every_task_has_a_config_and_every_synthetic_source_a_writer():
    assert sorted(TASKS) == sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))
    assert sorted(synthetic.WRITERS) == sorted(n for n, s in TASKS.items() if SYNTHETIC in s.sources)


def test_an_inconsistent_declaration_is_refused():
    spec = TASKS["listops"]
    declares = {k: getattr(spec, k) for k in ("title", "column", "average", "prepare", "expected_meta")}
    with pytest.raises(ValueError, match=r"task 'bad' declares a reader for 'hf', which is not in its sources"):
        register_task("bad", **declares, sources=("release",), readers={"hf": print})
    with pytest.raises(ValueError, match="'synthetic' in sources without a stand_in or the reverse"):
        register_task("bad", **declares, sources=("release", SYNTHETIC), readers={"release": print})
    with pytest.raises(ValueError, match="task 'listops' is registered twice"):
        register_task("listops", **declares, sources=("release",), readers={})
    assert "bad" not in TASKS
