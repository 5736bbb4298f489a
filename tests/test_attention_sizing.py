"""Attention sizes follow the task's length (configs/attention/*.yaml through lra/resolvers.py)."""

import pytest
from omegaconf import OmegaConf

from lra.config import compose_config
from lra.resolvers import ceil_div, floor_div, sqrt_pow2


def attention(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(list(overrides)).attention, resolve=True)


def test_sqrt_pow2_and_divisions():
    assert [sqrt_pow2(n) for n in (1, 2, 4, 5, 128, 1024, 2000, 2048, 4096, 16384)] == [
        1, 2, 2, 4, 16, 32, 64, 64, 64, 128,
    ]  # fmt: skip
    assert ceil_div(2000, 64) == 32 and ceil_div(128, 16) == 8 and floor_div(7, 8) == 1
    with pytest.raises(ValueError):
        sqrt_pow2(0)


# max_len -> (CAST clusters x size, clustered num_clusters, srformer segment_size)
SIZES = {128: ((8, 16), 16, 16), 2000: ((32, 64), 100, 64), 16384: ((128, 128), 100, 64)}


@pytest.mark.parametrize("max_len", sorted(SIZES))
def test_sizes_follow_the_task_length(max_len):
    (nc, kappa), clusters, segment = SIZES[max_len]
    n = f"task.max_len={max_len}"
    cast = attention("attention=cast", n)
    assert (cast["num_clusters"], cast["cluster_size"]) == (nc, kappa)
    assert attention("attention=clustered", n)["num_clusters"] == clusters
    assert attention("attention=improved_clustered", n)["num_clusters"] == clusters
    assert attention("attention=srformer", n)["segment_size"] == segment


@pytest.mark.parametrize(("name", "key", "lra", "mini"), [("local", "window", 256, 32), ("sparse", "stride", 128, 32),
                                                         ("longformer", "window", 256, 64)])  # fmt: skip
def test_block_sizes_are_lras_at_every_lra_length_and_shrink_for_a_mini_task(name, key, lra, mini):
    for n in (1024, 2000, 4000, 16384):
        assert attention(f"attention={name}", f"task.max_len={n}")[key] == lra
    assert attention(f"attention={name}", "experiment=mini/listops")[key] == mini


def test_presets_size_each_mechanism_for_their_task():
    """The mini presets' 128 tokens against the LRA presets' 2000 (ListOps) and 4000 (Text)."""
    assert attention("experiment=mini/listops", "attention=cast")["cluster_size"] == 16
    assert attention("experiment=lra/listops", "attention=cast")["num_clusters"] == 32
    assert attention("experiment=lra/text", "attention=cast") == {
        "name": "cast", "num_clusters": 63, "cluster_size": 64, "clustering": "topk",
    }  # fmt: skip
    assert attention("experiment=lra/listops", "attention=srformer")["segment_size"] == 64


def test_explicit_options_win():
    assert attention("attention=cast", "attention.num_clusters=8")["num_clusters"] == 8
    cast = attention("attention=cast", "attention.cluster_size=32")  # 2000 tokens: the clusters follow the size
    assert (cast["num_clusters"], cast["cluster_size"]) == (63, 32)
    assert attention("attention=srformer", "task.max_len=128", "attention.segment_size=32")["segment_size"] == 32
