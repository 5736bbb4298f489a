"""Task registry: every task declares itself in its own module, ``lra/data/<task>.py``.

    register_task("listops", title="ListOps", column=1, average=True, sources=("generate", "release"),
                  readers={"release": read_release}, prepare=prepare, expected_meta=expected_meta,
                  generated_source="generate", generator=Generator(write_generated))

A declaration (``TaskSpec``) holds everything the harness needs to know about a task, so no other
module names one: ``lra-data`` (its subcommands' task choices, the generators), ``lra-train``'s
config check and data preparation, ``lra-table`` (columns, titles, the 5-task mean) and
``scripts/reproduce_table.py`` (one sweep per task) all read it. ``lra.data.tasks`` imports the
task modules, so importing it fills the registry.

The three views below are live: ``TASK_NAMES`` (registered names in column order), ``TITLES``
(name -> column title) and ``AVERAGED`` (the names that count in the LRA paper's mean) read the
registry at each use, so a task registered after they were imported appears in them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SYNTHETIC = "synthetic"  # the source whose raw files lra/data/synthetic.py makes up in a real format


@dataclass(frozen=True)
class Generator:
    """What ``lra-data generate <task> --out DIR`` runs: write generated raw data in a source's layout.

    write(task, out, *, workers, options, task_config) -> the line ``lra-data`` prints (what was
        written and the ``lra-data prepare`` command that reads it); ``task`` is the resolved task
        config, ``options`` the value of each flag in ``options`` (None when not given, unless the
        flag has a default), ``task_config(name)`` the resolved config of a task.
    options: the generator's own command-line flags, each flag -> its ``argparse`` keywords
        (``{"--n": {"type": int, "help": "number of images"}}``); generators may share a flag only
        with the same keywords.
    """

    write: Callable[..., str]
    options: Mapping[str, Mapping] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One task's declaration.

    title: its column title in ``lra-table``; column: its column position (LRA's order: ListOps 1 to
        Path-X 6; ties by name).
    average: whether it counts in the LRA paper's 5-task mean (every LRA task but Path-X).
    sources: where its raw data can come from (``task.source``, ``lra-data prepare --source``).
    readers: for each source with raw files, the function that reads them (signature per task).
    prepare(task, data_dir, *, source, path, read, meta, workers) -> the prepared folder, written
        with ``lra.data.prepared.PreparedWriter``; ``read`` is the reader of the source (of
        ``stand_in`` for the synthetic source, None for a generated one), ``path`` where it reads,
        ``meta`` the settings its manifest records.
    expected_meta(task) -> the preprocessing settings a prepared folder must have been made with.
    generated_source: the source that needs no download (prepared on first use), if any.
    stand_in: the source whose reader reads what ``lra.data.synthetic`` writes for this task (then
        ``"synthetic"`` is one of its sources).
    generator: what ``lra-data generate`` runs for it, if it has one.
    """

    name: str
    title: str
    column: int
    average: bool
    sources: tuple[str, ...]
    readers: Mapping[str, Callable]
    prepare: Callable[..., Path]
    expected_meta: Callable[[dict], dict]
    generated_source: str | None = None
    stand_in: str | None = None
    generator: Generator | None = None


TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, **declares) -> TaskSpec:
    """Add task ``name`` with the fields of ``TaskSpec``; an inconsistent declaration raises ValueError."""
    spec = TaskSpec(name=name, **declares)
    if name in TASKS and TASKS[name] != spec:
        raise ValueError(f"task '{name}' is registered twice")
    sources = ", ".join(spec.sources)
    outside = [s for s in spec.readers if s not in spec.sources]
    problems = [f"a reader for '{s}', which is not in its sources ({sources})" for s in outside]
    if spec.generated_source not in (None, *spec.sources):
        problems.append(f"generated_source '{spec.generated_source}', which is not in its sources ({sources})")
    if spec.stand_in is not None and spec.stand_in not in spec.readers:
        problems.append(f"stand_in '{spec.stand_in}', a source without a reader")
    if (spec.stand_in is None) == (SYNTHETIC in spec.sources):
        problems.append(f"'{SYNTHETIC}' in sources without a stand_in or the reverse (declare both or neither)")
    if problems:
        raise ValueError(f"task '{name}' declares {'; '.join(problems)}")
    TASKS[name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The declaration of task ``name``; an unknown name raises KeyError listing the valid ones."""
    if name not in TASKS:
        raise KeyError(f"unknown task '{name}'; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def _in_columns(keep: Callable[[TaskSpec], bool]) -> list[str]:
    return [s.name for s in sorted(TASKS.values(), key=lambda s: (s.column, s.name)) if keep(s)]


class TaskNames(Sequence[str]):
    """The names of the registered tasks ``keep`` accepts, in column order, read at each use."""

    def __init__(self, keep: Callable[[TaskSpec], bool] = lambda spec: True) -> None:
        self.keep = keep

    def __getitem__(self, index):
        return _in_columns(self.keep)[index]

    def __len__(self) -> int:
        return len(_in_columns(self.keep))

    def __repr__(self) -> str:
        return repr(tuple(self))


class Titles(Mapping[str, str]):
    """Task name -> its column title, for the registered tasks, read at each use."""

    def __getitem__(self, name: str) -> str:
        return TASKS[name].title

    def __iter__(self) -> Iterator[str]:
        return iter(_in_columns(lambda spec: True))

    def __len__(self) -> int:
        return len(TASKS)


TASK_NAMES = TaskNames()
AVERAGED = TaskNames(lambda spec: spec.average)
TITLES = Titles()


def generators() -> list[str]:
    """The names of the tasks ``lra-data generate`` can write, sorted."""
    return sorted(name for name, spec in TASKS.items() if spec.generator is not None)
