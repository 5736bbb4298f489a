"""Self-pretraining (lra/spt.py, lra/spt_stage.py): the masking, the loss, the causal targets, the
refusals, and one command that pretrains then fine-tunes from the best pretraining checkpoint."""

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lra.build import build_model, build_pretrain_model
from lra.config import compose_config
from lra.results import load_result, without_no_effect
from lra.run_dir import fingerprint
from lra.spt import (
    IGNORE,
    PretrainModule,
    causal_targets,
    draw_mask,
    masked_inputs,
    split_steps,
    stage_configs,
    token_loss,
)
from lra.spt_stage import encoder_state
from lra.train import run
from lra.validate import ConfigError, validate_config
from models.attention import build_attention
from tests.scripts import load_script
from tests.test_table import md_rows, table, write_result
from tests.test_train import TINY

REPO = Path(__file__).resolve().parents[1]

SPT = [*TINY, "logger=csv"]


def padded_ids(b: int, n: int, vocab: int, seed: int) -> torch.Tensor:
    """Ids 1..vocab-1 with a random real length per row, padding (0) after it."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (b, n), generator=g)
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    ids[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    return ids


def test_masking_draws_only_real_tokens_at_the_ratio():
    ids = padded_ids(64, 128, 17, seed=0)
    real = ids != 0
    for ratio in (0.1, 0.15, 0.5):
        chosen = draw_mask(real, ratio, torch.Generator().manual_seed(1))
        assert not (chosen & ~real).any()  # never padding
        n = int(real.sum())
        se = math.sqrt(ratio * (1 - ratio) / n)
        assert abs(int(chosen.sum()) / n - ratio) < 4 * se, (ratio, int(chosen.sum()) / n)
        inputs, targets = masked_inputs(ids, real, chosen, mask_id=17)
        assert (inputs[chosen] == 17).all() and torch.equal(inputs[~chosen], ids[~chosen])
        assert torch.equal(targets[chosen], ids[chosen]) and (targets[~chosen] == IGNORE).all()
    same = draw_mask(real, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(same, draw_mask(real, 0.15, torch.Generator().manual_seed(1)))  # seeded


def test_the_loss_ignores_unmasked_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 7, generator=g)
    targets = torch.full((3, 10), IGNORE)
    targets[0, 2], targets[1, 5], targets[2, 9] = 4, 0, 6
    by_hand = (
        -(F.log_softmax(logits[0, 2], -1)[4] + F.log_softmax(logits[1, 5], -1)[0] + F.log_softmax(logits[2, 9], -1)[6])
        / 3
    )
    loss = token_loss(logits, targets)
    assert torch.allclose(loss, by_hand)
    changed = logits.clone()
    changed[0, 3] += 100.0 * torch.randn(7, generator=g)  # an unmasked position
    assert torch.equal(token_loss(changed, targets), loss)
    changed[0, 2, 1] += 5.0  # a masked one
    assert not torch.allclose(token_loss(changed, targets), loss)
    assert token_loss(logits, torch.full((3, 10), IGNORE)) == 0  # a batch with no target


def test_causal_targets_by_hand():
    ids = torch.tensor([[5, 6, 0], [7, 8, 9]])
    real = ids != 0
    assert causal_targets(ids, real, cls=True).tolist() == [[5, 6, IGNORE], [7, 8, 9]]  # CLS predicts x_0
    assert causal_targets(ids, real, cls=False).tolist() == [[6, IGNORE, IGNORE], [8, 9, IGNORE]]


class Oracle(torch.nn.Module):
    """Logits that put all weight on the original id at the right place: position 0 is the CLS
    token's (weight on id 0, never a target), position j + 1 the j-th input's."""

    def __init__(self, original: torch.Tensor, vocab: int):
        super().__init__()
        self.original, self.vocab = original, vocab

    def forward(self, ids, mask):
        hot = 50.0 * F.one_hot(self.original, self.vocab).float()  # (B, N, V)
        cls = 50.0 * F.one_hot(torch.zeros_like(self.original[:, :1]), self.vocab).float()
        return torch.cat([cls, hot], dim=1)  # (B, N + 1, V)


@pytest.mark.parametrize("pair", [False, True])
def test_masked_targets_line_up_with_the_tokens_after_cls(pair):
    ids = padded_ids(8, 12, 17, seed=3)
    batch_ids = ids.view(4, 2, 12) if pair else ids  # Retrieval: each document is its own sequence
    module = PretrainModule(
        Oracle(ids, 17), objective="masked", mask_ratio=0.5, mask_id=17, vocab_size=17, pad_id=0, cls=True, seed=0,
        lr=1e-3, weight_decay=0.0,
    )  # fmt: skip
    logits, targets, loss = module.predict_batch({"ids": batch_ids, "label": torch.zeros(len(batch_ids))}, 0, "val")
    chosen = draw_mask(ids != 0, 0.5, module.mask_generator(0, "val"))
    assert torch.equal(targets, ids[chosen]) and len(logits) == int(chosen.sum()) > 0
    assert float(loss) < 1e-6  # the oracle is right at every target: the CLS position is not one


def test_compute_tied_splits_one_budget():
    cfg = compose_config([*TINY, "spt=masked", "spt.compute_tied=true", "spt.fraction=0.25", "trainer.max_steps=12"])
    assert split_steps(cfg) == (3, 9)
    cfg = compose_config([*TINY, "spt=masked", "spt.steps=5", "trainer.max_steps=12"])
    assert split_steps(cfg) == (5, 12)
    pre, _ = stage_configs(compose_config(["experiment=lra/image", "spt=masked"]))  # an epoch-based preset
    assert (pre.trainer.max_steps, pre.trainer.max_epochs, pre.trainer.val_check_interval) == (-1, 200, 1.0)


def test_causal_spt_with_a_non_causal_mechanism_is_refused_before_any_data(tmp_path):
    data = tmp_path / "data"
    overrides = [*SPT, "spt=causal", "attention=cast", f"paths.data_dir={data}"]
    with pytest.raises(ConfigError, match=r"spt=causal: attention 'cast' has no causal form; use spt=masked"):
        run(compose_config(overrides), tmp_path / "run", overrides)
    assert not data.exists() and not (tmp_path / "run").exists()
    validate_config(compose_config([*SPT, "spt=causal", "attention=tssa", f"paths.data_dir={data}"]))  # has one


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("spt.mask_ratio=1.5", r"spt.mask_ratio=1.5: must be a number in \(0, 1\)"),
        ("spt.stepz=3", r"unknown key\(s\) spt.stepz; valid: compute_tied"),
        ("spt.compute_tied=true", r"spt.compute_tied=true: trainer.max_steps=1 x spt.fraction=0.5 must leave"),
    ],
)
def test_bad_spt_settings_are_named(tmp_path, override, message):
    cfg = compose_config(
        [*SPT, "spt=masked", "trainer.max_steps=1", f"+{override}" if "stepz" in override else override]
    )
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_one_command_pretrains_then_fine_tunes_from_the_best_pretraining_encoder(tmp_path, monkeypatch):
    overrides = [*SPT, "spt=masked", "spt.steps=12", "spt.val_check_interval=4", f"paths.data_dir={tmp_path}"]
    seen = []
    fit = L.Trainer.fit

    def spy(self, module, *args, **kwargs):  # the encoder each stage starts from, before its first step
        seen.append({k: v.clone() for k, v in module.model.encoder.state_dict().items()})
        return fit(self, module, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", spy)
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    spt = record["spt"]
    assert record["schema"] == 3 and spt["objective"] == "masked" and spt["mask_ratio"] == 0.1  # ListOps default
    assert spt["steps"] == 12 and record["steps"] == 12
    assert spt["checkpoint"] == str((tmp_path / "run" / "pretrain" / "checkpoints" / "best.ckpt").resolve())
    rows = read_rows(tmp_path / "run" / "pretrain" / "csv" / "metrics.csv")
    val = [float(r["spt/val/loss"]) for r in rows if r.get("spt/val/loss")]
    assert len(val) >= 3 and spt["best_val_loss"] == pytest.approx(min(val[:3]), rel=1e-6)  # 3 during fit
    assert all(r.get("spt/train/loss") for r in rows if r.get("spt/train/acc"))  # stage-prefixed names
    assert spt["step_time_ms"] > 0 and spt["peak_mem_mb"] > 0
    best = encoder_state(spt["checkpoint"])
    assert len(seen) == 2 and set(seen[1]) == set(best)
    assert all(torch.equal(seen[1][k], best[k]) for k in best)  # fine-tuning starts from best.ckpt's encoder
    assert not all(torch.equal(seen[0][k], best[k]) for k in best)  # ... which pretraining changed
    assert "val/acc" in read_rows(tmp_path / "run" / "csv" / "metrics.csv")[0]


def test_lra_table_shows_spt_runs_as_rows_of_their_own(tmp_path, capsys):
    masked = {"objective": "masked", "mask_ratio": 0.1, "steps": 10}
    for seed in (0, 1):
        write_result(tmp_path, "cast", "listops", seed, 0.40, config={"spt": {"objective": "none"}})
        write_result(tmp_path / "spt", "cast", "listops", seed, 0.60, spt=masked, config={"spt": masked})
    write_result(tmp_path / "old", "vanilla", "listops", 0, 0.30)  # a schema 2 record: no spt field
    rows = md_rows(table([tmp_path], capsys))
    assert rows["cast"][0].startswith("40.00") and rows["cast (SPT masked)"][0].startswith("60.00")
    assert rows["vanilla"][0].startswith("30.00")


def test_reproduce_table_sweeps_both_protocols_with_spt():
    reproduce = load_script("reproduce_table")
    cmd = reproduce.sweep_command("mini", "text", ["vanilla", "cast"], "0", Path("out"), spt=True)
    assert "spt=none,masked" in cmd and "experiment=mini/text" in cmd
    assert "spt=none,masked" not in reproduce.sweep_command("mini", "text", ["vanilla"], "0", Path("out"))


@pytest.mark.parametrize("impl", ["sdpa", "naive"])
def test_causal_vanilla_at_position_i_equals_vanilla_on_the_prefix(impl):
    torch.manual_seed(0)
    causal = build_attention("vanilla", d_model=16, n_heads=2, impl=impl, causal=True).eval()
    full = build_attention("vanilla", d_model=16, n_heads=2, impl=impl).eval()
    full.load_state_dict(causal.state_dict())
    x = torch.randn(2, 9, 16)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False  # padding after the real tokens
    y = causal(x, mask)
    for i in range(9):
        prefix = full(x[:, : i + 1], mask[:, : i + 1])[:, i]
        real = mask[:, i]
        assert torch.allclose(y[real, i], prefix[real], atol=1e-5), i


def test_causal_spt_pretrains_the_causal_form_and_fine_tunes_the_full_one(tmp_path):
    overrides = [*SPT, "spt=causal", "spt.steps=4", "trainer.max_steps=4", f"paths.data_dir={tmp_path}"]
    pre, fine = stage_configs(compose_config(overrides))
    assert build_pretrain_model(pre).encoder.blocks[0].attn.causal
    assert not build_model(fine).encoder.blocks[0].attn.causal
    cls = fine.model.pool == "cls"
    assert build_model(fine).encoder.embed.num_embeddings == 17 + cls  # causal: no <mask> id
    masked = compose_config([*overrides, "spt=masked"])
    assert build_model(masked).encoder.embed.num_embeddings == 17 + 1 + cls  # <mask> = id 17, in both stages
    assert build_pretrain_model(masked).head.out_features == 17  # predicts the task's ids only
    record = run(compose_config(overrides), tmp_path / "run", overrides)
    assert record["spt"]["objective"] == "causal" and record["spt"]["mask_ratio"] is None
    assert record["spt"]["steps"] == 4 and math.isfinite(record["spt"]["best_val_loss"])


def test_published_spt_rows_sit_under_our_rows_of_the_same_protocol(tmp_path, capsys):
    causal = {"objective": "causal", "mask_ratio": None, "steps": 10}
    write_result(tmp_path, "vanilla", "listops", 0, 0.50, spt=causal, config={"spt": causal})
    write_result(tmp_path / "masked", "linformer", "listops", 0, 0.50, spt={**causal, "objective": "masked"})
    write_result(tmp_path / "scratch", "vanilla", "listops", 0, 0.40)
    out = table([tmp_path, "--compare", "published"], capsys)
    lines = [line.split(" | ")[0].strip("| ") for line in out.splitlines() if line.startswith("| ")]
    at = lines.index("vanilla (SPT causal)")
    spt_row = "published: Transformer + SPT (causal) (Amos et al.'s numbers as quoted in Table 1 of arXiv 2405.06147)"
    assert lines[at + 1] == spt_row
    assert md_rows(out)[spt_row][0] == "59.15"
    assert lines[lines.index("vanilla") + 1].startswith("published: Transformer (Tay et al., Table 1")  # from scratch
    assert not lines[lines.index("linformer (SPT masked)") + 1].startswith("published")  # none for SPT rows
    assert "arXiv 2405.06147" in out


def test_runs_from_scratch_keep_the_fingerprint_and_table_settings_of_records_without_spt():
    cfg = compose_config(TINY)
    before_spt = OmegaConf.to_container(cfg, resolve=True)
    before_spt.pop("spt")
    before_spt["task"].pop("spt_mask_ratio")
    assert without_no_effect(OmegaConf.to_container(cfg, resolve=True)) == without_no_effect(before_spt)
    masked = compose_config([*TINY, "spt=masked"])
    assert fingerprint(masked) != fingerprint(cfg)
    assert fingerprint(compose_config([*TINY, "spt.steps=7"])) == fingerprint(cfg)  # spt=none: no effect


def test_schema_3_records_require_spt_and_older_ones_read_it_as_null(tmp_path):
    path = write_result(tmp_path, "vanilla", "listops", 0, 0.5, schema=3, spt=...)  # spt left out
    with pytest.raises(ValueError, match="incomplete result record, missing spt$"):
        load_result(path)
    old = write_result(tmp_path / "old", "vanilla", "listops", 0, 0.5, schema=2, spt=...)
    assert load_result(old)["spt"] is None
