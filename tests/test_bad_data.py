"""Bad data through the entry points (lra-data, lra-train, lra-table): each fault names its file."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lra.config import compose_config
from lra.data.cli import cli
from lra.data.cli import main as lra_data
from lra.data.prepared import CorruptDataError, read_manifest
from lra.table import main as lra_table
from lra.train import run
from tests.test_pathfinder import _mini_release
from tests.test_table import write_result
from tests.test_train import TINY

ROOT = Path(__file__).resolve().parents[1]
TASK = [o for o in TINY if o.startswith(("experiment=", "task."))]  # what lra-data needs of TINY


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A data dir with TINY's ListOps prepared once by ``lra-data prepare``; tests work on copies."""
    data = tmp_path_factory.mktemp("prepared")
    assert lra_data(["prepare", "listops", "--workers", "1", *TASK, f"paths.data_dir={data}"]) == 0
    return data


@pytest.fixture
def data(prepared, tmp_path) -> Path:
    shutil.copytree(prepared, tmp_path / "data")
    return tmp_path / "data"


def train(data: Path, tmp_path: Path, *extra: str) -> dict:
    overrides = [*TINY, f"paths.data_dir={data}", "logger=none", *extra]
    return run(compose_config(overrides), tmp_path / "run", overrides)


def test_a_truncated_array_stops_lra_train_naming_the_file(data, tmp_path, capsys):
    path = data / "listops" / "tiny" / "train.ids.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDataError) as info:
        train(data, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable prepared array")
    assert "`lra-data verify listops ...`" in message and "--force" in message
    assert lra_data(["verify", "listops", *TASK, f"paths.data_dir={data}"]) == 1
    assert f"{path}: checksum mismatch" in capsys.readouterr().err


def test_a_changed_byte_passes_the_cheap_checks_but_not_lra_data_verify(data, capsys):
    path = data / "listops" / "tiny" / "test.ids.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # same size, one token id changed
    path.write_bytes(bytes(raw))
    assert lra_data(["verify", "listops", *TASK, f"paths.data_dir={data}"]) == 1
    assert capsys.readouterr().err.strip() == f"{path}: checksum mismatch (file is corrupt or was changed)"


def test_changed_labels_stop_lra_train_naming_the_file(data, tmp_path):
    path = data / "listops" / "tiny" / "val.labels.npy"
    labels = np.load(path)
    labels[0] = (labels[0] + 1) % 10  # same size and shape, other counts
    np.save(path, labels)
    with pytest.raises(CorruptDataError, match=rf"^{path}: label counts .*, the manifest says "):
        train(data, tmp_path)


@pytest.mark.parametrize("first_use", [False, True], ids=["prepared", "generated on first use"])
def test_labels_outside_the_classes_are_refused_before_training(data, tmp_path, first_use):
    if first_use:
        data = tmp_path / "fresh"
    with pytest.raises(CorruptDataError) as info:
        train(data, tmp_path, "task.n_classes=5")
    counts = read_manifest(data / "listops" / "tiny")["splits"]["train"]["label_counts"]
    outside = ", ".join(k for k in sorted(counts, key=int) if int(k) >= 5)
    assert f"train.labels.npy: labels {outside} are outside 0..4 (task.n_classes=5)" in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture
def listops_release(tmp_path) -> Path:
    """TINY's ListOps in the release format, written by ``lra-data generate``."""
    raw = tmp_path / "raw"
    assert lra_data(["generate", "listops", "--out", str(raw), "--workers", "1", *TASK]) == 0
    return raw / "listops-1000"


@pytest.mark.parametrize(
    ("split", "line", "bad", "message"),
    [
        ("train", 3, "( [MAX 2 9 ] )", "basic_train.tsv:3: expected 2 tab-separated fields, got 1"),
        ("val", 2, "[MAX 2 9 ]\t12", "basic_val.tsv:2: label 12 is outside 0..9"),
        ("test", 4, "[MAX 2 9 ]\tseven", "basic_test.tsv:4: label 'seven' is not an integer"),
    ],
)
def test_a_malformed_release_tsv_names_file_and_line(listops_release, tmp_path, split, line, bad, message):
    path = listops_release / f"basic_{split}.tsv"
    lines = path.read_text().splitlines()
    lines[line - 1] = bad
    path.write_text("\n".join(lines) + "\n")
    args = ["prepare", "listops", "--source", "release", "--path", str(tmp_path / "raw"), *TASK]
    with pytest.raises(ValueError, match=rf"^{path.parent}/{message}"):
        lra_data([*args, "task.profile=rel", f"paths.data_dir={tmp_path / 'data'}"])
    assert not (tmp_path / "data" / "listops" / "rel").exists()


def test_the_lra_data_command_shows_data_errors_as_one_line(listops_release, tmp_path, monkeypatch, capsys):
    path = listops_release / "basic_val.tsv"
    path.write_text("Source\tTarget\n[MAX 2 9 ]\t12\n")
    argv = ["prepare", "listops", "--source", "release", "--path", str(tmp_path / "raw"), *TASK]
    monkeypatch.setattr(sys, "argv", ["lra-data", *argv, f"paths.data_dir={tmp_path / 'data'}"])
    assert cli() == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lra-data: {path}:2: label 12 is outside 0..9") and "Traceback" not in err


def test_a_corrupt_png_names_the_image_and_its_metadata_line(tmp_path):
    base, _, _ = _mini_release(tmp_path / "raw")
    (base / "imgs" / "2" / "sample_0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    args = ["prepare", "pathfinder", "--source", "release", "--path", str(tmp_path / "raw")]
    overrides = ["task.resolution=4", "task.max_len=16", "task.profile=r4", f"paths.data_dir={tmp_path / 'data'}"]
    with pytest.raises(ValueError) as info:
        lra_data([*args, *overrides])
    assert str(info.value).startswith(
        f"{base}/imgs/2/sample_0.png (listed in {base}/metadata/2.npy:1) is not a readable PNG"
    )
    assert not (tmp_path / "data" / "pathfinder" / "r4").exists()


def test_a_missing_raw_data_path_is_named(tmp_path):
    with pytest.raises(SystemExit, match=f"lra-data: --path {tmp_path}/nope does not exist"):
        lra_data(["prepare", "listops", "--source", "release", "--path", str(tmp_path / "nope"), *TASK])


KILL_AFTER_FIRST_SPLIT = """
import os, signal, sys
from lra.data import prepared
from lra.data.cli import main

record = prepared.PreparedWriter._record

def record_then_die(self, split):
    record(self, split)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup can run: as a power cut or the OOM killer

prepared.PreparedWriter._record = record_then_die
main(sys.argv[1:])
"""


def test_a_preparation_killed_midway_leaves_nothing_that_looks_prepared(tmp_path, capsys):
    data = tmp_path / "data"
    args = ["prepare", "listops", "--workers", "1", *TASK, f"paths.data_dir={data}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not the editable install's
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_SPLIT, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = list((data / "listops").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tiny.tmp-")  # killed inside the writer
    assert (leftovers[0] / "train.ids.npy").is_file() and read_manifest(leftovers[0]) is None
    assert lra_data(["info", "listops", *TASK, f"paths.data_dir={data}"]) == 0
    assert capsys.readouterr().out.strip() == f"{data}/listops/tiny: not prepared"
    assert lra_data(args) == 0  # preparing again works, and clears what the killed one left
    assert set(read_manifest(data / "listops" / "tiny")["splits"]) == {"train", "val", "test"}
    assert [p.name for p in (data / "listops").iterdir()] == ["tiny"]


def test_lra_table_refuses_truncated_and_unfinished_records(tmp_path):
    write_result(tmp_path, "vanilla", "listops", 0, 0.4)
    cut = write_result(tmp_path, "vanilla", "listops", 1, 0.5)
    cut.write_text(cut.read_text()[:50])  # a record cut short (e.g. copied while written)
    with pytest.raises(SystemExit, match=rf"^lra-table: {cut}: unreadable result record \("):
        lra_table([str(tmp_path)])
    cut.unlink()
    unfinished = write_result(tmp_path, "vanilla", "listops", 2, 0.5)
    unfinished.write_text(json.dumps({**json.loads(unfinished.read_text()), "test_acc": None}))  # never tested
    with pytest.raises(SystemExit, match=rf"^lra-table: {unfinished}: incomplete result record, test_acc is None"):
        lra_table([str(tmp_path)])
