"""``lra-train ... spt=masked`` killed with SIGKILL in either stage: the same command continues the
stage it was in and ends with the numbers of an uninterrupted run (helpers of tests/test_resume.py)."""

import signal

import pytest

from tests.test_resume import COMPARED, LONG, ckpt_step, finish, launch, results, wait_for

SPT = [*LONG, "spt=masked", "spt.steps=20", "spt.val_check_interval=5", "checkpoint.every_n_steps=5"]
SPT_COMPARED = ("objective", "mask_ratio", "steps", "best_val_loss", "val_token_acc", "train_loss")


def numbers(record: dict) -> dict:
    return {**{k: record[k] for k in COMPARED}, **{f"spt.{k}": record["spt"][k] for k in SPT_COMPARED}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("spt_resume")
    rc, log = finish(launch([*SPT, f"hydra.run.dir={root / 'reference'}"], root, root / "data"))
    assert rc == 0, log[-3000:]
    (record,) = results(root / "reference")
    assert record["spt"]["steps"] == 20 and record["steps"] == 40
    return root, record


@pytest.mark.parametrize(
    ("stage", "checkpoint"),
    [("pretraining", "run/pretrain/checkpoints/last.ckpt"), ("fine-tuning", "run/checkpoints/last.ckpt")],
)
def test_sigkill_in_either_stage_resumes_to_the_uninterrupted_numbers(reference, tmp_path, stage, checkpoint):
    root, expected = reference
    args = [*SPT, f"hydra.run.dir={tmp_path / 'run'}"]
    proc = launch(args, tmp_path, root / "data")
    ckpt = wait_for(checkpoint, tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    assert not (tmp_path / "run" / "result.json").exists()
    limit = 20 if stage == "pretraining" else 40
    assert 0 < ckpt_step(ckpt) < limit
    assert (tmp_path / "run" / "pretrain" / "stage.json").exists() == (stage == "fine-tuning")

    rc, log = finish(launch(args, tmp_path, root / "data"))
    assert rc == 0, log[-3000:]
    assert "Restored all states from the checkpoint" in log
    assert ("pretraining: resuming from" in log) == (stage == "pretraining")
    assert ("pretraining finished earlier" in log) == (stage == "fine-tuning")
    (resumed,) = results(tmp_path)
    assert numbers(resumed) == numbers(expected)


def test_sigkill_in_pretraining_then_the_same_command_in_a_new_folder_adopts_the_stage(reference, tmp_path):
    """Typed again without a fixed folder (a new timestamped run folder): the interrupted run's
    pretraining checkpoints are copied over and the stage continues from them."""
    root, expected = reference
    args = [*SPT, f"paths.runs={tmp_path / 'runs'}"]
    proc = launch(args, tmp_path, root / "data")
    ckpt = wait_for("runs/*/*/pretrain/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    assert 0 < ckpt_step(ckpt) < 20
    interrupted = ckpt.parents[2]

    rc, log = finish(launch(args, tmp_path, root / "data"))
    assert rc == 0, log[-3000:]
    assert "pretraining: resuming from" in log and "Restored all states from the checkpoint" in log
    (resumed,) = results(tmp_path / "runs")
    assert numbers(resumed) == numbers(expected)
    assert resumed["resumed_from"] == [str(interrupted)]
    assert (
        resumed["spt"]["checkpoint"].startswith(str(tmp_path / "runs"))
        and interrupted.name not in resumed["spt"]["checkpoint"]
    )
