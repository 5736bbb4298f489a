"""Contact sheet of generated Pathfinder images: 4 x 8 at 32x32 and 2 x 4 at 128x128.

    python scripts/pathfinder_contact_sheet.py [--difficulty hard] [--out results/pathfinder/contact_sheet.png]

Each tile is upscaled with nearest neighbour and captioned with its label (1 = the markers
are on one snake). Takes a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lra.data.pathfinder_gen import DIFFICULTIES, PARAMS, draw, image_rng


def sheet(resolution: int, rows: int, cols: int, scale: int, contour_length: int, seed: int) -> Image.Image:
    """rows x cols tiles of R * scale pixels, each with a caption strip above it."""
    gap, caption = 4, 14
    tile = resolution * scale
    out = Image.new("L", (cols * (tile + gap) + gap, rows * (tile + caption + gap) + gap), 96)
    pen = ImageDraw.Draw(out)
    for i in range(rows * cols):
        s = draw(PARAMS[resolution], contour_length, image_rng(seed, resolution, contour_length, i))
        r, c = divmod(i, cols)
        x, y = gap + c * (tile + gap), gap + r * (tile + caption + gap)
        pen.text((x + 2, y + 1), f"{resolution}px  label {s.label}", fill=255)
        big = np.kron(s.image, np.ones((scale, scale), np.uint8))  # nearest-neighbour upscale
        out.paste(Image.fromarray(big), (x, y + caption))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--difficulty", default="hard", choices=sorted(DIFFICULTIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/pathfinder/contact_sheet.png"))
    args = ap.parse_args()
    L = DIFFICULTIES[args.difficulty]
    small = sheet(32, 4, 8, 4, L, args.seed)
    large = sheet(128, 2, 4, 2, L, args.seed)
    out = Image.new("L", (max(small.width, large.width), small.height + large.height), 96)
    out.paste(small, (0, 0))
    out.paste(large, (0, small.height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
