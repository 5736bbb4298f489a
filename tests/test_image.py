"""LRA Image: grayscale CIFAR-10 from the pickles, a HF parquet copy and TFDS (mock_data + data_source)."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from PIL import Image

from lra.build import pad_id
from lra.config import compose_config
from lra.data import image
from lra.data.prepared import load_split, read_manifest
from tests.task_data import (
    cifar_images,
    cli_prepare,
    mock_tfds,
    prepared_bytes,
    tfds_cifar_records,
    train_tiny,
    write_cifar_batches,
    write_hf_cifar,
)


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def prepare(tmp_path, source, path=None):
    return cli_prepare(tmp_path, "image", source, path)


def tf_gray(r: int, g: int, b: int) -> int:
    """The hand computation: floor((0.2989 R + 0.5870 G + 0.1140 B) * 255.5 / 255), exactly."""
    w = (Fraction("0.2989"), Fraction("0.5870"), Fraction("0.1140"))
    return floor((w[0] * r + w[1] * g + w[2] * b) * Fraction("255.5") / 255)


def test_grayscale_is_tensorflows_formula_not_pils():
    pixels = [(0, 0, 0), (255, 255, 255), (0, 255, 0), (100, 150, 200), (255, 0, 0), (17, 200, 3)]
    rgb = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    for k, p in enumerate(pixels):
        rgb[0, 1, k] = p  # row 1, column k -> token 32 + k (row-major)
    tokens = image.to_gray(rgb)
    assert tokens.shape == (1, 1024) and tokens.dtype == np.uint8
    assert [int(tokens[0, 32 + k]) for k in range(len(pixels))] == [tf_gray(*p) for p in pixels]
    assert [tf_gray(*p) for p in pixels] == [0, 255, 149, 141, 76, 123]
    assert (tokens[0, :32] == 0).all() and (tokens[0, 32 + len(pixels) :] == 0).all()
    pil = Image.fromarray(rgb[0]).convert("L")
    assert pil.getpixel((2, 1)) == 150 != tokens[0, 34]  # PIL rounds pure green up to 150, TF truncates to 149


def test_random_images_match_the_exact_formula():
    rgb, _ = cifar_images()["train"]
    want = np.array([tf_gray(*p) for p in rgb[:2].reshape(-1, 3).tolist()]).reshape(2, 1024)
    np.testing.assert_array_equal(image.to_gray(rgb[:2]), want)


def test_order_is_tfds_hash_order():
    from tensorflow_datasets.core.hashing import Hasher

    for split, n in (("train", 50), ("test", 7)):
        assert image.tfds_order(n, split).tolist() == sorted(range(n), key=Hasher(split).hash_key)
    assert image.n_train(50_000, 0.1) == 45_000 and image.n_train(20, 0.1) == 18


def test_every_source_prepares_the_same_arrays(tmp_path):
    folder = prepare(tmp_path / "f", "folder", write_cifar_batches(tmp_path / "raw"))
    hf = prepare(tmp_path / "h", "hf", write_hf_cifar(tmp_path / "hub"))
    with mock_tfds(tfds_cifar_records()):
        tf = prepare(tmp_path / "t", "tfds")
    assert prepared_bytes(folder) == prepared_bytes(hf) == prepared_bytes(tf)
    images = cifar_images()
    for split, parts in (("train", ("train", "val")), ("test", ("test",))):
        rgb, labels = images[split]
        order = image.tfds_order(len(rgb), split)  # LRA's order: train[:90%] / train[90%:]
        ids = np.concatenate([load_split(folder, p)[0] for p in parts])
        got_labels = np.concatenate([load_split(folder, p)[1] for p in parts])
        np.testing.assert_array_equal(ids, image.to_gray(rgb[order]))
        np.testing.assert_array_equal(got_labels, labels[order])
    m = read_manifest(folder)
    assert {s: e["n"] for s, e in m["splits"].items()} == {"train": 18, "val": 2, "test": 10}
    assert m["splits"]["train"]["dtype"] == "uint8" and m["splits"]["train"]["shape"] == [18, 1024]


def test_bad_tfds_ids_and_missing_folder_are_explained(tmp_path):
    records = tfds_cifar_records()
    records["test"][0]["id"] = "oops"
    with mock_tfds(records), pytest.raises(ValueError, match="example id 'oops' is not 'test_<index>'"):
        image.gray_split(image.read_tfds("test"), "test")
    with pytest.raises(FileNotFoundError, match="no cifar-10-batches-py/test_batch"):
        list(image.read_folder("test", tmp_path))


def test_pixel_tasks_have_no_padding_mask_unless_asked():
    assert pad_id(compose_config(["task=image"]).task) is None
    assert pad_id(compose_config(["task=image", "task.mask_zero_pixels=true"]).task) == 0


def test_training_end_to_end(tmp_path):
    prepare(tmp_path, "folder", write_cifar_batches(tmp_path / "raw"))
    overrides = [
        "experiment=lra/image",
        "model.d_model=16",
        "model.n_heads=2",
        "model.d_mlp=32",
        "model.attn_dropout=0.0",
        "data.batch_size=6",
        "trainer.max_epochs=1",
        "optim.warmup_steps=2",
    ]
    record = train_tiny(tmp_path, overrides)
    assert (record["task"], record["steps"], record["epochs"]) == ("image", 3, 1)  # one epoch: 18 // 6 steps
    assert record["config"]["trainer"]["max_steps"] == -1 and record["config"]["task"]["pad_id"] is None
