"""Every command, config choice and script README.md names must exist."""

import ast
import io
import re
import tokenize
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


# attention choices the example package of "Attention from other packages" provides (tests/test_plugins.py runs them)
PLUGIN_EXAMPLE = tomllib.loads((ROOT / "tests" / "plugin_example" / "pyproject.toml").read_text())
PLUGINS = set(PLUGIN_EXAMPLE["project"]["entry-points"]["lra.attention"])


@pytest.mark.parametrize("group", ["task", "attention", "model", "trainer", "logger", "experiment"])
def test_every_named_config_choice_exists(group):
    for match in re.findall(rf"(?<![\w.]){group}=([\w/,\[\]]+)", README):
        for choice in re.split(r"[,\[\]]", match):
            if choice and not (group == "attention" and choice in PLUGINS):
                assert (ROOT / "configs" / group / f"{choice}.yaml").is_file(), f"{group}={choice}"


def test_every_named_file_exists():
    for path in re.findall(
        r"\b((?:scripts|results|configs|tests|models|lra)/[\w./-]+\.(?:py|yaml|md|png|csv))", README
    ):
        assert (ROOT / path).exists(), path


def test_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in README and "python -m pytest -q" in ci


NAMED_PATH = re.compile(
    r"(?<![\w/.~$-])((?:docs|scripts|results|configs|tests|models|lra)/[\w./-]*\w\.(?:py|yaml|md|png|csv|json))"
)


def prose(path: Path) -> str:
    """The docstrings and comments of a Python file, the comments of a YAML file."""
    text = path.read_text()
    if path.suffix == ".yaml":
        return "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    tree = ast.parse(text)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    docs = [ast.get_docstring(n) or "" for n in nodes]
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    return "\n".join(docs + comments)


def test_every_path_named_in_a_docstring_or_comment_exists():
    """No module, config or test points at a file the repository does not contain."""
    sources = [p for d in ("lra", "models", "tests", "scripts", "configs") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".yaml") and p.is_file()]  # fmt: skip
    missing = [
        f"{src.relative_to(ROOT)}: {path}"
        for src in sources
        for path in NAMED_PATH.findall(prose(src))
        if not (ROOT / path).exists()
    ]
    assert not missing, "paths named but not in the repository:\n" + "\n".join(missing)


def test_readme_names_no_file_outside_the_repository():
    missing = [path for path in NAMED_PATH.findall(README) if not (ROOT / path).exists()]
    assert not missing, missing


def test_every_benchmark_table_quoted_in_the_readme_is_the_committed_one():
    """A table README quotes 'from `results/efficiency/<folder>/table.md`' has exactly that file's rows."""
    quotes = re.findall(r"from `(results/efficiency/[\w.-]+/table\.md)`:\n\n((?:\|.*\|\n)+)", README)
    assert quotes, "README quotes no benchmark table"
    for path, table in quotes:
        committed = (ROOT / path).read_text().splitlines()
        for line in table.splitlines()[2:]:  # the rows below the header and its rule
            assert line in committed, f"README's row is not in {path}: {line}"
