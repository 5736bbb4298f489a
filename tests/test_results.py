"""The result record (lra.results) against records of older harnesses, and the atomic writes (lra.atomic).

tests/data/results/ holds two real result.json files: ``trunk-f324237.json`` from a tiny run of the
first harness (commit f324237) and ``unversioned-4230d61.json`` from the last one before the record
had a schema (commit 4230d61).
"""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from lra.atomic import publish_dir, write_atomic, write_text_atomic
from lra.results import (
    FIELDS,
    GROUPS,
    RESULT_FIELDS,
    SCHEMA,
    NewerSchema,
    load_result,
    make_record,
    save_result,
)
from lra.table import main as lra_table

OLD = Path(__file__).parent / "data" / "results"
TRUNK, UNVERSIONED = OLD / "trunk-f324237.json", OLD / "unversioned-4230d61.json"


def groups() -> dict[str, dict]:
    """One dict per group, every field a distinct value (its position), as train.py hands them over."""
    position = {f.name: i for i, f in enumerate(FIELDS)}
    return {g: {k: position[k] for k in names} for g, names in GROUPS.items()}


def test_a_record_of_this_harness_round_trips(tmp_path):
    record = make_record(**groups())
    assert list(record) == ["schema", *RESULT_FIELDS] and record["schema"] == SCHEMA
    assert [record[k] for k in RESULT_FIELDS] == list(range(len(FIELDS)))  # each value landed in its own field
    path = save_result(tmp_path, record)
    assert path == tmp_path / "result.json" and json.loads(path.read_text())["schema"] == SCHEMA
    assert load_result(path) == record
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def test_a_measurement_group_with_a_missing_or_unknown_field_is_refused():
    parts = groups()
    del parts["timing"]["timed_steps"]
    with pytest.raises(TypeError, match=r"group 'timing': missing \['timed_steps'\], unknown \[\]"):
        make_record(**parts)
    parts = groups()
    parts["memory"]["peak_mem_gb"] = 1
    with pytest.raises(TypeError, match=r"group 'memory': missing \[\], unknown \['peak_mem_gb'\]"):
        make_record(**parts)
    parts = groups()
    del parts["cpu"]
    with pytest.raises(TypeError, match="groups"):
        make_record(**parts)


def test_records_of_older_harnesses_are_read_with_the_fields_they_have():
    trunk = load_result(TRUNK)
    raw = json.loads(TRUNK.read_text())
    assert "schema" not in raw and trunk["schema"] == 1
    assert {k: trunk[k] for k in raw} == raw  # every value as written
    for name in ("step_time_mean_ms", "threads", "load_avg_end", "world_size", "finished", "resumed_from"):
        assert name not in raw and trunk[name] is None  # fields of later harnesses read as None
    assert set(RESULT_FIELDS) <= set(trunk)
    unversioned = load_result(UNVERSIONED)
    assert unversioned["schema"] == 1 and unversioned["threads"] == json.loads(UNVERSIONED.read_text())["threads"]
    assert (trunk["test_acc"], unversioned["test_acc"]) == (0.109375, 0.078125)


def test_lra_table_reads_old_records(tmp_path, capsys):
    for path in (TRUNK, UNVERSIONED):
        (tmp_path / path.stem).mkdir()
        shutil.copy(path, tmp_path / path.stem / "result.json")
    assert lra_table([str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    means = sorted(float(r["mean"]) for r in rows)
    assert means == [7.8125, 10.9375]  # two listops runs of different settings, each its own row


def test_a_missing_required_field_is_one_line_naming_the_file_and_the_field(tmp_path):
    record = json.loads(TRUNK.read_text())
    del record["test_acc"]
    bad = tmp_path / "result.json"
    bad.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"^{bad}: incomplete result record, missing test_acc$"):
        load_result(bad)
    with pytest.raises(SystemExit, match=rf"^lra-table: {bad}: incomplete result record, missing test_acc\n"):
        lra_table([str(tmp_path)])
    # a field that schema 1 may lack is required of a record that says it is schema 2
    current = make_record(**groups())
    del current["timed_steps"]
    bad.write_text(json.dumps(current))
    with pytest.raises(ValueError, match=rf"^{bad}: incomplete result record, missing timed_steps$"):
        load_result(bad)


def test_a_record_of_a_newer_schema_asks_to_upgrade_the_harness(tmp_path, capsys):
    newer = {**make_record(**groups()), "schema": SCHEMA + 1}
    path = tmp_path / "run" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(newer))
    message = (
        f"{path}: result record of schema {SCHEMA + 1}, newer than this harness reads (schema {SCHEMA});"
        " upgrade the harness"
    )
    with pytest.raises(NewerSchema) as info:
        load_result(path)
    assert str(info.value) == message
    for args in ([], ["--skip-incomplete"]):  # not an incomplete record: never silently left out
        with pytest.raises(SystemExit) as info:
            lra_table([str(tmp_path), *args])
        assert str(info.value) == f"lra-table: {message}"  # one line, no hint


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "points.csv"
    write_text_atomic(path, "old\n")

    def half(f):
        f.write(b"new, but cut ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half, needed=100)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["points.csv"]
    write_atomic(path, lambda f: f.write("né\r\n"), needed=5, text=True)
    assert path.read_bytes() == "né\r\n".encode()  # text: UTF-8, newlines as written


def test_publish_dir_swaps_a_whole_folder(tmp_path):
    folder, new = tmp_path / "tiny", tmp_path / ".tiny.tmp-1"
    folder.mkdir()
    (folder / "old.npy").write_text("old")
    new.mkdir()
    (new / "train.npy").write_text("new")
    publish_dir(new, folder)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"] and [p.name for p in folder.iterdir()] == ["train.npy"]
