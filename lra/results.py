"""The run record (result.json): its fields, its schema version, writing and reading; the settings
that change its numbers.

A record is a JSON object: ``schema`` (the version of this field list) and one value per field of
``FIELDS``, in that order. Each field belongs to one *group*, the part of the harness that measures
it (``timing`` is ``lra.callbacks.StepTimer.summary()``, ``cpu`` is ``lra.measure.cpu_conditions()``
plus the load averages, ...); ``make_record`` takes one dict per group and refuses a group with a
missing or an unknown key, so a new field is one line here plus the code that measures it.

Versions. A field's ``since`` is the first schema whose every record has it. Records written before
the schema existed carry no ``schema`` key: they are schema 1, and had only the ``since=1`` fields
for certain (later fields came in one by one). ``load_result`` reads a record of schema s <= SCHEMA,
requires the fields with ``since <= s`` and gives the later ones as None; a record of a newer schema
than this harness knows is refused with one line naming the file and saying to upgrade the harness.
Raise ``SCHEMA`` when a field is added and give the field ``since=SCHEMA``.
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lra.atomic import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
SCHEMA = 3
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Field:
    name: str
    group: str
    meaning: str
    since: int = 1


FIELDS = (
    Field("task", "run", "task name (a configs/task file)"),
    Field("attention", "run", "attention mechanism, its registry name"),
    Field("seed", "run", "the run's seed"),
    Field("model", "run", "model dimensions: n_layers, d_model, n_heads, d_mlp (the width used: model.match_params)"),
    Field("params", "run", "number of model parameters"),
    # schema 3 (tune): the parameter budget
    Field("params_vs_vanilla", "run", "params / vanilla's at the same task and model size (lra.build)", since=3),
    Field("steps", "training", "optimizer steps taken"),
    Field("epochs", "training", "Lightning's trainer.current_epoch when training ended"),
    Field("train_loss", "training", "mean training loss over the last trainer.log_every_n_steps steps"),
    Field("val_acc", "accuracy", "best validation accuracy (fraction; the final weights' if none ran)"),
    Field("test_acc", "accuracy", "test accuracy of the best validation checkpoint (fraction)"),
    Field("val_examples", "accuracy", "examples val_acc covers", since=2),
    Field("test_examples", "accuracy", "examples test_acc covers", since=2),
    Field("step_time_ms", "timing", "median optimizer-step time over the timed steps (null: none timed)"),
    Field("step_time_mean_ms", "timing", "mean optimizer-step time over the timed steps", since=2),
    Field("tokens_per_s", "timing", "real (non-padding) tokens of the timed steps over their total time"),
    Field("all_tokens_per_s", "timing", "every position, padding included, over the same time", since=2),
    Field("samples_per_s", "timing", "examples of the timed steps over their total time"),
    Field("timed_steps", "timing", "optimizer steps timed (the first measure.warmup_steps are not)", since=2),
    Field("peak_mem_mb", "memory", "peak memory in MB: CUDA allocator peak, or process peak RSS on CPU"),
    # self-pretraining (lra/spt.py, lra/spt_stage.py); the other fields above are the fine-tuning stage's
    Field(
        "spt",
        "spt",
        "null (spt=none) or the pretraining stage: objective, mask_ratio, steps, best_val_loss,"
        " val_token_acc, checkpoint (its best.ckpt), train_loss, step_time_ms, step_time_mean_ms, timed_steps,"
        " tokens_per_s, peak_mem_mb",
        since=3,
    ),
    Field("device", "job", "GPU name, or 'cpu (<n> cores)'"),
    Field("world_size", "job", "ranks (processes) of the job", since=2),
    Field("batch_size", "job", "examples per rank per batch", since=2),
    Field("global_batch", "job", "examples per optimizer step over all ranks and accumulated batches", since=2),
    Field("precision", "job", "Lightning's precision, e.g. 32-true"),
    Field("wall_s", "provenance", "seconds from start to the record"),
    Field("threads", "cpu", "torch's intra-op threads", since=2),
    Field("cpus_available", "cpu", "CPUs this process may run on", since=2),
    Field("load_avg_start", "cpu", "1/5/15-minute load averages at the start", since=2),
    Field("load_avg_end", "cpu", "1/5/15-minute load averages at the end", since=2),
    Field("git_sha", "provenance", "the harness's commit (-dirty: uncommitted changes), null outside git"),
    Field("finished", "provenance", "Unix time the record was made (lra-table keeps the newest repeat)", since=2),
    Field("overrides", "provenance", "the command line's config overrides"),
    Field("resumed_from", "provenance", "run folders a resumed run continued, oldest first ([]: not resumed)", since=2),
    Field("config", "provenance", "the resolved config"),
)
GROUPS = {g: tuple(f.name for f in FIELDS if f.group == g) for g in dict.fromkeys(f.group for f in FIELDS)}
RESULT_FIELDS = tuple(f.name for f in FIELDS)  # what every record of this schema holds (besides schema)
LATER_FIELDS = tuple(f.name for f in FIELDS if f.since > 1)  # fields records of schema 1 may lack


def make_record(**groups: dict) -> dict:
    """A record of this schema from one dict per group (``GROUPS``), its keys exactly that group's."""
    if set(groups) != set(GROUPS):
        raise TypeError(f"result record: groups {sorted(groups)}, expected {sorted(GROUPS)}")
    for group, values in groups.items():
        missing, unknown = set(GROUPS[group]) - set(values), set(values) - set(GROUPS[group])
        if missing or unknown:
            raise TypeError(
                f"result record group '{group}': missing {sorted(missing)}, unknown {sorted(unknown)}"
                " (fields are declared in lra.results.FIELDS)"
            )
    values = {k: v for part in groups.values() for k, v in part.items()}
    return {"schema": SCHEMA, **{name: values[name] for name in RESULT_FIELDS}}


