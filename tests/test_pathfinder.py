"""Pathfinder generator (lra.data.pathfinder_gen) and release reader (lra.data.pathfinder)."""

import logging

import numpy as np
import pytest

from lra.data.pathfinder import find_release_root, read_pathfinder, split_indices
from lra.data.pathfinder_gen import DIFFICULTIES, PARAMS, draw, generate, image_rng, metadata_line, png_bytes

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


def test_split_indices():
    parts = split_indices(1000, seed=3)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    np.testing.assert_array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(1000))
    again = split_indices(1000, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(split_indices(1000, seed=4)["val"], parts["val"])
    assert [len(v) for v in split_indices(200_000).values()] == [160_000, 20_000, 20_000]


# ----------------------------------------------------------------------------- generator


def _connected(mask: np.ndarray, a, b) -> bool:
    """Whether pixels a and b are joined by a 4-connected path inside mask (iterative dilation)."""
    reach = np.zeros_like(mask)
    reach[tuple(a)] = mask[tuple(a)]
    while True:
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= mask
        if grown[tuple(b)] or np.array_equal(grown, reach):
            return bool(grown[tuple(b)])
        reach = grown


def test_connected_helper():
    mask = np.zeros((5, 5), bool)
    mask[0, :] = mask[:, 4] = True  # an L from (0, 0) to (4, 4)
    mask[4, 0] = True
    assert _connected(mask, (0, 0), (4, 4))
    assert not _connected(mask, (0, 0), (4, 0))
    mask[3, 1] = True  # touches (4, 0) only diagonally: still not 4-connected
    assert not _connected(mask, (4, 0), (0, 0))


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
        assert s.targets.dtype == bool and s.targets.shape == (R, R)
        for y, x in s.markers:  # a bright disc: (nearly) the brightest value at the centre, bright 4-neighbours
            assert s.image[y, x] >= 240
            assert min(s.image[y + dy, x + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))) >= 160
            assert s.targets[y, x]
        assert _connected(s.targets, *s.markers) == (s.label == 1), "markers joined by a target snake iff label 1"


def test_pixel_statistics(samples):
    # Bands around the means measured on 400 images at 32 and 200 at 128 (seeds 1 and 2, hard):
    # non-zero fraction 0.578 (per image sd 0.032) and 0.136 (sd 0.0045); mean non-zero intensity
    # 41.5 (sd 1.6) and 61.8 (sd 0.9). Each band is at least 5 standard errors of the fixture's
    # mean (100 and 12 images) wide on each side. Most non-zero pixels are the faint (1..10)
    # fringes of the Lanczos downsampling, as in the original.
    bands = {32: ((0.561, 0.595), (40.6, 42.4)), 128: ((0.129, 0.143), (60.3, 63.3))}
    for R, ((f_lo, f_hi), (m_lo, m_hi)) in bands.items():
        images = np.stack([s.image for s in samples[R, 14]])
        nonzero = images > 0
        assert f_lo < nonzero.mean() < f_hi
        assert m_lo < np.mean([im[nz].mean() for im, nz in zip(images, nonzero)]) < m_hi


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
