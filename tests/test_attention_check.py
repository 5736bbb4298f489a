"""``lra-attention check``: passes for every registered mechanism, fails naming the rule a broken one
breaks, refuses bad input in one line with status 2, and shows a speed and memory curve."""

import re

import pytest

from lra.attention_check import cli
from models.attention import available

FAST = ["--d-model", "32", "--heads", "4", "--lengths"]  # no curve


def results(out: str) -> dict[str, str]:
    """rule -> PASS or FAIL, from the printed table."""
    return dict(re.findall(r"^(\w[\w ]*?)\s{2,}(PASS|FAIL)\s", out, flags=re.M))


@pytest.mark.parametrize("name", available())
def test_every_registered_mechanism_passes(name, capsys):
    status = cli(["check", name, *FAST])
    out = capsys.readouterr().out
    assert status == 0, out
    assert len(results(out)) == 9 and set(results(out).values()) == {"PASS"}, out


def test_a_correct_class_by_module_path_passes(capsys):
    assert cli(["check", "tests.broken_attention:Exact", *FAST, "--opt", "scale=0.5"]) == 0
    out = capsys.readouterr().out
    assert "scale=0.5" in out and out.rstrip().endswith("PASS: every rule holds")


@pytest.mark.parametrize(
    "broken, rules",
    [
        ("LeaksPadding", {"padding content", "padding amount"}),
        ("DeadParameter", {"gradients"}),
        ("NoisyInEval", {"eval deterministic"}),
        ("PaddingNotZeroed", {"zero at padding"}),
        ("NaNWhenEmpty", {"fully padded"}),
        ("ReturnsFloat32", {"float64"}),
        ("NaNWithoutMask", {"finite", "padding amount"}),
        ("LengthScaled", {"padding amount"}),
    ],
)
def test_a_broken_mechanism_fails_naming_the_rule(broken, rules, capsys):
    status = cli(["check", f"tests.broken_attention:{broken}", *FAST])
    out = capsys.readouterr().out
    assert status == 1
    assert {rule for rule, result in results(out).items() if result == "FAIL"} == rules, out
    assert out.rstrip().endswith(f"FAIL: {', '.join(r for r in results(out) if r in rules)}")
    if broken == "DeadParameter":
        assert "gate got no gradient" in out
    if broken == "LengthScaled":
        assert "row 0 with 8 fewer padded positions differs" in out


def test_a_wrong_shape_fails_the_shape_rule(capsys):
    assert cli(["check", "tests.broken_attention:WrongShape", *FAST]) == 1
    out = capsys.readouterr().out
    assert results(out)["shape"] == "FAIL" and "output (2, 63, 32) for input (2, 64, 32)" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["no_such_module_xyz:Attn"], "cannot import module 'no_such_module_xyz' of no_such_module_xyz:Attn"),
        (["tests.broken_attention:Nope"], "module 'tests.broken_attention' has no class 'Nope'"),
        (["tests.broken_attention:F"], "tests.broken_attention:F is not an nn.Module class"),
        (["nope"], "unknown attention 'nope'; available: .*vanilla.*; or give a class as module:Class"),
        (["vanilla", "--opt", "imp=naive"], "--opt imp: not an option of vanilla; valid: causal, impl"),
        (["vanilla", "--opt", "impl"], "--opt impl: write it as key=value"),
        (["vanilla", "--opt", "impl=fast"], "vanilla refuses these options .*impl must be one of"),
        (["vanilla", "--d-model", "30"], "--d-model 30 is not divisible by --heads 4"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args, message, capsys):
    assert cli(["check", *args, "--lengths"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and re.match(rf"lra-attention: {message}", lines[0]), captured.err


def test_curve_against_vanilla(capsys):
    args = ["check", "tests.broken_attention:Exact", "--d-model", "16", "--heads", "2", "--length", "16"]
    assert cli([*args, "--lengths", "32", "--curve-batch", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "speed and memory, forward + backward, batch 1, cpu (information, not a rule)" in out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("32 "))
    ms, vanilla_ms, ratio = float(row[1]), float(row[2]), row[3]
    assert ms > 0 and vanilla_ms > 0 and ratio.endswith("x")
    # the ratio of the unrounded times: within what the printed times (rounded to 0.1 ms) allow
    low, high = max(ms - 0.05, 0) / (vanilla_ms + 0.05), (ms + 0.05) / max(vanilla_ms - 0.05, 1e-9)
    assert low - 0.005 <= float(ratio[:-1]) <= high + 0.005
    assert len(row) == 7 and row[6].endswith("x")
