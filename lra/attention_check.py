"""``lra-attention check``: the attention contract on any mechanism, registered or not.

    lra-attention check mypkg.attn:MyAttention --d-model 64 --heads 4 --opt window=32
    lra-attention check cast

What a researcher runs before benchmarking a new idea. The target is a registered name (its options
are those of configs/attention/<name>.yaml at ``--length``, or a plugin's config, or else the
constructor's defaults) or ``module:Class`` (the constructor's defaults); ``--opt key=value`` (YAML
values, as in overrides) changes one. The rules of ``lra.attention_rules`` run on a seeded batch of
``--batch`` sequences of ``--length`` tokens, row 0 with a quarter of them padding, and a table shows
each rule, PASS or FAIL, and what was measured. Then, for information only (never a pass/fail rule),
forward + backward of one layer at each of ``--lengths`` against vanilla attention, each point in a
fresh process (``lra.bench_layer.measure``): median ms, peak memory and both ratios to vanilla.

Exit status: 0 when every rule passes, 1 when one fails, 2 for bad input (a module or class that
cannot be imported, an unknown name or option, sizes the constructor refuses), told in one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import torch
import yaml
from torch import nn

from lra.attention_configs import plugin_options
from lra.attention_rules import check as run_rules
from lra.attention_rules import factory, make_inputs
from lra.bench_child import run_child
from lra.bench_plan import attention_config
from lra.errors import DEBUG_FLAG, UserError, debug_requested, run_cli
from models.attention import build_attention, get, keyword_options, plugins


def resolve(target: str) -> type:
    """The class of ``target``: ``module:Class`` or a registered name; UserError naming it otherwise."""
    if ":" not in target:
        try:
            return get(target)
        except KeyError as e:
            raise UserError(f"{e.args[0]}; or give a class as module:Class") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"cannot import module '{module_name}' of {target} ({e}); is it on PYTHONPATH?") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UserError(f"module '{module_name}' has no class '{class_name}' ({target})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserError(f"{target} is not an nn.Module class")
    return cls


def target_options(target: str, cls: type, length: int, overrides: dict) -> dict:
    """The options the layer is built with at ``length``: a registered name's config (else the
    constructor's defaults), then ``overrides``; an override the constructor lacks is a UserError."""
    valid = keyword_options(cls)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise UserError(
            f"--opt {', '.join(unknown)}: not an option of {target}; valid: {', '.join(sorted(valid)) or '(none)'}"
        )
    if ":" in target:
        config = {}
    elif target in plugins():
        config = plugin_options(target, length)
    else:
        config = attention_config(target, length) or {}
    return {**config, **overrides}


def build_layer(target: str, options: dict, *, d_model: int, n_heads: int, dropout: float = 0.0):
    """One layer of ``target`` (``module:Class`` or a registered name); UserError if the constructor refuses."""
    cls = resolve(target)
    if d_model % n_heads:
        raise UserError(f"--d-model {d_model} is not divisible by --heads {n_heads}")
    try:
        if ":" not in target:  # the registry's own checks
            return build_attention(target, d_model=d_model, n_heads=n_heads, dropout=dropout, **options)
        return cls(d_model=d_model, n_heads=n_heads, dropout=dropout, **options)
    except (TypeError, ValueError) as e:
        raise UserError(f"{target} refuses these options {options}: {e}") from None


def parse_opts(pairs: list[str]) -> dict:
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--opt {pair}: write it as key=value, e.g. --opt window=32")
        opts[key] = yaml.safe_load(value)
    return opts


