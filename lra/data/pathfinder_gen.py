"""Pathfinder / Path-X generator (Linsley et al. 2018, with the parameters LRA lists).

A black canvas with dashed curves ("snakes") of short straight dashes ("paddles"). Two
target snakes of ``contour_length`` paddles start ``seed_distance`` apart near the centre,
distractor snakes of ``contour_length // 3`` paddles fill the rest, and two round markers
sit on snake ends: both ends of one target snake (label 1) or ends of the two different
target snakes (label 0). Drawing follows drewlinsley/pathfinder (snakes.py, snakes2.py):

- a paddle continues from a pivot ``margin`` past the end of the previous one; its far
  end is one of the integer points on a circle of radius ``paddle_length + margin`` around
  the pivot, drawn with weight ``cos(min(continuity * turn, pi/2))**2`` (``turn`` = angle
  to the previous paddle), so a larger ``continuity`` means straighter snakes;
- every paddle keeps a margin from everything already drawn (the previous paddle of the
  same snake excepted); a snake with no free continuation is abandoned: the target pair is
  redrawn from scratch, a distractor retried a few times and then skipped;
- strokes and markers are drawn at ``antialias`` times the resolution and downsampled with
  PIL's Lanczos filter (the original's ``scipy.misc.imresize(..., interp="lanczos")``), each
  paddle separately, and combined with ``max``; the image is min-max scaled to 0..255. The
  filter's faint fringes (1..10 of 255) leave about 58% of the pixels of a 32x32 image
  non-zero (14% at 128x128).

Speed comes from precomputing everything that depends only on the parameters (one "bank"
per margin): the downsampled stroke of every seed orientation and every continuation
candidate, its footprint (the pixels within the margin radius of the snake's centre line)
and the footprint grown by one pixel. Placing a paddle is then a few operations on a
small window of an occupancy grid, and all continuation candidates are tested at once
with one matrix-vector product. Pure functions of a ``numpy.random.Generator``.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
import multiprocessing
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathfinderParams:
    """Drawing parameters of one resolution (names follow the parameters LRA lists for its Pathfinder sets)."""

    resolution: int
    padding: int  # border band (pixels) no stroke may enter
    antialias: int  # strokes are drawn at this multiple of the resolution, then downsampled
    margins: tuple[int, ...]  # paddle margin, one drawn uniformly per image
    paddle_length: int
    paddle_thickness: float  # must be a multiple of 1 / antialias
    marker_radius: float
    seed_distance: int  # distance between the first paddles of the two target snakes
    continuity: float
    distractor_budget: int  # number of distractor snakes = budget // distractor length
    snake_contrast: float  # intensity of distractor paddles; target snakes get
    paddle_contrast: float  # paddle_contrast * snake_contrast (as in snakes2.py)
    max_seed_retrial: int = 2  # extra tries to place a target seed paddle
    max_distractor_retrial: int = 4  # extra tries per distractor snake before it is skipped
    stop_with_availability: float = 0.01  # no more distractors below this free fraction
    max_target_restarts: int = 20_000  # RuntimeError after this many target redraws (128 hard: ~70 on average)

    def distractor_length(self, contour_length: int) -> int:
        return max(1, contour_length // 3)

    def n_distractors(self, contour_length: int) -> int:
        return self.distractor_budget // self.distractor_length(contour_length)


# 32 and 128 are the parameters LRA lists (pathfinder, pathx). 64 and 256 are not among them: every geometric
# quantity is interpolated log-linearly in the resolution between the 32 and 128 columns
# (64 = their geometric mean, 256 = one more doubling at the 32 -> 128 rate) and rounded to
# its grid: paddle length 3.2 -> 3 and 7.9 -> 8, thickness 0.87 -> 1.0 and 2.6 -> 2.5
# (multiples of 1/antialias), marker radius 2.1 -> 2 and 4.2 -> 4, seed distance 11.8 -> 12
# and 33.8 -> 34, margin 1.6 -> {1, 2} and 4.0 -> {4}, distractor budget 26.5 -> 26 and
# 46.3 -> 46, continuity 1.34 -> 1.3. Continuity stays 1.8 at 256 (extrapolated 2.4 makes
# 14-paddle snakes nearly straight lines that rarely fit). Contrasts: at 32 a 0.5-pixel
# stroke reaches only half intensity, which the table's snake contrast 2.0 compensates;
# from 1-pixel strokes on a stroke reaches full intensity, so 64 uses the mean of the
# rendered brightness of the two columns (distractors 0.95, targets 0.82 = 0.95 * 0.87)
# and 256 keeps the 128 values.
PARAMS: dict[int, PathfinderParams] = {
    32: PathfinderParams(
        resolution=32,
        padding=1,
        antialias=2,
        margins=(1,),
        paddle_length=2,
        paddle_thickness=0.5,
        marker_radius=1.5,
        seed_distance=7,
        continuity=1.0,
        distractor_budget=20,
        snake_contrast=2.0,
        paddle_contrast=0.75,
    ),
    64: PathfinderParams(
        resolution=64,
        padding=1,
        antialias=2,
        margins=(1, 2),
        paddle_length=3,
        paddle_thickness=1.0,
        marker_radius=2.0,
        seed_distance=12,
        continuity=1.3,
        distractor_budget=26,
        snake_contrast=0.95,
        paddle_contrast=0.87,
    ),
    128: PathfinderParams(
        resolution=128,
        padding=1,
        antialias=2,
        margins=(2, 3),
        paddle_length=5,
        paddle_thickness=1.5,
        marker_radius=3.0,
        seed_distance=20,
        continuity=1.8,
        distractor_budget=35,
        snake_contrast=0.9,
        paddle_contrast=1.0,
    ),
    256: PathfinderParams(
        resolution=256,
        padding=1,
        antialias=2,
        margins=(4,),
        paddle_length=8,
        paddle_thickness=2.5,
        marker_radius=4.0,
        seed_distance=34,
        continuity=1.8,
        distractor_budget=46,
        snake_contrast=0.9,
        paddle_contrast=1.0,
    ),
}

# Contour length per difficulty and the release's folder name for it.
DIFFICULTIES: dict[str, int] = {"easy": 6, "inter": 9, "hard": 14}
FOLDERS: dict[str, str] = {
    "easy": "curv_baseline",
    "inter": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}

_N_SEED = 360  # seed orientations: whole degrees, as in the original
_TIE = np.array([1e-3, 3.7e-4])  # nudges stroke centre lines off sample rows/columns to break ties


@dataclass(frozen=True)
class Sample:
    """One image. ``image`` uint8 (R, R), background 0, min-max scaled to 0..255;
    ``targets`` bool (R, R): footprints (centre line dilated by the margin radius) of the
    two target snakes; ``markers`` int (2, 2): (row, col) of the two marker centres."""

    image: np.ndarray
    label: int
    targets: np.ndarray
    markers: np.ndarray
    margin: int


# ----------------------------------------------------------------------------- bank


@dataclass(frozen=True)
class _Bank:
    """Everything that depends only on (params, margin), for J = 360 + K paddles: seeds
    j < 360 (orientation j - 180 degrees, anchored at the tail) and continuations
    j = 360 + k (candidate k, anchored at the pivot). Windows are (w, w), w = 2h + 1,
    centred on the anchor."""

    h: int
    hs: int  # half size of the stamp windows (ws = 2 hs + 1)
    stamp_target: np.ndarray  # (J, ws, ws) float32: downsampled stroke times the target contrast
    stamp_distractor: np.ndarray  # (J, ws, ws) float32: same, distractor contrast
    foot: np.ndarray  # (J, w, w) bool: footprint, pixels within rho of the centre line
    foot_flat: np.ndarray  # (J, w * w) float32: the same as rows, to test a window with one dot product
    grown: np.ndarray  # (J, w, w) float32 0/1: footprint grown by one pixel (4-neighbours)
    next: list[tuple[int, int]]  # (J,) offset of the next pivot from the anchor
    tip: list[tuple[int, int]]  # (J,) offset of the snake's end (the continuation's far end)
    n_seed: int  # 360: index of the first continuation
    cand_foot: np.ndarray  # (K, w * w) float32: continuation footprints (times 2) as rows, for one mat-vec
    own: list[list[float]]  # (J, K) cand_foot[k] . (paddle j's grown footprint around its next
    # pivot): what the previous paddle of the snake adds to candidate k's test, to be subtracted back
    base: np.ndarray  # (J, K) float32: continuity weight of candidate k after paddle j, plus own
    cum_weights: list[list[float]]  # (J, K) cumulative continuity weights, ignoring the margin (for bisect)
    marker: np.ndarray  # (2 hm + 1, 2 hm + 1) float32: downsampled disc
    hm: int


def _segment_distance(gy: np.ndarray, gx: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Distance from grid points (gy (H, 1), gx (1, W)) to segments s -> e (n, 2). Returns (n, H, W)."""
    sy, sx = s[:, 0, None, None], s[:, 1, None, None]
    vy, vx = (e - s)[:, 0, None, None], (e - s)[:, 1, None, None]
    dy, dx = gy - sy, gx - sx  # (n, H, W)
    t = np.clip((dy * vy + dx * vx) / np.maximum(vy * vy + vx * vx, 1e-12), 0.0, 1.0)
    return np.hypot(dy - t * vy, dx - t * vx)


