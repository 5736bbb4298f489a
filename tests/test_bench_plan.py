"""lra-bench's grid comes from the attention registry: default rows, options of a mechanism without a
config, the options sized from N, and settings a point carries of its own."""

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from torch import nn

import models.attention as registry
from lra.bench import run_point
from lra.bench_plan import DEFAULTS, attention_config, plan, settings, sized_from_length
from lra.config import compose_config
from lra.measure import BASELINE, FLOOR, NAIVE
from models.attention import available, register
from tests.test_bench import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def plugin(monkeypatch):
    """A mechanism registered the way a plugin registers one, shipping no configs/attention/<name>.yaml;
    the registration is dropped afterwards."""
    for name in ("_REGISTRY", "_DECLARATIONS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))

    @register("zz_plugin", follows_length=("block",))
    class Plugin(nn.Module):
        def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, block: int = 48, mode: str = "x"):
            super().__init__()

    return "zz_plugin"


def bench_config(tmp_path, *overrides):
    return compose_config([*TINY, f"out_dir={tmp_path}", *overrides], config_name="bench")


def test_default_rows_are_every_registered_mechanism_in_registry_order(tmp_path):
    cfg = bench_config(tmp_path, "lengths=[64]")
    assert cfg.mechanisms is None  # configs/bench.yaml names no mechanism
    rows = [p.row for p in plan(cfg)]
    names = available()
    expected = [r for name in names for r in ([name, NAIVE] if name == BASELINE else [name])] + [FLOOR]
    assert rows == expected and len(names) >= 6
    explicit = [p.row for p in plan(bench_config(tmp_path, "lengths=[64]", "mechanisms=[tssa,vanilla]"))]
    assert explicit == ["tssa", BASELINE, NAIVE, FLOOR]  # an explicit list keeps its order
    alone = [p.row for p in plan(bench_config(tmp_path, "lengths=[64]", "mechanisms=tssa", "floor=false"))]
    assert alone == ["tssa"]  # one name, not its letters


def test_a_mechanism_without_a_config_runs_with_its_constructor_defaults(tmp_path, plugin, caplog):
    assert attention_config(plugin, 1024) == {"block": 48, "mode": "x"} == attention_config(plugin, 4096)
    assert attention_config("not_registered_anywhere", 1024) is None
    with caplog.at_level(logging.WARNING, logger="lra.bench_plan"):
        points = [p for p in plan(bench_config(tmp_path, "lengths=[64,128]")) if p.row == plugin]
    assert [(p.length, p.options, p.unavailable) for p in points] == [(64, {"block": 48, "mode": "x"}, "")] + [
        (128, {"block": 48, "mode": "x"}, "")
    ]
    assert all(p.options_from == DEFAULTS and p.sized_from_length == () for p in points)
    assert f"{plugin} ships no configs/attention/{plugin}.yaml: block keep the constructor's defaults" in caplog.text
    row = run_point(replace(points[0], unavailable="not run here"), {}, mem_limit_gb=None)
    assert row["options_from"] == DEFAULTS and row["sized_from_length"] == ""


def test_the_options_a_mechanism_declares_as_following_n_are_resolved_at_each_length(tmp_path):
    # cast: kappa = the smallest power of two with kappa^2 >= N, Nc = ceil(N / kappa) (configs/attention/cast.yaml)
    for n, kappa in ((1000, 32), (1024, 32), (2048, 64), (3000, 64), (16384, 128)):
        opts = attention_config("cast", n)
        assert (opts["cluster_size"], opts["num_clusters"]) == (kappa, -(-n // kappa))
    assert sized_from_length("cast") == ("num_clusters", "cluster_size")
    assert sized_from_length("vanilla") == () and sized_from_length("not_registered_anywhere") == ()
    points = {(p.row, p.length): p for p in plan(bench_config(tmp_path, "lengths=[1024]", "mechanisms=[cast]"))}
    cast = points[("cast", 1024)]
    assert cast.options_from == "configs/attention/cast.yaml" and cast.sized_from_length == sized_from_length("cast")
    row = run_point(replace(cast, unavailable="not run here"), {}, mem_limit_gb=None)
    assert row["sized_from_length"] == "num_clusters;cluster_size"
    assert json.loads(row["options"])["cluster_size"] == 32
    assert points[(FLOOR, 1024)].options_from == "" and points[(FLOOR, 1024)].sized_from_length == ()


def test_settings_a_point_carries_override_the_sweeps_and_are_recorded(tmp_path):
    """The hook for a second swept axis: a point's own batch reaches the child and its row."""
    cfg = bench_config(tmp_path, "mechanisms=[vanilla]", "vanilla_naive=false", "floor=false", "lengths=[16]")
    point = replace(plan(cfg)[0], setup={"batch": 3})
    row = run_point(point, settings(cfg), mem_limit_gb=None)
    assert row["status"] == "ok", row.get("detail")
    assert row["batch"] == 3 and settings(cfg)["batch"] == 2
    assert row["train_step_tokens_per_s"] == pytest.approx(3 * 16 / row["train_step_median_ms"] * 1e3)


def test_a_bad_setting_is_one_line_naming_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lra.bench", *TINY, "dtype=fp16", f"out_dir={tmp_path / 'out'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == "lra-bench: dtype must be auto, fp32 or bf16, got 'fp16'\n"
    assert not any((tmp_path / "out").glob("*"))  # nothing measured or written (Hydra may make the folder)
