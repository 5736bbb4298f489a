import statistics

import numpy as np
import pytest

from lra.data import listops
from lra.data.tasks import find_release_file

SMALL = listops.GeneratorConfig(
    n_train=300, n_val=30, n_test=30, min_length=10, max_length=120, max_depth=5, max_args=5, seed=3
)


def independent_eval(text: str) -> int:
    """Evaluate a serialised expression with a stack, ignoring parentheses."""
    stack: list[tuple[str, list[int]]] = [("ROOT", [])]
    for tok in text.split():
        if tok.startswith("["):
            stack.append((tok, []))
        elif tok == "]":
            op, args = stack.pop()
            value = {"[MIN": min(args), "[MAX": max(args), "[MED": int(statistics.median(args)), "[SM": sum(args) % 10}[
                op
            ]
            stack[-1][1].append(value)
        elif tok.isdigit():
            stack[-1][1].append(int(tok))
    (value,) = stack[0][1]
    return value


@pytest.fixture(scope="module")
def splits():
    return listops.generate(SMALL, progress=False)


def test_every_label_is_the_expression_value(splits):
    for rows in splits.values():
        for text, label in rows:
            assert independent_eval(text) == label


def test_lengths_sizes_and_no_duplicates(splits):
    assert [len(splits[s]) for s in listops.SPLITS] == [300, 30, 30]
    texts = [t for rows in splits.values() for t, _ in rows]
    assert len(set(texts)) == len(texts)
    for t in texts:
        n = len(listops.tokenize(t))  # the token count the generator bounds: 2 per operator + 1 per digit
        assert SMALL.min_length < n < SMALL.max_length


def test_same_seed_same_data_whatever_the_workers(splits):
    assert listops.generate(SMALL, workers=2, progress=False) == splits
    other = listops.generate(listops.GeneratorConfig(**{**listops.config_dict(SMALL), "seed": 4}), progress=False)
    assert other != splits


def test_release_example_tokenises_like_lra():
    assert listops.tokenize("( ( ( [MAX 2 ) 9 ) ] )") == ["[MAX", "2", "9", "X"]
    ids = listops.encode(["( ( ( [MAX 2 ) 9 ) ] )", "[FOO 3"], max_len=6)
    np.testing.assert_array_equal(ids, [[11, 3, 10, 15, 0, 0], [16, 4, 0, 0, 0, 0]])
    assert listops.encode(["1 2 3 4"], max_len=2).tolist() == [[2, 3]]


def test_release_files_round_trip_through_nested_release_folder(tmp_path, splits):
    listops.write_release(tmp_path / "lra_release" / "lra_release", splits)
    path = find_release_file(tmp_path, "listops-1000/basic_val.tsv")
    assert list(listops.read_tsv(path)) == splits["val"]
    first = path.read_text().splitlines()
    assert first[0] == "Source\tTarget" and first[1] == f"{splits['val'][0][0]}\t{splits['val'][0][1]}"


def test_malformed_tsv_names_file_and_line(tmp_path):
    bad = tmp_path / "basic_train.tsv"
    bad.write_text("Source\tTarget\n[MAX 1 ]\t1\n[MAX 2 ]\n")
    with pytest.raises(ValueError, match=r"basic_train.tsv:3: expected 2"):
        list(listops.read_tsv(bad))
    bad.write_text("Source\tTarget\n[MAX 1 ]\t12\n")
    with pytest.raises(ValueError, match=r"basic_train.tsv:2: label 12 is outside"):
        list(listops.read_tsv(bad))


def test_missing_release_names_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="lra_release/lra_release/listops-1000"):
        find_release_file(tmp_path, "listops-1000/basic_train.tsv")


def test_release_bytes_are_what_lras_csv_writer_writes(tmp_path, splits):
    """LRA writes the TSVs with ``csv.writer(f, delimiter='\\t')``: tab-separated, every line ending in CRLF."""
    folder = listops.write_release(tmp_path, splits)
    rows = splits["test"]
    expected = b"Source\tTarget\r\n" + b"".join(f"{text}\t{label}\r\n".encode() for text, label in rows)
    assert (folder / "basic_test.tsv").read_bytes() == expected
    assert list(listops.read_tsv(folder / "basic_test.tsv")) == rows
