"""Contact sheet: images of the original Pathfinder generator beside ours, for 32x32 hard,
32x32 easy and 128x128 hard (Path-X).

    python scripts/pathfinder_contact_sheet.py [--reference DIR] [--seed 0] [--out results/pathfinder/contact_sheet.png]

The original's images are the first ones of a reference sample it made (``--reference``: a
folder holding ``pathfinder32/`` and ``pathfinder128/`` in the release layout; default: the
``shared/data/pathfinder_reference`` found above the repository, else the 20-image copy in
``tests/data/pathfinder_reference``). Ours are images 0, 1, ... of ``--seed``. Each tile is
upscaled with nearest neighbour and captioned with its label (1 = the markers are on one
snake). Takes a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lra.atomic import write_atomic
from lra.data.pathfinder import read_pathfinder
from lra.data.pathfinder_draw import draw
from lra.data.pathfinder_gen import DIFFICULTIES, PARAMS, image_rng

REPO = Path(__file__).resolve().parents[1]
# (resolution, difficulty, tiles per row, upscale)
SECTIONS = [(32, "hard", 8, 4), (32, "easy", 8, 4), (128, "hard", 4, 2)]
GAP, CAPTION, TITLE = 4, 14, 18


def default_reference() -> Path:
    for parent in REPO.parents:
        folder = parent / "shared" / "data" / "pathfinder_reference"
        if (folder / "pathfinder32").is_dir():
            return folder
    return REPO / "tests" / "data" / "pathfinder_reference"


def strip(title: str, images: list[np.ndarray], labels: list[int], scale: int) -> Image.Image:
    """One row of captioned tiles under a title."""
    tile = images[0].shape[0] * scale
    out = Image.new("L", (len(images) * (tile + GAP) + GAP, TITLE + tile + CAPTION + GAP), 96)
    pen = ImageDraw.Draw(out)
    pen.text((GAP, 3), title, fill=255)
    for i, (im, label) in enumerate(zip(images, labels)):
        x = GAP + i * (tile + GAP)
        pen.text((x + 2, TITLE), f"label {label}", fill=255)
        out.paste(Image.fromarray(np.kron(im, np.ones((scale, scale), np.uint8))), (x, TITLE + CAPTION))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=None, help="folder of the original's images (release layout)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/pathfinder/contact_sheet.png"))
    args = ap.parse_args()
    reference = args.reference or default_reference()
    strips = []
    for R, difficulty, n, scale in SECTIONS:
        ref_images, ref_labels = read_pathfinder(reference, R, difficulty, progress=False)
        L = DIFFICULTIES[difficulty]
        ours = [draw(PARAMS[R], L, image_rng(args.seed, R, L, i)) for i in range(n)]
        name = f"{R}x{R} {difficulty} (contour length {L})"
        originals = list(ref_images[:n].reshape(-1, R, R))
        strips.append(strip(f"{name}: original generator", originals, ref_labels[:n], scale))
        strips.append(strip(f"{name}: ours, seed {args.seed}", [s.image for s in ours], [s.label for s in ours], scale))
    out = Image.new("L", (max(s.width for s in strips), sum(s.height for s in strips)), 96)
    y = 0
    for s in strips:
        out.paste(s, (0, y))
        y += s.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, lambda f: out.save(f, format="PNG", optimize=True), needed=out.width * out.height)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB) from {reference}")


if __name__ == "__main__":
    main()
