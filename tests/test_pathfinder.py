"""Pathfinder generator (lra.data.pathfinder_gen, pathfinder_draw) and release reader (lra.data.pathfinder)."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lra.data.pathfinder import find_release_root, read_pathfinder, split_indices
from lra.data.pathfinder_draw import draw
from lra.data.pathfinder_gen import DIFFICULTIES, FOLDERS, PARAMS, generate, image_rng, metadata_line, png_bytes

# ----------------------------------------------------------------------------- reader


def _mini_release(root, resolution=4):
    """lra_release/lra_release/pathfinder4/curv_contour_length_14 with metadata files 0, 2, 10
    (natural order 0 < 2 < 10), five PNGs and one empty image. Returns the expected images and labels."""
    base = root / "lra_release" / "lra_release" / f"pathfinder{resolution}" / "curv_contour_length_14"
    rng = np.random.default_rng(0)
    expected, labels = [], []
    for batch, n in ((0, 2), (2, 2), (10, 2)):
        (base / "imgs" / str(batch)).mkdir(parents=True)
        lines = []
        for j in range(n):
            label = (batch + j) % 2
            path = base / "imgs" / str(batch) / f"sample_{j}.png"
            if (batch, j) == (2, 1):
                path.write_bytes(b"")  # the release has one empty image
            else:
                img = rng.integers(0, 256, (resolution, resolution), dtype=np.uint8)
                path.write_bytes(png_bytes(img))
                expected.append(img.reshape(-1))
                labels.append(label)
            lines.append(f"imgs/{batch} sample_{j}.png {j} {label} 1.0 14 4 2 0.5 1 1")
        (base / "metadata").mkdir(exist_ok=True)
        (base / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
    return base, np.stack(expected), np.array(labels)


def test_reader_reads_nested_release_in_natural_order_and_skips_empty(tmp_path, caplog):
    base, expected, labels = _mini_release(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lra.data.pathfinder"):
        images, got = read_pathfinder(tmp_path, 4, "hard", progress=False)
    assert images.dtype == np.uint8 and images.shape == (5, 16)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(got, labels)
    assert "skipped 1 empty" in caplog.text
    # the same folder named directly, one level down, and by its release name
    for path in (tmp_path / "lra_release", tmp_path / "lra_release" / "lra_release"):
        assert find_release_root(path) == tmp_path / "lra_release" / "lra_release"
        np.testing.assert_array_equal(read_pathfinder(path, 4, "curv_contour_length_14", progress=False)[0], expected)


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="pathfinder<R>/"):
        find_release_root(tmp_path)
    base, _, _ = _mini_release(tmp_path)
    meta = base / "metadata" / "2.npy"
    good = meta.read_text()
    lines = good.splitlines()
    meta.write_text(f"{lines[0]}\nimgs/2 sample_1.png\n")  # no label field
    with pytest.raises(ValueError, match=r"2\.npy:2: malformed"):
        read_pathfinder(tmp_path, 4, progress=False)
    meta.write_text(good)
    (base / "imgs" / "0" / "sample_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"imgs/0/sample_1\.png .*not a readable PNG"):
        read_pathfinder(tmp_path, 4, progress=False)
    (base / "imgs" / "0" / "sample_1.png").write_bytes(png_bytes(np.zeros((5, 4), np.uint8)))
    with pytest.raises(ValueError, match=r"imgs/0/sample_1\.png .*0\.npy:2\) is 4x5, expected 4x4"):
        read_pathfinder(tmp_path, 4, progress=False)


REFERENCE = Path(__file__).parent / "data" / "pathfinder_reference"


@pytest.mark.parametrize("R, difficulty", [(32, "hard"), (32, "easy"), (128, "hard")])
def test_reader_reads_images_of_the_original_generator(R, difficulty):
    """20 images per folder made by the original generator (tests/data/pathfinder_reference)."""
    images, labels = read_pathfinder(REFERENCE, R, difficulty, progress=False)
    base = REFERENCE / f"pathfinder{R}" / FOLDERS[difficulty]
    lines = [line.split() for line in (base / "metadata" / "0.npy").read_text().splitlines()]
    assert images.shape == (20, R * R) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [int(f[3]) for f in lines])
    for row, f in zip(images, lines):
        with Image.open(base / f[0] / f[1]) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(row, np.asarray(im).reshape(-1))
    assert set(labels) == {0, 1} and images.min() == 0 and images.max() == 255


def test_split_indices():
    parts = split_indices(1000, seed=3)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    np.testing.assert_array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(1000))
    again = split_indices(1000, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(split_indices(1000, seed=4)["val"], parts["val"])
    assert [len(v) for v in split_indices(200_000).values()] == [160_000, 20_000, 20_000]


# ----------------------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def samples():
    """{(R, contour length): images}: 100 of each difficulty at 32, 12 hard ones at 128 (about 2 s)."""
    out = {(32, L): [draw(PARAMS[32], L, image_rng(0, 32, L, i)) for i in range(100)] for L in (6, 9, 14)}
    out[128, 14] = [draw(PARAMS[128], 14, image_rng(0, 128, 14, i)) for i in range(12)]
    return out


def test_draw_is_a_function_of_the_seed():
    for R in (32, 128):
        a, b = (draw(PARAMS[R], 9, image_rng(5, R, 9, 7)) for _ in range(2))
        assert np.array_equal(a.image, b.image) and a.label == b.label
        np.testing.assert_array_equal(a.markers, b.markers)
        assert not np.array_equal(a.image, draw(PARAMS[R], 9, image_rng(5, R, 9, 8)).image)


def test_labels_are_a_fair_coin(samples):
    labels = np.array([s.label for L in (6, 9, 14) for s in samples[32, L]])
    # Binomial(300, 0.5): standard deviation of the mean 0.029; 4 sigma is a false alarm once in 15,000 runs.
    assert abs(labels.mean() - 0.5) < 4 * np.sqrt(0.25 / len(labels))


@pytest.mark.parametrize("R, L", [(32, 6), (32, 9), (32, 14), (128, 14)])
def test_images_markers_and_targets(samples, R, L):
    for s in samples[R, L]:
        assert s.image.dtype == np.uint8 and s.image.shape == (R, R)
        assert s.image.min() == 0 and s.image.max() == 255
        assert s.targets.dtype == np.float32 and s.targets.shape == (2, R, R)
        for y, x in s.markers:  # a bright disc: bright centre and 4-neighbours
            assert s.image[y, x] >= 200
            assert min(s.image[y + dy, x + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))) >= 128
        # the first marker sits on a target snake's tail, the second on the far end of the same
        # snake (label 1) or of the other one (label 0): both on a stroke of those snakes
        (y0, x0), (y1, x1) = s.markers
        on = s.targets > 0.3
        if s.label == 1:
            assert any(on[t, y0, x0] and on[t, y1, x1] for t in (0, 1))
        else:
            assert (on[0, y0, x0] and on[1, y1, x1]) or (on[1, y0, x0] and on[0, y1, x1])


def test_metadata_line_matches_the_release():
    # a line of the release's pathfinder32/curv_baseline/metadata/0.npy
    assert metadata_line(PARAMS[32], DIFFICULTIES["easy"], 0, 0, 0, 1) == "imgs/0 sample_0.png 0 0 1.0 6 2 2 0.5 1 1"
    assert metadata_line(PARAMS[128], 14, 3, 7, 1, 2) == "imgs/3 sample_7.png 7 1 1.8 14 4 5 1.5 2 1"


def test_generate_is_deterministic_and_reads_back(tmp_path):
    kw = dict(resolution=32, difficulty="inter", n=7, seed=11, batch_size=3, progress=False)
    one = generate(tmp_path / "w1", workers=1, **kw)
    two = generate(tmp_path / "w2", workers=2, **kw)
    assert one == tmp_path / "w1" / "pathfinder32" / "curv_contour_length_9"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 7 + 3  # 7 PNGs, metadata 0, 1, 2; no temporary files left behind
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)

    images, labels = read_pathfinder(tmp_path / "w1", 32, "inter", progress=False)
    expected = [draw(PARAMS[32], 9, image_rng(11, 32, 9, g)) for g in range(7)]
    np.testing.assert_array_equal(images, np.stack([s.image.reshape(-1) for s in expected]))
    np.testing.assert_array_equal(labels, [s.label for s in expected])
    assert (one / "imgs" / "2" / "sample_0.png").read_bytes() == png_bytes(expected[6].image)
