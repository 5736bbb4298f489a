"""The parameter budget: params_vs_vanilla in the record, the >10% warning and model.match_params=vanilla."""

import logging

import pytest
import torch
from omegaconf import open_dict

import lra.resolvers  # noqa: F401  (the attention configs' ${sum_int:...} etc.)
from lra.build import budget_warning, build_model, count_params, d_mlp_used, vanilla_params
from lra.config import compose_config
from lra.train import run
from lra.validate import ConfigError, validate_config
from tests.test_train import TINY

FAST = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", "measure.warmup_steps=0", "logger=none"]


def real_params(overrides: list[str]) -> int:
    """The parameter count of the model lra-train trains, built for real on the CPU."""
    torch.manual_seed(0)
    return sum(p.numel() for p in build_model(compose_config(overrides)).parameters())


def train(overrides: list[str], tmp_path, caplog) -> tuple[dict, list[str]]:
    overrides = [*FAST, f"paths.data_dir={tmp_path / 'data'}", *overrides]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lra.train"):
        record = run(compose_config(overrides), tmp_path / "-".join(overrides[-2:]).replace("/", "_"), overrides)
    return record, [r.getMessage() for r in caplog.records if "vanilla's" in r.getMessage()]


def test_the_record_holds_the_ratio_to_vanilla_and_a_big_model_is_warned_about(tmp_path, caplog):
    # Linformer's E and F (k=256 rows per layer) make the 32-token model 1.42x vanilla's
    linformer, vanilla = real_params([*TINY, "attention=linformer"]), real_params([*TINY, "attention=vanilla"])
    record, warned = train(["attention=linformer"], tmp_path, caplog)
    assert record["params"] == linformer and record["params_vs_vanilla"] == pytest.approx(linformer / vanilla)
    assert record["params_vs_vanilla"] > 1.1 and record["model"]["d_mlp"] == 128
    assert len(warned) == 1 and f"{linformer:,} parameters" in warned[0] and f"vanilla's {vanilla:,}" in warned[0]
    assert "model.match_params=vanilla" in warned[0] and "\n" not in warned[0]

    record, warned = train(["attention=vanilla"], tmp_path, caplog)
    assert record["params"] == vanilla and record["params_vs_vanilla"] == 1.0 and warned == []


def test_match_params_trains_the_matched_width_and_records_it(tmp_path, caplog):
    # no width >= 1 brings Linformer down to vanilla's count: the narrowest MLP, 1.3% above, within the budget
    record, warned = train(["attention=linformer", "model.match_params=vanilla"], tmp_path, caplog)
    vanilla = real_params([*TINY, "attention=vanilla"])
    assert record["model"]["d_mlp"] == 1 and record["params"] == real_params(
        [*TINY, "attention=linformer", "model.d_mlp=1"]
    )
    assert (
        record["params_vs_vanilla"] == pytest.approx(record["params"] / vanilla) and record["params_vs_vanilla"] < 1.02
    )
    assert warned == []
    assert record["config"]["model"]["d_mlp"] == 128  # the configured size vanilla is counted at


@pytest.mark.parametrize("attention", ["synthesizer", "tssa", "reformer", "cast"])
def test_match_params_picks_the_width_closest_to_vanilla(attention):
    """Against a search over every width: the chosen d_mlp minimises |P - P_vanilla|, which is then at
    most half a width step (n_layers * (2 d_model + 1) parameters, 0.12% of this model)."""
    cfg = compose_config(["experiment=quickstart", "task.max_len=512", f"attention={attention}"])
    target = vanilla_params(cfg)
    with open_dict(cfg):
        cfg.model.match_params = "vanilla"
    chosen = d_mlp_used(cfg)

    def params_at(d: int) -> int:
        c = cfg.copy()
        with open_dict(c):
            c.model = {**c.model, "d_mlp": d, "match_params": None}
        return count_params(c)

    best = min(range(1, 400), key=lambda d: abs(params_at(d) - target))
    assert chosen == best != 128
    step = cfg.model.n_layers * (2 * cfg.model.d_model + 1)
    assert abs(count_params(cfg) - target) <= step / 2
    assert abs(count_params(cfg) / target - 1) < 0.0012


def test_a_bad_match_params_is_one_line_naming_the_choices(tmp_path):
    cfg = compose_config([*TINY, f"paths.data_dir={tmp_path}", "model.match_params=vanila"])
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    lines = str(e.value).splitlines()[1:]
    assert lines == [
        "  model.match_params=vanila: must be null (train with model.d_mlp) or vanilla"
        " (choose model.d_mlp so the parameter count is closest to vanilla's)"
    ]


@pytest.mark.parametrize("attention", ["performer", "bigbird"])
def test_matching_leaves_the_random_generators_as_they_were(attention):
    """Their constructors draw on the CPU while matching counts on the meta device: a matched model is
    the model of its width built directly."""
    matched = compose_config(["experiment=quickstart", f"attention={attention}", "model.match_params=vanilla"])
    width = d_mlp_used(matched)
    torch.manual_seed(0)
    a = build_model(matched)
    torch.manual_seed(0)
    b = build_model(compose_config(["experiment=quickstart", f"attention={attention}", f"model.d_mlp={width}"]))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_the_warning_names_both_counts_and_the_fix_that_is_left():
    assert budget_warning(1100, 1000) is None  # exactly 10% more is within LRA's budget
    assert budget_warning(1101, 1000) == (
        "1,101 parameters, 1.10x vanilla's 1,000 at this task and model size (LRA's budget: at most 1.10x);"
        " model.match_params=vanilla narrows model.d_mlp to match"
    )
    assert budget_warning(2500, 1000, matched=True).endswith(
        "2.50x vanilla's 1,000 at this task and model size (LRA's budget: at most 1.10x);"
        " even with model.match_params=vanilla; lower the attention's own sizes"
    )


def test_match_params_off_keeps_the_fingerprint_and_table_settings_of_records_without_the_switch():
    """Runs recorded before model.match_params existed (no key) and today's runs with it null are the
    same settings: one table cell, and a killed run of either resumes; matching on is a new setting."""
    from omegaconf import OmegaConf

    from lra.config import compose_config
    from lra.results import without_no_effect
    from lra.run_dir import fingerprint

    overrides = ["experiment=mini/listops", "trainer.max_steps=2"]
    cfg = compose_config(overrides)
    before = OmegaConf.to_container(cfg, resolve=True)
    before["model"].pop("match_params")
    assert without_no_effect(OmegaConf.to_container(cfg, resolve=True)) == without_no_effect(before)
    assert fingerprint(compose_config([*overrides, "model.match_params=vanilla"])) != fingerprint(cfg)
