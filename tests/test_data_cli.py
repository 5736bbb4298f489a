"""``lra-data`` details: the prepare hint after ``generate``, refusals that name the settings, re-preparation."""

import functools
import shlex

import numpy as np
import pytest

from lra.data import pathfinder_gen
from lra.data.cli import main as lra_data
from lra.data.prepared import load_split, read_manifest
from tests.test_bad_data import TASK


def printed_prepare(out: str) -> list[str]:
    """The arguments of the ``lra-data prepare ...`` command a ``generate`` printed."""
    command = out.split("prepare with: ", 1)[1].rstrip().removesuffix(")")
    args = shlex.split(command)
    assert args[:2] == ["lra-data", "prepare"]
    return args[1:]


@pytest.mark.parametrize(
    ("task", "resolution", "prepared_as"), [("pathfinder", 128, "pathx"), ("pathx", 32, "pathfinder")]
)
def test_the_printed_prepare_command_after_generate_works(tmp_path, capsys, task, resolution, prepared_as):
    out = tmp_path / "raw"
    args = ["generate", task, "--resolution", str(resolution), "--n", "10", "--workers", "1", "--out", str(out)]
    assert lra_data(args) == 0
    prepare = printed_prepare(capsys.readouterr().out)
    assert prepare[1] == prepared_as
    assert lra_data([*prepare, f"paths.data_dir={tmp_path / 'data'}"]) == 0
    ids, _ = load_split(tmp_path / "data" / prepared_as / "lra", "train")
    assert ids.shape == (8, resolution * resolution)


def test_prepare_over_other_settings_names_them_and_the_commands(tmp_path, capsys):
    data = f"paths.data_dir={tmp_path}"
    assert lra_data(["prepare", "listops", "--workers", "1", *TASK, data]) == 0
    before = read_manifest(tmp_path / "listops" / "tiny")
    capsys.readouterr()
    assert lra_data(["prepare", "listops", "--workers", "1", *TASK, "task.generator.seed=7", data]) == 2
    err = capsys.readouterr().err
    assert "listops/tiny was prepared with other settings (generator: prepared {" in err
    assert "'seed': 0" in err and "'seed': 7" in err
    new_profile, force = err.split("`")[1], err.split("`")[3]
    assert new_profile.endswith(f"task.generator.seed=7 {data} task.profile=NEW_NAME")
    assert "task.profile=tiny" not in new_profile
    assert force == shlex.join(
        ["lra-data", "prepare", "listops", "--source", "generate", *TASK, "task.generator.seed=7", data, "--force"]
    )
    assert read_manifest(tmp_path / "listops" / "tiny") == before  # nothing was prepared
    assert lra_data(["prepare", "listops", "--workers", "1", *TASK, data]) == 0
    assert "already prepared with these settings" in capsys.readouterr().out


def test_preparing_fewer_generated_images_again_reads_only_those(tmp_path, monkeypatch):
    """Small batches, so n=30 writes three metadata files and n=10 one: the old two must not be read."""
    monkeypatch.setattr(pathfinder_gen, "generate", functools.partial(pathfinder_gen.generate, batch_size=10))
    args = ["prepare", "pathfinder", "--workers", "1", "task.profile=few", f"paths.data_dir={tmp_path}"]
    assert lra_data([*args, "task.generator.n=30"]) == 0
    assert lra_data([*args, "task.generator.n=10", "--force"]) == 0
    folder = tmp_path / "pathfinder" / "few"
    manifest = read_manifest(folder)
    assert manifest["meta"]["generator"]["n"] == 10
    counts = [len(load_split(folder, s)[1]) for s in ("train", "val", "test")]
    assert counts == [8, 1, 1] == [manifest["splits"][s]["n"] for s in ("train", "val", "test")]
    assert sorted(p.name for p in (folder.with_name("few.images") / "pathfinder32").rglob("*.npy")) == ["0.npy"]
    assert np.asarray(load_split(folder, "test")[0]).shape == (1, 1024)
