"""lra.bench_layer: one layer's forward + backward per (attention, length), options sized at each N."""

import json

import pytest

from lra.bench_layer import main
from lra.bench_report import read_csv


def test_options_follow_the_length_and_given_options_win(tmp_path, capsys):
    out = tmp_path / "layer.csv"
    args = ["--attention", "cast", 'cast:{"clustering": "sa_topk"}', "--lengths", "64", "144", "--batch", "1"]
    small = ["--d-model", "16", "--heads", "2", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    main([*args, *small, "--csv", str(out)])
    rows = read_csv(out)
    assert [r["status"] for r in rows] == ["ok"] * 4, capsys.readouterr().out
    opts = [json.loads(r["options"]) for r in rows]
    # configs/attention/cast.yaml: kappa = smallest power of two with kappa^2 >= N, Nc = ceil(N / kappa)
    assert [(o["num_clusters"], o["cluster_size"]) for o in opts] == [(8, 8), (9, 16), (8, 8), (9, 16)]
    assert [o["clustering"] for o in opts] == ["topk", "topk", "sa_topk", "sa_topk"]
    assert all(float(r["median_ms"]) > 0 and float(r["peak_mem_mb"]) >= 0 for r in rows)


def test_an_unknown_attention_is_one_line():
    with pytest.raises(SystemExit, match="no such attention 'nosuch'"):
        main(["--attention", "nosuch", "--lengths", "64"])
