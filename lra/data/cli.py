"""``lra-data``: get a task's data ready once, check it, describe it.

    lra-data prepare listops                                  # our generator, LRA settings
    lra-data prepare listops --source release --path ~/lra_release
    lra-data prepare listops experiment=quickstart            # the settings of an experiment
    lra-data generate listops --out DIR [task.generator.n_train=1000 ...]
    lra-data verify listops                                   # checksums against the manifest
    lra-data info listops

Trailing ``key=value`` arguments are Hydra overrides of the training config, so the data
is prepared exactly as ``lra-train`` with the same overrides will look for it. The tasks, their
sources and which have a generator (with its own flags) are the task registry's
(``lra.data.registry``): a registered task appears here by itself. A user error
(bad raw data, a damaged manifest, a full disk) is one message and exit status 2; ``--debug``
shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from omegaconf import OmegaConf

from lra.data.prepared import prepared_dir, read_manifest, verify
from lra.data.registry import generators
from lra.data.sources import data_path_exists
from lra.data.tasks import TASKS, get_task, prepare, prepare_command, settings_diff
from lra.errors import DEBUG_FLAG, debug_requested, run_cli

log = logging.getLogger("lra.data")


def _task_cfg(task: str, overrides: list[str]) -> tuple[dict, str]:
    from lra.config import compose_config

    cfg = compose_config([f"task={task}", *overrides])
    return OmegaConf.to_container(cfg.task, resolve=True), cfg.paths.data_dir


def cmd_prepare(a: argparse.Namespace) -> int:
    task, data_dir = _task_cfg(a.task, a.overrides)
    spec = get_task(a.task)
    source = a.source or task["source"]
    if source not in spec.sources:
        raise SystemExit(
            f"lra-data: task '{a.task}' has no source '{source}'; valid sources: {', '.join(spec.sources)}"
        )
    path = a.path or task.get("path")
    if not data_path_exists(source, path):
        raise SystemExit(f"lra-data: {'--path' if a.path else 'task.path'} {path} does not exist")
    task = {**task, "source": source, "path": path}
    out = prepared_dir(data_dir, a.task, task["profile"])
    manifest = None if a.force else read_manifest(out)  # --force prepares again whatever is there
    if manifest is not None:
        diff = settings_diff(task, manifest)
        if not diff:
            print(f"{out} is already prepared with these settings (use --force to prepare it again)")
            return 0
        new = prepare_command(task, [o for o in a.overrides if not o.startswith("task.profile=")])
        print(
            f"lra-data: {out} was prepared with other settings ({diff}); prepare these settings under a new "
            f"profile with `{new} task.profile=NEW_NAME` (and pass the same task.profile to lra-train), "
            f"or replace the prepared data with `{prepare_command(task, a.overrides)} --force`",
            file=sys.stderr,
        )
        return 2
    folder = prepare(task, data_dir, source=source, path=path, workers=a.workers)
    _print_info(folder)
    return 0


def generator_flags() -> dict[str, dict]:
    """The command-line flags the generators declare (``lra.data.registry.Generator.options``), each once."""
    flags: dict[str, dict] = {}
    for name in generators():
        for flag, keywords in get_task(name).generator.options.items():
            if flags.setdefault(flag, dict(keywords)) != keywords:
                raise ValueError(f"task '{name}' declares generator flag {flag} unlike another generator does")
    return flags


def flag_name(flag: str) -> str:
    """argparse's attribute name for a flag (``--n`` -> ``n``)."""
    return flag.lstrip("-").replace("-", "_")


def cmd_generate(a: argparse.Namespace) -> int:
    task, _ = _task_cfg(a.task, a.overrides)
    generator = get_task(a.task).generator
    if generator is None:
        raise SystemExit(f"lra-data generate: no generator for '{a.task}' (generators: {', '.join(generators())})")
    options = {flag_name(f): getattr(a, flag_name(f)) for f in generator.options}
    written = generator.write(
        task, a.out, workers=a.workers, options=options, task_config=lambda name: _task_cfg(name, [])[0]
    )
    print(written)
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    task, data_dir = _task_cfg(a.task, a.overrides)
    folder = prepared_dir(data_dir, a.task, task["profile"])
    problems = verify(folder)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{folder}: every file matches its checksum")
    return 1 if problems else 0


def _print_info(folder) -> None:
    m = read_manifest(folder)
    if m is None:
        print(f"{folder}: not prepared")
        return
    print(f"{folder}  (source {m['source']}, preprocessing v{m['version']}, made {m.get('created')})")
    for split, e in m["splits"].items():
        print(f"  {split:6s} {e['n']:8d} examples  shape {e['shape']}  {e['dtype']}")
    print("  meta " + json.dumps(m["meta"]))


def cmd_info(a: argparse.Namespace) -> int:
    task, data_dir = _task_cfg(a.task, a.overrides)
    _print_info(prepared_dir(data_dir, a.task, task["profile"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(
        prog="lra-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    tasks = sorted(TASKS)

    def add(name, fn, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("task", choices=tasks)
        s.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=quickstart task.max_len=1000")
        s.set_defaults(fn=fn)
        return s

    s = add("prepare", cmd_prepare, "turn a raw source into prepared arrays")
    s.add_argument("--source", help="where the data comes from (default: the task config's source)")
    s.add_argument("--path", help="folder of the raw source (the extracted lra_release, aclImdb, ...)")
    s.add_argument("--workers", type=int, default=2, help="worker processes for generators")
    s.add_argument("--force", action="store_true", help="prepare again even if prepared data exists")
    s = add("generate", cmd_generate, f"write generated raw data in the release format ({', '.join(generators())})")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--workers", type=int, default=2)
    for flag, keywords in generator_flags().items():  # each generator's own flags (lra/data/<task>.py)
        s.add_argument(flag, **keywords)
    add("verify", cmd_verify, "check prepared files against the manifest's checksums")
    add("info", cmd_info, "describe the prepared data")
    a, extra = p.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    a.overrides = [*a.overrides, *extra]
    return a.fn(a)


def cli() -> int:
    """The ``lra-data`` command: ``main`` with user errors (missing or bad raw data, corrupt prepared data,
    a bad config value) shown as one message, exit status 2; ``--debug`` shows the traceback."""
    argv = sys.argv[1:]
    debug = debug_requested(argv)
    return run_cli("lra-data", lambda: main([a for a in argv if a != DEBUG_FLAG]), debug=debug)


if __name__ == "__main__":
    sys.exit(cli())
