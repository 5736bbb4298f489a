"""Which runs ``lra-table`` puts in one cell: their settings, ``--where`` filters, repeated runs.

A run's *settings* are its resolved config (result.json's ``config``) as dotted keys, without the
keys that cannot change its numbers (``lra.results.NO_EFFECT``: logging, paths, progress bar,
resume) and without the seed. In one (attention, task), runs with the same settings are the seeds
of one cell; runs with other settings get rows of their own, labelled by the keys that differ
(``vanilla (trainer.max_steps=2)``), and a note names those keys. Two finished runs with the same
settings and seed (one job run twice) count once: the newest, by ``finished`` in the record or,
for older records, the file's modification time; the others are named as left out.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import yaml

from lra.results import without_no_effect

log = logging.getLogger("lra.table")
MISSING_KEY = "(not recorded)"
Records = list[tuple[Path, dict]]


def flatten(d: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, value) of every leaf of a nested dict; a list is one value, an empty dict none."""
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _with_record_fields(flat: dict, record: dict) -> dict:
    """Keys an old record's config may lack, from the record's own fields."""
    flat.setdefault("task.name", record["task"])
    flat.setdefault("attention.name", record["attention"])
    for k, v in (record.get("model") or {}).items():
        flat.setdefault(f"model.{k}", v)
    if record.get("precision") is not None:
        flat.setdefault("trainer.precision", record["precision"])
    return flat


def config_of(record: dict) -> dict[str, object]:
    """The run's resolved config as dotted keys (what ``--where`` filters on)."""
    flat = _with_record_fields(dict(flatten(record.get("config") or {})), record)
    flat.setdefault("seed", record["seed"])
    return flat


def settings_of(record: dict) -> dict[str, object]:
    """The run's settings that can change its numbers: the config without NO_EFFECT keys and the seed."""
    flat = _with_record_fields(dict(flatten(without_no_effect(record.get("config") or {}))), record)
    flat.pop("seed", None)
    return flat


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _order(text: str) -> tuple:
    """Numbers in numeric order, then text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


# --- --where ------------------------------------------------------------------------------------


def parse_where(text: str) -> tuple[str, bool, str]:
    """``key=value`` or ``key!=value`` as (key, wanted equal, value); ValueError naming the form."""
    negate = "!=" in text
    key, sep, value = text.partition("!=" if negate else "=")
    if not sep or not key.strip():
        raise ValueError(f"--where {text}: expected key=value or key!=value, e.g. --where trainer.max_steps=1500")
    return key.strip(), not negate, value.strip()


def _equals(value, text: str) -> bool:
    """A config value against the text typed: as written, as YAML (ints, bools, null, lists) or as a number."""
    if _show(value) == text or str(value) == text:
        return True
    try:
        if yaml.safe_load(text) == value:
            return True
    except yaml.YAMLError:
        pass
    try:
        return isinstance(value, int | float) and not isinstance(value, bool) and float(text) == value
    except ValueError:
        return False


def select(records: Records, wheres: list[str]) -> Records:
    """The records whose config matches every ``--where``; a key no run has is refused naming near ones."""
    filters = [parse_where(w) for w in wheres]
    configs = [config_of(r) for _, r in records]
    known = set().union(*configs) if configs else set()
    for key, _, _ in filters:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=3) or sorted(known)[:3]
            raise ValueError(
                f"--where: no run has the key '{key}' (keys are dotted config keys, e.g. {', '.join(near)})"
            )
    return [
        rec
        for rec, cfg in zip(records, configs)
        if all(key in cfg and _equals(cfg[key], value) == equal for key, equal, value in filters)
    ]


# --- repeats and splits ---------------------------------------------------------------------------


def _finished(path: Path, record: dict) -> float:
    finished = record.get("finished")
    return float(finished) if isinstance(finished, int | float) else path.stat().st_mtime


def drop_repeats(records: Records) -> tuple[Records, list[str]]:
    """One record per (attention, task, settings, seed): the newest; notes naming what was left out."""
    newest: dict[tuple, tuple[Path, dict]] = {}
    left_out: dict[tuple, list[Path]] = {}
    for path, r in records:
        key = (r["attention"], r["task"], r["seed"], _key(settings_of(r)))
        if key in newest:
            old = newest[key]
            keep, drop = ((path, r), old) if _finished(path, r) > _finished(*old) else (old, (path, r))
            newest[key] = keep
            left_out.setdefault(key, []).append(drop[0])
        else:
            newest[key] = (path, r)
    notes = []
    for key, dropped in left_out.items():
        attention, task, seed, _ = key
        note = (
            f"{attention}/{task} seed {seed}: {len(dropped) + 1} finished runs of the same settings; counted the"
            f" newest ({newest[key][0]}), left out {', '.join(map(str, sorted(dropped)))}"
        )
        log.warning(note)
        notes.append(note)
    kept = {id(rec[1]) for rec in newest.values()}
    return [(p, r) for p, r in records if id(r) in kept], notes


def row_name(record: dict) -> str:
    """The attention's name, with `` (SPT <objective>)`` for a self-pretrained run (``lra.spt``): SPT
    runs are rows of their own, never averaged with runs trained from scratch."""
    spt = record.get("spt") or {}
    objective = spt.get("objective") or config_of(record).get("spt.objective", "none")
    return record["attention"] if objective in (None, "none") else f"{record['attention']} (SPT {objective})"


def split_rows(records: Records) -> tuple[list[tuple[str, Path, dict]], list[str]]:
    """(row label, path, record) for each record and notes on the cells that were split.

    A row label is ``row_name`` (the attention, and SPT's objective), plus ``(key=value, ...)`` for the
    keys in which the runs of one such row and task differ; a key missing from some records reads
    ``(not recorded)``.
    """
    cells: dict[tuple[str, str], dict[str, list[tuple[Path, dict]]]] = {}
    for path, r in records:
        groups = cells.setdefault((row_name(r), r["task"]), {})
        groups.setdefault(_key(settings_of(r)), []).append((path, r))
    rows, notes = [], []
    for (attention, task), groups in cells.items():
        if len(groups) == 1:
            rows += [(attention, p, r) for p, r in next(iter(groups.values()))]
            continue
        settings = [settings_of(g[0][1]) for g in groups.values()]
        keys = sorted({k for s in settings for k in s if len({_show(x.get(k, MISSING_KEY)) for x in settings}) > 1})
        for s, members in zip(settings, groups.values()):
            label = f"{attention} (" + ", ".join(f"{k}={_show(s.get(k, MISSING_KEY))}" for k in keys) + ")"
            rows += [(label, p, r) for p, r in members]
        values = {k: sorted({_show(s.get(k, MISSING_KEY)) for s in settings}, key=_order) for k in keys}
        differ = "; ".join(f"{k}: " + " vs ".join(v) for k, v in values.items())
        note = f"{attention}/{task}: runs with different settings, shown as separate rows ({differ})"
        log.warning(note)
        notes.append(note)
    return rows, notes
