"""Attention from other packages: the example package tests/plugin_example, found through its
``lra.attention`` entry points, trains through ``lra-train``, passes ``lra-attention check``, has its
configs validated like a built-in's; broken entry points are one warning each and break nothing.

The package is put on PYTHONPATH with a ``*.dist-info`` folder written from its pyproject.toml (what
``pip install`` would write, minus the files), so importlib.metadata finds its entry points without pip.
"""

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from lra.config import compose_config
from models.attention import available, build_attention, get, load_plugins, plugins
from tests.broken_attention import Exact
from tests.test_train import TINY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "plugin_example"


def dist_info(folder: Path, name: str, entry_points: dict[str, str], version: str = "0.1.0") -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[lra.attention]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def plugin_env(tmp_path):
    """Environment for a subprocess that sees the example package and a broken one."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    dist_info(site, project["name"], project["entry-points"]["lra.attention"], project["version"])
    broken = {"vanilla": "toy_attention.window:WindowAttention", "ghost": "no_such_module_for_lra:Attention"}
    dist_info(site, "lra-broken-plugin", broken)
    env = {**os.environ, "LRA_DATA_DIR": str(tmp_path / "data")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(EXAMPLE), str(site)])
    return env


def python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


WARNINGS = [
    "attention plugin 'vanilla' = 'toy_attention.window:WindowAttention' (package lra-broken-plugin) skipped: "
    "the name is taken by a built-in mechanism; rename the entry point",
    "attention plugin 'ghost' = 'no_such_module_for_lra:Attention' (package lra-broken-plugin) skipped: "
    "importing it failed (ModuleNotFoundError: No module named 'no_such_module_for_lra')",
]


def test_lra_train_trains_a_plugin_attention(plugin_env, tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "attention=toy_window", "attention.window=4", "logger=none", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(
        [sys.executable, "-m", "lra.train", *args], env=plugin_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["attention"] == "toy_window" and record["steps"] == 12
    assert record["config"]["attention"] == {"name": "toy_window", "window": 4}
    assert record["params"] > 0 and 0 <= record["test_acc"] <= 1
    for line in WARNINGS:  # the broken package's entry points: one line each, and training went on
        assert proc.stderr.count(line) == 1, proc.stderr[-3000:]


CONFIGS = """
import json
from lra.attention_check import cli
from lra.config import compose_config
from lra.validate import ConfigError, validate_config
from models.attention import get, plugins
out = {"plugins": plugins(), "vanilla": get("vanilla").__module__}
for name in ("toy_window", "toy_window_sized"):
    cfg = compose_config(["attention=" + name, "task.max_len=32"])
    out[name] = dict(cfg.attention)
errors = []
for override in ("attention.window=0", "+attention.windw=3"):
    try:
        validate_config(compose_config(["attention=toy_window", override]))
    except ConfigError as e:
        errors.append(str(e))
out["errors"] = errors
try:
    compose_config(["attention=toy_window", "attention.windw=3"])
except Exception as e:
    out["struct"] = str(e).splitlines()[0]
from lra.bench_plan import attention_config
out["bench"] = [attention_config(name, 128) for name in ("toy_window", "toy_window_sized")]
out["check"] = cli(["check", "toy_window_sized", "--d-model", "32", "--length", "32", "--lengths"])
print("@@" + json.dumps(out))
"""


def test_plugin_configs_checks_and_registry(plugin_env, tmp_path):
    proc = python(CONFIGS, plugin_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("@@")[-1])
    assert out["plugins"] == {
        "toy_window": "lra-toy-attention (toy_attention.window:WindowAttention)",
        "toy_window_sized": "lra-toy-attention (toy_attention.window:SizedWindowAttention)",
    }
    assert out["vanilla"] == "models.attention.vanilla"  # the clashing entry point did not replace it
    assert out["toy_window"] == {"name": "toy_window", "window": 16}  # the constructor's default
    assert out["toy_window_sized"] == {"name": "toy_window_sized", "window": 8}  # its YAML file: 32 // 4
    too_small, unknown = out["errors"]
    assert "attention.window=0: must be an integer >= 1" in too_small  # its declared minimum
    assert "attention 'toy_window' got unknown option(s) windw; valid options: window" in unknown
    assert "Could not override 'attention.windw'" in out["struct"]
    assert out["bench"] == [{"window": 16}, {"window": 32}]  # lra-bench: the default; the YAML's 128 // 4
    assert out["check"] == 0
    assert "window=8" in proc.stdout and "PASS: every rule holds" in proc.stdout


def test_broken_entry_points_are_skipped_with_one_line_each(caplog):
    before = available()
    points = [
        EntryPoint("ghost", "no_such_module_for_lra:Attention", "lra.attention"),
        EntryPoint("vanilla", "tests.broken_attention:Exact", "lra.attention"),
        EntryPoint("not_a_class", "tests.broken_attention:F", "lra.attention"),
        EntryPoint("bad-name", "tests.broken_attention:Exact", "lra.attention"),
        EntryPoint("positional", "tests.test_plugins:Positional", "lra.attention"),
        EntryPoint("bad_declares", "tests.test_plugins:BadDeclares", "lra.attention"),
    ]
    problems = load_plugins(points)
    assert available() == before and plugins() == {}
    assert get("vanilla").__module__ == "models.attention.vanilla"
    assert build_attention("vanilla", d_model=8, n_heads=2) is not None
    assert problems == [r.getMessage() for r in caplog.records]
    ghost, clash, not_a_class, bad_name, positional, bad_declares = problems
    assert ghost.startswith("attention plugin 'ghost' = 'no_such_module_for_lra:Attention' (module no_such_module")
    assert ghost.endswith("importing it failed (ModuleNotFoundError: No module named 'no_such_module_for_lra')")
    assert clash.endswith("skipped: the name is taken by a built-in mechanism; rename the entry point")
    assert "not an nn.Module class" in not_a_class
    assert "the name is not an identifier" in bad_name
    assert positional.endswith("constructor argument(s) size are not keyword-only (put them after *)")
    assert "its declares are invalid (attention 'bad_declares' declares option(s) nope its constructor lacks)" in (
        bad_declares
    )
    with pytest.raises(KeyError, match=r"unknown attention 'ghost'; available: .*\(attention plugin 'ghost'.*failed"):
        get("ghost")


class Positional(Exact):
    def __init__(self, size: int = 3, *, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout)


class BadDeclares(Exact):
    declares = {"minima": {"nope": 1}}


def test_compose_of_a_builtin_needs_no_plugin():
    assert compose_config(["attention=vanilla"]).attention.name == "vanilla"
