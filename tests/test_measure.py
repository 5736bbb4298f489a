"""What a record says about speed and loss, and the conditions it was measured under."""

import json
import logging
import os

import pytest
import torch

from lra.callbacks import StepTimer
from lra.config import compose_config
from lra.module import LRAModule
from lra.results import LATER_FIELDS, RESULT_FIELDS, load_result
from lra.train import run
from tests.test_train import TINY


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory):
    """8 steps, loss logged every 3, with every training batch's loss recorded independently."""
    tmp = tmp_path_factory.mktemp("measure")
    losses, original = [], LRAModule.training_step

    def training_step(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        losses.append(float(loss.detach()))
        return loss

    overrides = [*TINY, "trainer.max_steps=8", "trainer.log_every_n_steps=3", f"paths.data_dir={tmp}", "logger=none"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LRAModule, "training_step", training_step)
        record = run(compose_config(overrides), tmp / "run", overrides)
    return record, losses


def test_train_loss_is_the_mean_over_the_last_logging_interval(measured_run):
    record, losses = measured_run
    assert len(losses) == 8
    assert record["train_loss"] == pytest.approx(sum(losses[-3:]) / 3, rel=1e-12)
    assert record["train_loss"] != pytest.approx(losses[-1])  # not the last batch's loss


def test_the_record_states_threads_cpus_and_load(measured_run):
    record, _ = measured_run
    assert record["threads"] == torch.get_num_threads()
    assert record["cpus_available"] == len(os.sched_getaffinity(0))
    for key in ("load_avg_start", "load_avg_end"):
        assert len(record[key]) == 3 and all(x >= 0 for x in record[key])


def test_throughput_and_step_times_come_from_the_same_timed_steps():
    timer = StepTimer(warmup=0)
    timer.times = [0.010, 0.010, 0.100]  # one step slowed down 10x (another process on the CPU)
    timer.real_tokens, timer.all_tokens, timer.samples = 300, 600, 30
    s = timer.summary()
    assert s["step_time_ms"] == pytest.approx(10.0) and s["step_time_mean_ms"] == pytest.approx(40.0)
    assert s["tokens_per_s"] == pytest.approx(300 / 0.12) and s["samples_per_s"] == pytest.approx(30 / 0.12)
    # tokens per timed step over the mean step time: the identity that ties the two together
    assert s["tokens_per_s"] == pytest.approx((300 / 3) / (s["step_time_mean_ms"] / 1000))
    assert s["timed_steps"] == 3


def test_a_run_shorter_than_the_timing_warmup_warns_and_records_no_speed(tmp_path, caplog):
    overrides = [*TINY, "trainer.max_steps=3", "measure.warmup_steps=5", f"paths.data_dir={tmp_path}", "logger=none"]
    with caplog.at_level(logging.WARNING):
        record = run(compose_config(overrides), tmp_path / "run", overrides)
    assert "no training step was timed: the run made 3 optimizer step(s) and measure.warmup_steps=5" in caplog.text
    assert record["step_time_ms"] is None and record["tokens_per_s"] is None and record["timed_steps"] == 0
    assert "nan" not in caplog.text.lower()


def test_a_record_written_before_the_measurement_fields_still_loads(tmp_path):
    old = {k: 1 for k in RESULT_FIELDS if k not in LATER_FIELDS}
    (tmp_path / "result.json").write_text(json.dumps(old))
    record = load_result(tmp_path / "result.json")
    assert all(record[k] is None for k in LATER_FIELDS)
    del old["step_time_ms"]
    (tmp_path / "result.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="missing step_time_ms"):
        load_result(tmp_path / "result.json")
