"""Each mechanism declares what the harness needs to know about it (models.attention.Declaration);
the registry checks the declaration against the constructor and ``lra.validate`` reads it."""

from pathlib import Path

import pytest
import yaml
from torch import nn

import models.attention as registry
from lra.config import compose_config
from lra.validate import ConfigError, validate_config
from models.attention import available, declaration, options, register
from tests.test_train import TINY

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "attention"


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in the test are dropped afterwards."""
    for name in ("_REGISTRY", "_DECLARATIONS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))


def test_declaring_an_option_the_constructor_lacks_is_refused(scratch_registry):
    with pytest.raises(ValueError, match="declares option\\(s\\) width its constructor lacks"):

        @register("bad_decl", minima={"width": 1})
        class Bad(nn.Module):
            def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0):
                super().__init__()

    assert "bad_decl" not in available()


@pytest.mark.parametrize("name", available())
def test_every_option_that_follows_the_length_is_sized_from_task_max_len(name):
    """``follows_length`` is what lra-bench resolves per length: the config must derive it from N."""
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    for key in declaration(name).follows_length:
        assert key in options(name)
        assert "task.max_len" in str(config[key]), f"configs/attention/{name}.yaml: {key} does not follow N"
    if declaration(name).causal:
        assert options(name)["causal"] is False  # non-causal by default, as LRA's classifiers are


def test_validate_checks_the_minima_a_mechanism_declares(scratch_registry, tmp_path):
    @register("wide", minima={"width": 2})
    class Wide(registry.get("vanilla")):
        def __init__(self, *, d_model: int, n_heads: int, dropout: float = 0.0, impl: str = "sdpa", width: int = 2):
            super().__init__(d_model=d_model, n_heads=n_heads, dropout=dropout, impl=impl)

    cfg = compose_config([*TINY, f"paths.data_dir={tmp_path}", "attention.name=wide", "+attention.width=1"])
    with pytest.raises(ConfigError, match="attention.width=1: must be an integer >= 2"):
        validate_config(cfg)


def test_a_declared_warning_is_logged(caplog, tmp_path):
    cfg = compose_config(
        [*TINY, f"paths.data_dir={tmp_path}", "attention=cast", "attention.num_clusters=1", "attention.cluster_size=4"]
    )
    validate_config(cfg)
    assert "tokens per sequence are in no cluster" in caplog.text