def save_result(run_dir: str | Path, record: dict) -> Path:
    """Write ``record`` (of this schema, complete) to ``run_dir/result.json`` atomically; the path."""
    missing = [k for k in ("schema", *RESULT_FIELDS) if k not in record]
    if missing or record["schema"] != SCHEMA:
        raise TypeError(f"not a schema {SCHEMA} result record (missing {missing}); build it with make_record")
    path = Path(run_dir) / RESULT_FILE
    write_json_atomic(path, record)
    return path


class NewerSchema(ValueError):
    """A record written by a newer harness than this one."""


def load_result(path: str | Path) -> dict:
    """A result.json as a dict with every field of ``FIELDS`` (fields newer than the record's schema
    are None) and its ``schema``. ValueError naming the file: not JSON, or a field its schema requires
    missing; ``NewerSchema``: written by a newer harness."""
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: unreadable result record ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: unreadable result record (a JSON {type(record).__name__}, not an object)")
    schema = record.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise ValueError(f"{path}: unreadable result record (schema {schema!r} is not a version number)")
    if schema > SCHEMA:
        raise NewerSchema(
            f"{path}: result record of schema {schema}, newer than this harness reads (schema {SCHEMA});"
            " upgrade the harness"
        )
    missing = [f.name for f in FIELDS if f.since <= schema and f.name not in record]
    if missing:
        raise ValueError(f"{path}: incomplete result record, missing {', '.join(missing)}")
    return {"schema": schema, **{f.name: record.get(f.name) for f in FIELDS}, **record}


# Keys of the resolved config that change how a run is shown, fed or stored, never its numbers: left
# out of a run's fingerprint (lra.resume: which runs are the same config) and of the settings
# lra-table compares (which runs may share a cell).
NO_EFFECT = (
    "resume",
    "logger",
    "paths.runs",
    "paths.multirun",
    "paths.data_dir",
    "data.num_workers",
    "data.prepare_workers",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "checkpoint",
)


def without_no_effect(config: dict) -> dict:
    """A copy of a resolved config (plain containers) without the ``NO_EFFECT`` keys, without
    ``spt`` and ``task.spt_mask_ratio`` when ``spt.objective`` is none, and without
    ``model.match_params`` when it is null (the width as configured: what every run did before the
    switch existed), so that older records and runs compare and resume as the same settings."""
    c = copy.deepcopy(config)
    for key in NO_EFFECT:
        *parents, last = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    spt = c.get("spt")
    if isinstance(spt, dict) and spt.get("objective", "none") == "none":
        # trained from scratch: the self-pretraining settings (lra/spt.py) change nothing, so a run
        # without them is the same config as one recorded before they existed
        c.pop("spt")
        if isinstance(c.get("task"), dict):
            c["task"].pop("spt_mask_ratio", None)
    model = c.get("model")
    if isinstance(model, dict) and model.get("match_params", "absent") is None:
        model.pop("match_params")
    return c


def git_sha() -> str | None:
    """The harness's commit, with ``-dirty`` when the working tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
