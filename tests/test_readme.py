"""Every command, config choice and script README.md names must exist."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_named_command_is_installed():
    named = set(re.findall(r"\b(lra-[a-z]+)\b", README))
    assert named, "README names no lra- command"
    assert named <= set(SCRIPTS), f"README names commands that do not exist: {named - set(SCRIPTS)}"


@pytest.mark.parametrize("group", ["task", "attention", "model", "trainer", "logger", "experiment"])
def test_every_named_config_choice_exists(group):
    for match in re.findall(rf"(?<![\w.]){group}=([\w/,\[\]]+)", README):
        for choice in re.split(r"[,\[\]]", match):
            if choice:
                assert (ROOT / "configs" / group / f"{choice}.yaml").is_file(), f"{group}={choice}"


def test_every_named_file_exists():
    for path in re.findall(
        r"\b((?:scripts|results|configs|tests|models|lra)/[\w./-]+\.(?:py|yaml|md|png|csv))", README
    ):
        assert (ROOT / path).exists(), path


def test_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in README and "python -m pytest -q" in ci