def curve(target: str, options_at, a: argparse.Namespace) -> list[dict]:
    """Forward + backward ms and peak MB of ``target`` and vanilla at each length (lra.bench_layer.measure)."""
    rows = []
    for n in a.lengths:
        row = {"length": n}
        for who, attention, opts in (("it", target, options_at(n)), ("vanilla", "vanilla", {})):
            kw = dict(attention=attention, options=opts, length=n, batch=a.curve_batch, d_model=a.d_model)
            kw.update(n_heads=a.heads, repeats=a.repeats, warmup=1, device=a.device)
            res = run_child("lra.bench_layer:measure", kw, timeout_s=a.timeout)
            point = res.records[0] if res.records and res.status == "ok" else {}
            row[f"{who}_ms"], row[f"{who}_mb"] = point.get("median_ms"), point.get("peak_mem_mb")
            row[f"{who}_status"] = res.status if res.status != "ok" else ""
        rows.append(row)
    return rows


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def check(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.command != "check":
        raise UserError("usage: lra-attention check TARGET [options]")
    for key in ("d_model", "heads", "length", "batch", "curve_batch", "repeats"):
        if getattr(a, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} {getattr(a, key)}: must be >= 1")
    cls = resolve(a.target)
    overrides = parse_opts(a.opt)
    opts = target_options(a.target, cls, a.length, overrides)
    build_layer(a.target, opts, d_model=a.d_model, n_heads=a.heads)  # bad options: exit 2 before any rule
    torch.manual_seed(0)
    make = factory(cls, d_model=a.d_model, n_heads=a.heads, options=opts)
    x, mask = make_inputs(a.batch, a.length, a.d_model, n_pad=a.length // 4)
    rows = run_rules(make, x, mask)
    shown = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
    print(f"{a.target} ({cls.__module__}.{cls.__qualname__}): d_model {a.d_model}, {a.heads} heads, {shown}")
    print(f"inputs: batch {a.batch}, length {a.length}, {a.length // 4} padded positions in row 0\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'rule':{width}}  result  detail")
    for rule, passed, detail in rows:
        print(f"{rule:{width}}  {'PASS' if passed else 'FAIL':6}  {detail}")
    failed = [r[0] for r in rows if not r[1]]
    if a.lengths:
        print(f"\nspeed and memory, forward + backward, batch {a.curve_batch}, {a.device} (information, not a rule)")
        heads = (("length", 7), ("ms", 9), ("vanilla ms", 10), ("x vanilla", 9), ("MB", 8), ("vanilla MB", 10))
        print("  ".join(f"{h:>{w}}" for h, w in (*heads, ("x vanilla", 9))))

        for r in curve(a.target, lambda n: target_options(a.target, cls, n, overrides), a):
            status = " ".join(f"{w}: {r[f'{w}_status']}" for w in ("it", "vanilla") if r[f"{w}_status"])
            print(
                f"{r['length']:>7}  {_num(r['it_ms'], '9.1f')}  {_num(r['vanilla_ms'], '10.1f')}  "
                f"{_ratio(r['it_ms'], r['vanilla_ms']):>9}  {_num(r['it_mb'], '8.1f')}  "
                f"{_num(r['vanilla_mb'], '10.1f')}  {_ratio(r['it_mb'], r['vanilla_mb']):>9}  {status}".rstrip()
            )
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'PASS: every rule holds'}")
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="lra-attention", description=__doc__, formatter_class=raw)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="run the attention contract on a mechanism")
    c.add_argument("target", help="module:Class, or a registered name")
    c.add_argument("--d-model", type=int, default=64)
    c.add_argument("--heads", type=int, default=4)
    c.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="a constructor option")
    c.add_argument("--length", type=int, default=64, help="tokens per sequence for the rules")
    c.add_argument("--batch", type=int, default=2, help="sequences for the rules")
    c.add_argument("--lengths", type=int, nargs="*", default=[256, 512, 1024], help="curve lengths (none: no curve)")
    c.add_argument("--curve-batch", type=int, default=4)
    c.add_argument("--repeats", type=int, default=3, help="timed calls per curve point (after one warm-up)")
    c.add_argument("--device", default="cpu", help="device for the curve")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds per curve point")
    return p


def cli(argv: list[str] | None = None) -> int:
    """Exit status of ``lra-attention`` with these arguments; bad input is one line and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [x for x in argv if x != DEBUG_FLAG]
    return run_cli("lra-attention", lambda: check(argv), debug=debug)


def main() -> None:
    sys.exit(cli())


if __name__ == "__main__":
    main()
