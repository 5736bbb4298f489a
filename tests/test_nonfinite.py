"""NaN/inf training loss through the entry point: stop (default) or skip the batch (optim.on_nonfinite=skip)."""

import logging
import math
import re

import pytest
import torch
from torch import Tensor, nn

import lra.train
from lra.config import compose_config
from lra.train import run
from tests.test_train import TINY


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """One prepared tiny ListOps for the module (the first run generates it)."""
    return str(tmp_path_factory.mktemp("data"))


def tiny(data_dir: str, *extra: str):
    fast = ["trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    overrides = [*TINY, f"paths.data_dir={data_dir}", "logger=none", *fast, *extra]
    return compose_config(overrides), overrides


class NaNOnCalls(nn.Module):
    """Wraps a classifier; returns NaN logits on the given training forward calls (0-based).

    ``first_weight[i]`` is a copy of one weight as call i saw it, to tell whether the optimizer
    updated the model in between.
    """

    def __init__(self, model: nn.Module, calls: set[int]):
        super().__init__()
        self.model, self.calls, self.first_weight = model, calls, []

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        logits = self.model(ids, mask)
        if not self.training:
            return logits
        self.first_weight.append(next(self.model.parameters()).detach().clone())
        return logits * float("nan") if len(self.first_weight) - 1 in self.calls else logits


def inject_nan(monkeypatch, calls: set[int]) -> list[NaNOnCalls]:
    """Make lra.train build models that fault on ``calls``; returns the list the built models land in."""
    built, build = [], lra.train.build_model

    def faulty(cfg):
        model = NaNOnCalls(build(cfg), calls)
        built.append(model)
        return model

    monkeypatch.setattr(lra.train, "build_model", faulty)
    return built


def test_a_diverging_run_stops_naming_the_step_and_the_last_finite_loss(data_dir, tmp_path):
    cfg, overrides = tiny(data_dir, "optim.lr=1e30")
    with pytest.raises(FloatingPointError) as info:
        run(cfg, tmp_path / "run", overrides)
    found = re.search(r"training loss became (nan|inf|-inf) at step (\d+); last finite loss (\S+)\.", str(info.value))
    assert found, str(info.value)
    assert int(found[2]) >= 1 and math.isfinite(float(found[3]))  # the first step was finite, with a real loss
    assert "optim.lr" in str(info.value)
    assert not (tmp_path / "run" / "result.json").exists()


def test_skip_leaves_the_weights_alone_and_the_run_finishes(data_dir, tmp_path, monkeypatch, caplog):
    built = inject_nan(monkeypatch, {3, 4})
    cfg, overrides = tiny(data_dir, "optim.on_nonfinite=skip", "trainer.max_steps=8", "trainer.val_check_interval=8")
    with caplog.at_level(logging.WARNING, logger="lra.module"):
        record = run(cfg, tmp_path / "run", overrides)
    assert record["steps"] == 8 and math.isfinite(record["train_loss"])
    weights = built[-1].first_weight
    assert not torch.equal(weights[2], weights[3])  # a normal step updates the weights
    assert torch.equal(weights[3], weights[4]) and torch.equal(weights[4], weights[5])  # the skipped ones do not
    assert not torch.equal(weights[5], weights[6])  # and training goes on
    assert "training loss is nan, batch skipped (2 in a row, 2 in all; optim.on_nonfinite=skip)" in caplog.text


def test_skip_stops_after_too_many_in_a_row(data_dir, tmp_path):
    cfg, overrides = tiny(data_dir, "optim.lr=1e30", "optim.on_nonfinite=skip", "optim.max_consecutive_skips=2")
    with pytest.raises(FloatingPointError, match=r"for 3 batches in a row up to step \d+, more than "
                       r"optim.max_consecutive_skips=2; last finite loss \d"):  # fmt: skip
        run(cfg, tmp_path / "run", overrides)


def test_stop_is_the_default_and_stops_at_the_injected_fault(data_dir, tmp_path, monkeypatch):
    inject_nan(monkeypatch, {3})
    cfg, overrides = tiny(data_dir)
    with pytest.raises(FloatingPointError, match=r"training loss became nan at step 4; last finite loss \d"):
        run(cfg, tmp_path / "run", overrides)