def _downsample(big: np.ndarray, a: int) -> np.ndarray:
    """(n, w a, w a) -> (n, w, w) float32 in 0..1 as the original's ``imresize(..., interp="lanczos")``:
    PIL's Lanczos-3 (support 3 output pixels, rows normalised), clipped and rounded to 8 bits."""
    w = big.shape[-1] // a
    z = ((np.arange(w * a) + 0.5)[None, :] - (np.arange(w) + 0.5)[:, None] * a) / a  # (w, w a)
    k = np.sinc(z) * np.sinc(z / 3) * (np.abs(z) < 3)
    k /= k.sum(axis=1, keepdims=True)
    small = k @ big @ k.T  # (n, w, w)
    return (np.rint(np.clip(small, 0.0, 1.0) * 255) / 255).astype(np.float32)


def _strokes(params: PathfinderParams, h: int, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Anti-aliased strokes s -> e (n, 2), pixel units relative to the centre of the window's
    centre pixel. Returns (n, w, w) float32 in 0..1.

    Drawn at ``antialias`` x size, then downsampled as the original does. A sub-pixel is on
    when its distance to the centre line is at most half the stroke width; for a width of
    one sub-pixel the distance is measured along the minor axis (one sample per column or
    row, like PIL's Bresenham line), so a thin stroke looks the same in every direction.
    """
    a, w = params.antialias, 2 * h + 1
    width = round(params.paddle_thickness * a)
    v = e - s
    cos_major = np.abs(v).max(axis=1) / np.maximum(np.hypot(v[:, 0], v[:, 1]), 1e-12)  # (n,)
    half = width / 2 * (cos_major if width == 1 else np.ones_like(cos_major))
    q = np.arange(w * a) + 0.5 - (h + 0.5) * a  # sub-pixel centres, in sub-pixels from the window centre
    out = []
    for i in range(0, len(s), 64):  # chunks bound the (n, w a, w a) temporaries
        d = _segment_distance(q[:, None], q[None, :], s[i : i + 64] * a + _TIE, e[i : i + 64] * a + _TIE)
        out.append(_downsample((d <= half[i : i + 64, None, None]).astype(np.float64), a))
    return np.concatenate(out)


def _footprints(h: int, s: np.ndarray, e: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels within ``rho`` of the segments (n, w, w) bool, and the same grown by 4-neighbours (float32 0/1)."""
    o = np.arange(2 * h + 1, dtype=np.float64) - h
    foot = _segment_distance(o[:, None], o[None, :], s, e) <= rho
    grown = foot.copy()
    grown[:, 1:] |= foot[:, :-1]
    grown[:, :-1] |= foot[:, 1:]
    grown[:, :, 1:] |= foot[:, :, :-1]
    grown[:, :, :-1] |= foot[:, :, 1:]
    return foot, grown.astype(np.float32)


def _shift(grids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """out[j][r, c] = grids[j][r + dy_j, c + dx_j] (zero outside): each window re-centred at its offset."""
    n, w, _ = grids.shape
    padded = np.zeros((n, 3 * w, 3 * w), grids.dtype)
    padded[:, w : 2 * w, w : 2 * w] = grids
    return np.stack([padded[j, w + dy : 2 * w + dy, w + dx : 2 * w + dx] for j, (dy, dx) in enumerate(offsets)])


def _crop(grids: list[np.ndarray], content: np.ndarray | None) -> tuple[list[np.ndarray], int]:
    """Crop (n, w, w) windows around their centre to the smallest square holding every True of
    ``content`` (n, w, w) (default: non-zero values of the first grid). Returns the crops and the half size."""
    h = grids[0].shape[-1] // 2
    ys, xs = np.nonzero((grids[0] != 0 if content is None else content).any(0))
    hc = int(np.abs(np.concatenate([ys, xs]) - h).max())
    return [np.ascontiguousarray(g[:, h - hc : h + hc + 1, h - hc : h + hc + 1]) for g in grids], hc


@lru_cache(maxsize=16)
def _bank(params: PathfinderParams, margin: int) -> _Bank:
    L, m, t = params.paddle_length, margin, params.paddle_thickness
    # Footprint radius: footprints of different snakes may not touch (not even 4-adjacent),
    # so two centre lines stay about 2 rho + 1 = 2 margin + thickness apart, the distance at
    # which the original's margin-dilated strokes stop overlapping. At least 0.75 so that a
    # footprint is 4-connected and consecutive footprints of a snake share their pivot.
    rho = max(0.75, m + t / 2 - 0.5)
    h = math.ceil(L + 2 * m + rho + t) + 2  # generous; cropped to the content below

    # Seeds: a paddle from the tail T along theta; the snake continues from the pivot
    # round(T + (L + m) u), so the footprint covers the paddle and the gap up to the pivot.
    theta = np.deg2rad(np.arange(-180, 180, dtype=np.float64))
    u = np.stack([np.sin(theta), np.cos(theta)], axis=1)  # (360, 2) as (dy, dx)
    # Continuations: far ends D on the integer points of the circle of radius L + m around
    # the pivot (one sample per pixel of arc, as snakes.get_coords_cmf); the paddle runs
    # from D back towards the pivot for L, the next pivot is round(D + m v).
    r = L + m
    alpha = np.deg2rad(np.arange(0.0, 360.0, 360.0 / (2 * np.pi * r)))
    D = np.unique(np.rint(np.stack([r * np.sin(alpha), r * np.cos(alpha)], axis=1)).astype(np.intp), axis=0)
    phi = np.arctan2(D[:, 0], D[:, 1])
    v = np.stack([np.sin(phi), np.cos(phi)], axis=1)  # (K, 2)

    zeros = np.zeros((len(u) + len(v), 2))
    stroke = _strokes(params, h, np.concatenate([zeros[: len(u)], D - L * v]), np.concatenate([L * u, D]))
    foot_end = np.concatenate([(L + m) * u, D + m * v])
    foot, grown = _footprints(h, zeros, foot_end, rho)
    nxt = np.rint(foot_end).astype(np.intp)
    tip = np.concatenate([np.zeros_like(nxt[: len(u)]), D])

    # Continuity weights (snakes.get_coords_cmf): turn angle scaled by continuity, capped at 90 deg.
    turn = np.abs(np.concatenate([theta, phi])[:, None] - phi[None, :])
    turn = np.minimum(turn, 2 * np.pi - turn)
    weights = np.cos(np.minimum(turn * params.continuity, np.pi / 2)) ** 2

    # Crop the windows to the smallest ones that hold all grown footprints (the hot loop's
    # windows), and all strokes (only used to render the final image).
    grown_at_next = _shift(grown, nxt)  # paddle j's grown footprint seen from its next pivot
    (foot, grown, grown_at_next), hf = _crop([foot, grown, grown_at_next], grown > 0)
    (stroke,), hs = _crop([stroke], stroke > 0)
    cand_foot = 2 * foot[len(u) :].reshape(len(v), -1).astype(np.float32)  # (K, w * w)
    own = grown_at_next.reshape(len(weights), -1) @ cand_foot.T  # (J, K)

    # Marker: a disc of marker_radius around the tip, drawn like the strokes.
    a = params.antialias
    hm = math.ceil(params.marker_radius) + 4  # room for the filter's reach, cropped below
    q = np.arange((2 * hm + 1) * a, dtype=np.float64) - hm * a  # the tip maps to its first sub-pixel (draw_circle)
    disc = (q[:, None] ** 2 + q[None, :] ** 2) <= (params.marker_radius * a) ** 2
    (marker,), hm = _crop([_downsample(disc[None].astype(np.float64), a)], None)

    return _Bank(
        h=hf,
        hs=hs,
        stamp_target=stroke * np.float32(params.paddle_contrast * params.snake_contrast),
        stamp_distractor=stroke * np.float32(params.snake_contrast),
        foot=np.ascontiguousarray(foot),
        foot_flat=foot.reshape(len(foot), -1).astype(np.float32),
        grown=np.ascontiguousarray(grown),
        next=[(int(dy), int(dx)) for dy, dx in nxt],  # Python ints: cheap in the per-paddle loop
        tip=[(int(dy), int(dx)) for dy, dx in tip],
        n_seed=len(u),
        cand_foot=cand_foot,
        own=own.tolist(),  # Python lists: indexing and bisect are cheaper than numpy calls here
        base=(weights + own).astype(np.float32),
        cum_weights=np.cumsum(weights, axis=1).tolist(),
        marker=marker[0],
        hm=hm,
    )


# ----------------------------------------------------------------------------- drawing


class _Snake:
    """A growing snake, in padded canvas coordinates."""

    __slots__ = ("pivot", "j", "origin", "tip")

    def __init__(self, origin: tuple[int, int], j: int, pivot: tuple[int, int]):
        self.origin = self.tip = origin  # tail of the first paddle; far end of the last one
        self.j = j  # bank index of the last paddle
        self.pivot = pivot  # the next paddle turns around this point


class _Canvas:
    """Padded occupancy grid ``occ`` (float32 count of grown footprints; the border band
    counts as occupied) and the list of placed paddles; strokes are rendered only once,
    at the end, so abandoned snakes cost no drawing."""

    def __init__(self, params: PathfinderParams, bank: _Bank):
        self.p, self.b = params, bank
        R = params.resolution
        self.B = B = max(bank.h, bank.hs, bank.hm) + 1  # padding of the arrays, so every window is in bounds
        self.occ = np.ones((R + 2 * B, R + 2 * B), np.float32)
        inner = slice(B + params.padding, B + R - params.padding)
        self.occ[inner, inner] = 0
        self.paddles: list[tuple[int, int, int, bool]] = []  # (y, x, bank index, is target)

    def _commit(self, y: int, x: int, j: int, target: bool) -> None:
        h = self.b.h
        occ = self.occ[y - h : y + h + 1, x - h : x + h + 1]
        occ += self.b.grown[j]
        self.paddles.append((y, x, j, target))

    def undo(self, n: int) -> None:
        """Remove the paddles placed after the first n."""
        h = self.b.h
        for y, x, j, _ in self.paddles[n:]:
            occ = self.occ[y - h : y + h + 1, x - h : x + h + 1]
            occ -= self.b.grown[j]
        del self.paddles[n:]

    def render(self, markers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Strokes (max-combined) and markers, and the target footprints: (padded float32, padded bool)."""
        b, h, hs, hm = self.b, self.b.h, self.b.hs, self.b.hm
        img = np.zeros(self.occ.shape, np.float32)
        tgt = np.zeros(self.occ.shape, bool)
        for y, x, j, target in self.paddles:
            win = img[y - hs : y + hs + 1, x - hs : x + hs + 1]
            np.maximum(win, (b.stamp_target if target else b.stamp_distractor)[j], out=win)
            if target:
                tgt[y - h : y + h + 1, x - h : x + h + 1] |= b.foot[j]
        for y, x in markers:
            win = img[y - hm : y + hm + 1, x - hm : x + hm + 1]
            np.maximum(win, b.marker, out=win)
        return img, tgt

    def seed_fits(self, y: int, x: int, i: int) -> bool:
        h = self.b.h
        return not self.b.foot_flat[i] @ self.occ[y - h : y + h + 1, x - h : x + h + 1].ravel()

    def plant(self, y: int, x: int, i: int, target: bool) -> _Snake:
        """First paddle at tail (y, x) with seed orientation i (assumed to fit)."""
        self._commit(y, x, i, target)
        dy, dx = self.b.next[i]
        return _Snake((y, x), i, (y + dy, x + dx))

    def extend(self, s: _Snake, target: bool, rng: np.random.Generator) -> bool:
        """Add one paddle to snake s; False when no continuation keeps the margin."""
        b, h = self.b, self.b.h
        y, x = s.pivot
        occ = self.occ[y - h : y + h + 1, x - h : x + h + 1]
        window = occ.ravel()  # (w * w,) copy
        # Rejection sampling, exact: draw by continuity alone and keep the draw if it keeps the
        # margin (no occupied pixel under its footprint but the previous paddle's, which shares
        # the pivot). Usually accepted; otherwise all candidates are scored at once.
        cum = b.cum_weights[s.j]
        k = bisect.bisect_right(cum, rng.random() * cum[-1])
        if b.cand_foot[k] @ window > b.own[s.j][k]:
            # weight - 2 * (occupied pixels under each footprint, the previous paddle left out),
            # clipped at 0: the continuity weight (<= 1) of the free candidates, 0 for the others
            pmf = b.base[s.j] - b.cand_foot @ window  # (K,)
            np.maximum(pmf, 0, out=pmf)
            cmf = np.add.accumulate(pmf)
            total = float(cmf[-1])
            if total < 1e-4:
                return False
            k = int(cmf.searchsorted(rng.random() * total, side="right"))
        j = b.n_seed + k
        occ += b.grown[j]  # commit (as _commit, inlined: this is the hot loop)
        self.paddles.append((y, x, j, target))
        s.j = j
        dy, dx = b.tip[j]
        s.tip = (y + dy, x + dx)
        dy, dx = b.next[j]
        s.pivot = (y + dy, x + dx)
        return True

    def free_pixels(self) -> np.ndarray:
        """Flat indices (row-major, image coordinates) of the unoccupied pixels."""
        B, R = self.B, self.p.resolution
        return np.flatnonzero(self.occ[B : B + R, B : B + R] == 0)

    def random_seed(self, i: int, free: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
        """A tail drawn uniformly from the positions where seed orientation i fits, or None.

        Rejection sampling from the free pixels is exact (uniform over the fitting ones);
        after 32 misses the fitting set is computed in full."""
        B, R, h = self.B, self.p.resolution, self.b.h
        if len(free) == 0:
            return None
        for f in free[rng.integers(len(free), size=32)]:
            y, x = divmod(int(f), R)
            if self.seed_fits(y + B, x + B, i):
                return y + B, x + B
        occupied = self.occ > 0
        blocked = np.zeros((R, R), bool)
        for dy, dx in zip(*np.nonzero(self.b.foot[i])):
            blocked |= occupied[B + dy - h : B + dy - h + R, B + dx - h : B + dx - h + R]
        fits = np.flatnonzero(~blocked)
        if len(fits) == 0:
            return None
        y, x = divmod(int(fits[rng.integers(len(fits))]), R)
        return y + B, x + B


def _two_targets(c: _Canvas, contour_length: int, rng: np.random.Generator) -> list[_Snake] | None:
    """Two target snakes whose first paddles start seed_distance apart near the centre."""
    p = c.p
    R, sd, B = p.resolution, p.seed_distance, c.B
    lo = min(2 * sd, R // 2)  # as snakes2: the first tail at least 2 seed distances from the edges
    hi = max(R - 2 * sd, lo + 1)
    snakes: list[_Snake] = []
    for _ in range(p.max_seed_retrial + 1):
        y, x = (int(v) + B for v in rng.integers(lo, hi, size=2))
        i = int(rng.integers(_N_SEED))
        if c.seed_fits(y, x, i):
            snakes.append(c.plant(y, x, i, True))
            break
    else:
        return None
    for _ in range(p.max_seed_retrial + 1):
        beta = math.radians(int(rng.integers(360)))
        y = snakes[0].origin[0] + round(sd * math.sin(beta))
        x = snakes[0].origin[1] + round(sd * math.cos(beta))
        i = int(rng.integers(_N_SEED))
        if B <= y < B + R and B <= x < B + R and c.seed_fits(y, x, i):
            snakes.append(c.plant(y, x, i, True))
            break
    else:
        return None
    for _ in range(contour_length - 1):  # grow the two alternately, as two_snakes does
        for s in snakes:
            if not c.extend(s, True, rng):
                return None
    return snakes


def _distractors(c: _Canvas, contour_length: int, rng: np.random.Generator) -> None:
    p = c.p
    length = p.distractor_length(contour_length)
    for _ in range(p.n_distractors(contour_length)):
        for _ in range(p.max_distractor_retrial + 1):
            free = c.free_pixels()
            if len(free) < p.stop_with_availability * p.resolution**2:
                return
            i = int(rng.integers(_N_SEED))
            pos = c.random_seed(i, free, rng)
            if pos is None:
                continue
            n_before = len(c.paddles)
            s = c.plant(*pos, i, False)
            if all(c.extend(s, False, rng) for _ in range(length - 1)):
                break
            c.undo(n_before)  # an incomplete snake is erased (allow_shorter_snakes=False)


def draw(params: PathfinderParams, contour_length: int, rng: np.random.Generator) -> Sample:
    """Draw one Pathfinder image with target snakes of ``contour_length`` paddles."""
    label = int(rng.integers(2))
    margin = params.margins[int(rng.integers(len(params.margins)))]
    bank = _bank(params, margin)
    for _ in range(params.max_target_restarts):
        c = _Canvas(params, bank)
        snakes = _two_targets(c, contour_length, rng)
        if snakes is not None:
            break
    else:
        raise RuntimeError(f"no two target snakes of {contour_length} paddles fit after "
                           f"{params.max_target_restarts} tries with {params}")  # fmt: skip
    _distractors(c, contour_length, rng)
    first = int(rng.integers(2))
    other = first if label == 1 else 1 - first
    ends = np.array([snakes[first].origin, snakes[other].tip])  # (2, 2) padded coordinates
    img, tgt = c.render(ends)
    R, B = params.resolution, c.B
    img = img[B : B + R, B : B + R]
    lo, hi = float(img.min()), float(img.max())
    image = np.floor((img - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)  # scipy's bytescale
    targets = tgt[B : B + R, B : B + R].copy()
    return Sample(image=image, label=label, targets=targets, markers=ends - B, margin=margin)


# ----------------------------------------------------------------------------- files


def image_rng(seed: int, resolution: int, contour_length: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: a function of (seed, resolution, contour length, index) only."""
    return np.random.default_rng(np.random.SeedSequence([seed, resolution, contour_length, index]))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def png_bytes(image: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a uint8 (H, W) array."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def metadata_line(params: PathfinderParams, contour_length: int, batch: int, j: int, label: int, margin: int) -> str:
    """One metadata line as snakes2.accumulate_meta writes it: subfolder, file name, index in
    the batch, label, continuity, contour length, distractor length, paddle length, paddle
    thickness, paddle margin, number of paddle contrasts."""
    fields = [f"imgs/{batch}", f"sample_{j}.png", j, label, float(params.continuity), contour_length,
              params.distractor_length(contour_length), params.paddle_length, float(params.paddle_thickness),
              margin, 1]  # fmt: skip
    return " ".join(str(f) for f in fields)


def _draw_chunk(task: tuple) -> list[tuple[int, int, int]]:
    """Draw and write images [start, stop); returns (index, label, margin) for each."""
    root, resolution, contour_length, seed, start, stop, batch_size = task
    params = PARAMS[resolution]
    out = []
    for g in range(start, stop):
        sample = draw(params, contour_length, image_rng(seed, resolution, contour_length, g))
        batch, j = divmod(g, batch_size)
        _atomic_write(Path(root) / "imgs" / str(batch) / f"sample_{j}.png", png_bytes(sample.image))
        out.append((g, sample.label, sample.margin))
    return out


def generate(
    out_dir: str | os.PathLike,
    *,
    resolution: int = 32,
    difficulty: str = "hard",
    n: int = 1000,
    workers: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
    progress: bool = True,
) -> Path:
    """Write n images in the release layout and return the difficulty folder.

    ``out_dir/pathfinder{R}/{folder}/imgs/{batch}/sample_{j}.png`` and
    ``.../metadata/{batch}.npy`` (text, one line per image, like the release). Image g is
    drawn from ``image_rng(seed, R, contour_length, g)``, so the bytes do not depend on
    ``workers``. Every file is written to a temporary name and renamed, and a batch's
    metadata only after all its images, so an interrupted run leaves no truncated PNG
    under a final name. Existing files are overwritten.
    """
    if resolution not in PARAMS:
        raise ValueError(f"resolution {resolution} not in {sorted(PARAMS)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty {difficulty!r} not in {sorted(DIFFICULTIES)}")
    params, contour_length = PARAMS[resolution], DIFFICULTIES[difficulty]
    root = Path(out_dir) / f"pathfinder{resolution}" / FOLDERS[difficulty]
    n_batches = -(-n // batch_size)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    for b in range(n_batches):
        (root / "imgs" / str(b)).mkdir(parents=True, exist_ok=True)

    chunk = max(1, min(batch_size, 4096 // resolution))  # ~128 images at 32, ~32 at 128
    tasks = []
    for b in range(n_batches):
        end = min(n, (b + 1) * batch_size)
        tasks += [(str(root), resolution, contour_length, seed, s, min(s + chunk, end), batch_size)
                  for s in range(b * batch_size, end, chunk)]  # fmt: skip
    pending = {b: {} for b in range(n_batches)}

    def collect(results: list[tuple[int, int, int]]) -> None:
        """Record finished images; write the metadata of every batch that is complete."""
        for g, label, margin in results:
            b, j = divmod(g, batch_size)
            pending[b][j] = metadata_line(params, contour_length, b, j, label, margin)
        for b in list(pending):
            size = min(batch_size, n - b * batch_size)
            if len(pending[b]) == size:
                lines = pending.pop(b)
                text = "".join(lines[j] + "\n" for j in range(size))
                _atomic_write(root / "metadata" / f"{b}.npy", text.encode())

    with tqdm(total=n, disable=not progress, desc=f"pathfinder{resolution}/{FOLDERS[difficulty]}") as bar:
        if workers <= 1:
            for task in tasks:
                collect(res := _draw_chunk(task))
                bar.update(len(res))
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for res in pool.imap_unordered(_draw_chunk, tasks):
                    collect(res)
                    bar.update(len(res))
    log.info("wrote %d images to %s", n, root)
    return root
