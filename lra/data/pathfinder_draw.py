"""Drawing one Pathfinder / Path-X image (Linsley et al. 2018) as the original generator does.

A black canvas with dashed curves ("snakes") of short straight dashes ("paddles"). Two
target snakes of ``contour_length`` paddles start ``seed_distance`` apart near the centre,
distractor snakes of ``contour_length // 3`` paddles are added where there is room, and two
round markers sit on snake ends: both ends of one target snake (label 1) or ends of the two
different target snakes (label 0). This is our own vectorised implementation of what
drewlinsley/pathfinder (``snakes2.py`` with ``snakes.py``, the code LRA cites) computes when
run with the legacy ``scipy.misc.imresize`` of 2019; the distribution of its images, not its
random stream, is reproduced:

- Paddle rendering. A paddle is a PIL line of ``round(thickness * antialias)`` pixels from the
  centre of a ``(2k a + 1)``-pixel canvas (``k = length + ceil(thickness) + margin``,
  ``a = antialias``) to ``ceil(centre + length a (sin, cos))``, resized to ``2k + 1`` pixels as
  an 8-bit image with PIL's Lanczos filter (the legacy ``imresize``: bytescale to uint8, then
  ``Image.resize``). The resize factor is ``(2k a + 1) / (2k + 1)``, not ``a``. The paddle's
  mask is the same line dilated by a disc of radius ``margin * a``, resized the same way, so
  it runs 0..1 with soft edges. Markers are discs drawn on the whole window at ``a`` times the
  resolution and resized (Lanczos, factor ``a``). Paddles, markers and contrasts combine with
  ``max``; the image is min-max scaled to 0..255.
- Geometry. Coordinates are moved with ``ceil`` (the original's ``translate_coord``). A snake's
  next pivot is ``ceil(pivot + (length + 2 margin) u)``; continuation candidates are the
  integer points ``floor(pivot + (length + margin) (sin, cos))`` sampled one pixel of arc
  apart, inside the image; the paddle runs from the candidate back towards the pivot.
- Acceptance. The running mask is the ``max`` of the masks of the accepted paddles, except
  the last paddle of each growing snake, which joins it only when the snake's next paddle is
  accepted (so a paddle is never tested against its predecessor; the first target snake's
  last paddle never joins it). A candidate is drawn with weight
  ``(1 - dilated_mask) * cos(min(continuity * turn, pi/2))**2`` (mask dilated by a disc of
  radius ``margin``) and kept if ``max(mask + paddle_mask) < 1.8``, up to
  ``max_paddle_retrial + 1`` draws, else the snake fails. A distractor seed's tail is drawn
  uniformly from the pixels where ``ceil(dilated_mask - 0.3) == 0``, the mask dilated by the
  pixels where the seed's own mask is 1 (offset by one pixel diagonally, as the original's
  kernel is), and kept if its head and pivot are inside the image. The first target seed
  also keeps ``2 seed_distance`` from the edges; the second is placed at ``seed_distance``
  from the first with no mask test. A failed target pair is redrawn from scratch; a failed
  distractor is erased and retried ``max_distractor_retrial`` times, then skipped.

Speed comes from precomputing everything that depends only on (parameters, margin) in a
"bank": the stroke and mask of every seed orientation and every continuation candidate,
the continuity weights and the seed test footprints. Placing a paddle is then a few numpy
operations on small windows of a padded canvas. Pure functions of a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class PathfinderParams:
    """Drawing parameters of one resolution, named after snakes2's arguments (LRA's values:
    ``lra.data.pathfinder_gen.PARAMS``)."""

    resolution: int
    padding: int  # border band (pixels) that counts as occupied
    antialias: int  # strokes are drawn at this multiple of the resolution, then resized
    margins: tuple[int, ...]  # paddle margin, one drawn uniformly per image
    paddle_length: int
    paddle_thickness: float  # thickness * antialias must be an integer
    marker_radius: float
    seed_distance: int  # distance between the tails of the two target snakes
    continuity: float
    distractor_budget: int  # number of distractor snakes = budget // distractor length
    snake_contrast: float  # intensity of distractor paddles; target snakes get
    paddle_contrast: float  # paddle_contrast * snake_contrast (as in snakes2.py)
    max_paddle_retrial: int = 2  # extra draws per paddle (seed position or continuation)
    max_distractor_retrial: int = 4  # extra tries per distractor snake before it is skipped
    stop_with_availability: float = 0.01  # no more distractors below this free fraction
    max_target_restarts: int = 20_000  # RuntimeError after this many target redraws

    def distractor_length(self, contour_length: int) -> int:
        return max(1, contour_length // 3)

    def n_distractors(self, contour_length: int) -> int:
        return self.distractor_budget // self.distractor_length(contour_length)


_DEGREES = np.arange(-180, 180)  # seed orientations: whole degrees, as snakes2's randint(-180, 180)


@dataclass(frozen=True)
class Sample:
    """One image. ``image`` uint8 (R, R), background 0, min-max scaled to 0..255;
    ``targets`` float32 (2, R, R): the stroke (0..1, before contrast) of each target snake;
    ``markers`` int (2, 2): (row, col) of the two marker centres (the first on a target
    snake's tail, the second on a snake's last paddle end)."""

    image: np.ndarray
    label: int
    targets: np.ndarray
    markers: np.ndarray
    margin: int


def _bytescale(a: np.ndarray) -> np.ndarray:
    """Min-max scale to uint8 as the legacy ``scipy.misc.bytescale``; a constant array becomes zeros."""
    lo, hi = float(a.min()), float(a.max())
    scale = 255.0 / (hi - lo) if hi > lo else 255.0
    return (np.clip((a - lo) * scale, 0, 255) + 0.5).astype(np.uint8)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """Legacy ``scipy.misc.imresize(a, (size, size), interp="lanczos")``: bytescale unless uint8,
    then PIL's Lanczos resize of the 8-bit image (so the result is rounded and clipped to 0..255)."""
    img = Image.fromarray(a if a.dtype == np.uint8 else _bytescale(a))
    return np.asarray(img.resize((size, size), resample=Image.Resampling.LANCZOS))


def _disc(radius: int) -> np.ndarray:
    """(n, 2) offsets (dy, dx) with dy^2 + dx^2 <= radius^2 (snakes.generate_dilation_struct)."""
    o = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(o, o, indexing="ij")
    keep = dy**2 + dx**2 <= radius**2
    return np.stack([dy[keep], dx[keep]], axis=1)


def _flip(o: np.ndarray) -> np.ndarray:
    """Orientation turned by pi, as snakes.flip_by_pi and the seeds' reversed orientation."""
    return np.where(o < 0, o + np.pi, o - np.pi)


@dataclass(frozen=True)
class _Bank:
    """Everything that depends only on (params, margin), for J = 360 + K paddles: seeds j < 360
    (orientation j - 180 degrees, drawn from the tail) and continuations j = 360 + c (candidate
    c, drawn from the candidate back towards the pivot). Stamps are (2k + 1, 2k + 1) windows
    centred on the paddle's start; canvases are padded by B on each side (width W)."""

    k: int
    B: int
    W: int
    stroke_target: np.ndarray  # (J, s, s) float64: resized stroke times the target contrast
    stroke_distractor: np.ndarray  # (J, s, s) float64: same, distractor contrast
    stroke: np.ndarray  # (J, s, s) float32: resized stroke, 0..1
    mask: np.ndarray  # (J, s, s) float64: resized margin-dilated stroke, 0..1
    dmask: np.ndarray  # (J, s + 2m, s + 2m) float64: mask dilated (max filter) by disc(margin)
    sin: list[float]  # (J,) orientation of paddle j (seed angle, or direction pivot -> candidate)
    cos: list[float]
    rev_sin: list[float]  # (360,) seed orientation turned by pi (to find the seed's pivot)
    rev_cos: list[float]
    cand: list[tuple[int, int]]  # (K,) candidate offsets from the pivot
    cand_flat: np.ndarray  # (K,) the same as offsets in the flattened padded canvas
    weights: np.ndarray  # (J, K) continuity weight of candidate c after paddle j
    check: list[np.ndarray]  # (360,) (n_i, 2) seed test footprint: mask == 1, shifted by (1, 1)
    check_flat: list[np.ndarray]  # (360,) the same, flattened
    dead: list[bool]  # (360,) seed orientations whose test always fails (see _bank)
    alive: list[int]  # the others
    radius: int  # L + m: candidates lie within this of the pivot (per coordinate)
    inside: np.ndarray  # (W * W,) bool: pixel of the image (not the padding)
    mask0: np.ndarray  # (W, W) the empty canvas's mask: 1 on the image's border band
    dil0: np.ndarray  # (W, W) mask0 dilated by disc(margin)
    first_free: dict = field(default_factory=dict)  # seed i -> tails passing the first target test


@lru_cache(maxsize=16)
def _bank(params: PathfinderParams, margin: int) -> _Bank:
    L, m, a, t, R = params.paddle_length, margin, params.antialias, params.paddle_thickness, params.resolution
    width = round(t * a)
    if width != t * a:
        raise ValueError(f"paddle_thickness {t} times antialias {a} must be an integer")
    k = L + math.ceil(t) + m  # stamp half size, snakes.draw_line_n_mask
    S, s, c = 2 * k * a + 1, 2 * k + 1, k * a  # drawing canvas, stamp size, drawing centre

    theta = _DEGREES * np.pi / 180
    # Candidates (snakes.get_coords_cmf): the circle of radius L + m sampled one pixel of arc
    # apart, truncated to integers (floor inside the image), duplicates removed.
    r = L + m
    alpha = np.arange(0, 360, 360.0 / (2 * r * np.pi)) * np.pi / 180
    cand = np.unique(np.floor(np.stack([r * np.sin(alpha), r * np.cos(alpha)], axis=1)).astype(np.intp), axis=0)
    phi = np.arctan2(cand[:, 0], cand[:, 1])
    orient = np.concatenate([theta, phi])  # (J,)

    # Strokes: PIL lines on the 'F' canvas, drawn from the centre along the seed angle or back
    # along the candidate's direction; masks: the same dilated by a disc of radius m * a.
    draw_dir = np.concatenate([theta, _flip(phi)])
    head_y = np.ceil(c + float(L * a) * np.sin(draw_dir)).astype(int)
    head_x = np.ceil(c + float(L * a) * np.cos(draw_dir)).astype(int)
    big = np.empty((len(orient), S, S), np.float32)
    for j, (hy, hx) in enumerate(zip(head_y, head_x)):
        im = Image.new("F", (S, S), 0.0)
        ImageDraw.Draw(im).line([(c, c), (int(hx), int(hy))], fill=255.0, width=width)
        big[j] = np.asarray(im)
    on = big > 0
    rr = m * a
    padded = np.pad(on, ((0, 0), (rr, rr), (rr, rr)))
    dilated = np.zeros_like(on)
    for dy, dx in _disc(rr):
        dilated |= padded[:, rr + dy : rr + dy + S, rr + dx : rr + dx + S]
    stroke_u8 = np.stack([_resize(b, s) for b in big])  # bytescale: 0/255 in, unchanged
    mask_u8 = np.stack([_resize(d.astype(np.uint8) * np.uint8(255), s) for d in dilated])
    # The original keeps these in float32 images ('F'), computed from u8 / 255 in float64.
    stroke = (stroke_u8 / 255.0).astype(np.float32)
    mask = (mask_u8 / 255.0).astype(np.float32).astype(np.float64)

    # Continuity weights: turn angle scaled by continuity, capped at 90 degrees.
    turn = np.abs(phi[None, :] - orient[:, None])
    turn = np.minimum(turn, 2 * np.pi - turn)
    weights = np.maximum(np.cos(np.minimum(turn * params.continuity, 0.5 * np.pi)), 0) ** 2

    # Seed test (snakes.seed_snake): the mask is dilated by the pixels where the seed's mask
    # is exactly 1, cut to the (2 (L + m) + 1)^2 kernel whose anchor is one pixel before the tail.
    check = []
    for i in range(len(theta)):
        e = np.argwhere(mask_u8[i] == 255) - k + 1
        check.append(e[(np.abs(e) <= L + m).all(axis=1)])
    # OpenCV's dilation gives a pixel whose kernel taps all fall outside the image the border
    # value -DBL_MAX; snakes.find_available_coordinates then sees a negative minimum and reports
    # no free pixel at all. So a seed orientation fails outright when no tap lies in one of the
    # four closed quadrants (one of the image's corners sees none): 92% of the orientations at
    # 32x32 (L=2, m=1), 2% at 128x128 with m=2, none with m=3. This is why the original's 32x32
    # images hold about a quarter of the distractors asked for, and its first target seeds
    # are redrawn often.
    dead = [not all(np.any(a & b) for a in (e[:, 0] >= 0, e[:, 0] <= 0) for b in (e[:, 1] >= 0, e[:, 1] <= 0))
            for e in check]  # fmt: skip

    B = max(k, 2 * r + L + 3 * m + 4) + 1  # room for every window the drawing can look at
    W = R + 2 * B
    inside = np.zeros((W, W), bool)
    inside[B : B + R, B : B + R] = True
    disc = _disc(m)
    cand_flat = cand[:, 0] * W + cand[:, 1]
    mask0 = np.zeros((W, W))
    mask0[B : B + R, B : B + R] = 1
    mask0[B + params.padding : B + R - params.padding, B + params.padding : B + R - params.padding] = 0
    # A max filter commutes with max, so the running mask's dilation is the max of the dilated
    # paddle masks: extend() reads it at the candidates instead of dilating the whole mask.
    dil0, dmask = np.zeros_like(mask0), np.zeros((len(mask), s + 2 * m, s + 2 * m))
    padded0, padded = np.pad(mask0, m), np.pad(mask, ((0, 0), (m, m), (m, m)))
    padded = np.pad(padded, ((0, 0), (m, m), (m, m)))
    for dy, dx in disc:
        np.maximum(dil0, padded0[m + dy : m + dy + W, m + dx : m + dx + W], out=dil0)
        np.maximum(dmask, padded[:, m + dy : m + dy + s + 2 * m, m + dx : m + dx + s + 2 * m], out=dmask)
    return _Bank(
        k=k,
        B=B,
        W=W,
        stroke_target=(stroke_u8 / 255.0 * (params.paddle_contrast * params.snake_contrast))
        .astype(np.float32)
        .astype(np.float64),
        stroke_distractor=(stroke_u8 / 255.0 * params.snake_contrast).astype(np.float32).astype(np.float64),
        stroke=stroke,
        mask=mask,
        dmask=dmask,
        sin=np.sin(orient).tolist(),
        cos=np.cos(orient).tolist(),
        rev_sin=np.sin(_flip(theta)).tolist(),
        rev_cos=np.cos(_flip(theta)).tolist(),
        cand=[(int(dy), int(dx)) for dy, dx in cand],
        cand_flat=cand_flat,
        weights=weights,
        check=check,
        check_flat=[e[:, 0] * W + e[:, 1] for e in check],
        dead=dead,
        alive=[i for i, d in enumerate(dead) if not d],
        radius=r,
        inside=inside.ravel(),
        mask0=mask0,
        dil0=dil0,
    )


# ----------------------------------------------------------------------------- drawing


def _free_tails(mask: np.ndarray, b: _Bank, i: int, R: int) -> np.ndarray:
    """Flat image indices of the tails where seed i passes the test against the padded mask."""
    B, occupied = b.B, mask > 0.3  # ceil(mask - 0.3) != 0
    blocked = np.zeros((R, R), bool)
    for ey, ex in b.check[i]:
        blocked |= occupied[B + ey : B + ey + R, B + ex : B + ex + R]
    return np.flatnonzero(~blocked)


def _first_lined(p: PathfinderParams, b: _Bank) -> np.ndarray:
    """The empty canvas's mask with bands of 2 seed distances along the image's edges set to 1."""
    R, sd, B = p.resolution, p.seed_distance, b.B
    lined = b.mask0.copy()
    band = np.ones((R, R), bool)
    band[2 * sd : R - 2 * sd, 2 * sd : R - 2 * sd] = False
    lined[B : B + R, B : B + R][band] = 1
    return lined


class _Snake:
    """A growing snake, in padded canvas coordinates. ``pending`` is its last paddle, whose
    mask joins the canvas mask only when the next paddle is accepted (or the snake is done)."""

    __slots__ = ("origin", "tip", "pivot", "j", "pending", "paddles")

    def __init__(self, tail: tuple[int, int], i: int, pivot: tuple[int, int]):
        self.origin = self.tip = tail
        self.pivot, self.j = pivot, i
        self.pending = (tail[0], tail[1], i)
        self.paddles = [self.pending]


class _Canvas:
    """The padded running mask (float64, max of accepted paddle masks; the image's border band
    is 1, the padding 0, as pixels outside the image never count in the original) and its
    dilation by disc(margin)."""

    def __init__(self, params: PathfinderParams, bank: _Bank, margin: int):
        self.p, self.b, self.margin = params, bank, margin
        self.mask, self.dil = bank.mask0.copy(), bank.dil0.copy()  # dil: mask dilated by disc(margin)
        self.flat, self.dil_flat = self.mask.ravel(), self.dil.ravel()  # views

    def window(self, y: int, x: int) -> np.ndarray:
        k = self.b.k
        return self.mask[y - k : y + k + 1, x - k : x + k + 1]

    def commit(self, y: int, x: int, j: int) -> None:
        win = self.window(y, x)
        np.maximum(win, self.b.mask[j], out=win)
        kd = self.b.k + self.margin
        win = self.dil[y - kd : y + kd + 1, x - kd : x + kd + 1]
        np.maximum(win, self.b.dmask[j], out=win)

    def inside(self, y: int, x: int) -> bool:
        B, R = self.b.B, self.p.resolution
        return B <= y < B + R and B <= x < B + R

    def random_tail(self, i: int, rng: np.random.Generator) -> tuple[int, int] | None:
        """A tail drawn uniformly from the pixels where seed i passes the test against the mask,
        or None if there is none. The first fitting one of a few uniform proposals is uniform on
        that set; after misses the set is computed in full."""
        b, R = self.b, self.p.resolution
        B, W = b.B, b.W
        ys, xs = rng.integers(R, size=(2, 16)) + B
        ok = self.flat[(ys * W + xs)[:, None] + b.check_flat[i][None, :]].max(axis=1) <= 0.3
        hit = np.flatnonzero(ok)
        if len(hit):
            return int(ys[hit[0]]), int(xs[hit[0]])
        free = _free_tails(self.mask, b, i, R)
        if len(free) == 0:
            return None
        y, x = divmod(int(free[rng.integers(len(free))]), R)
        return y + B, x + B

    def seed(self, rng: np.random.Generator, first: bool = False) -> _Snake | None:
        """snakes.seed_snake: up to max_paddle_retrial + 1 draws of (orientation, tail); a draw
        whose head or pivot falls outside the image is retried, no free tail (or a dead
        orientation) fails. ``first``: the first target seed, whose test mask is the empty
        canvas with bands of 2 seed distances along the edges (initialize_two_seeds)."""
        b, p, B = self.b, self.p, self.b.B
        L, Lm = float(p.paddle_length), float(p.paddle_length + self.margin)
        for _ in range(p.max_paddle_retrial + 1):
            if first:
                # A dead first orientation fails the pair at once and leaves nothing behind, so
                # drawing among the live ones gives the same distribution without the restarts.
                i = b.alive[int(rng.integers(len(b.alive)))]
                if i not in b.first_free:
                    b.first_free[i] = _free_tails(_first_lined(p, b), b, i, p.resolution)
                free = b.first_free[i]
                if len(free) == 0:
                    return None
                y, x = divmod(int(free[rng.integers(len(free))]), p.resolution)
                tail = (y + B, x + B)
            else:
                i = int(rng.integers(len(_DEGREES)))
                if b.dead[i]:
                    return None
                tail = self.random_tail(i, rng)
                if tail is None:
                    return None
            ty, tx = tail[0] - B, tail[1] - B  # image coordinates: the original's ceil sees these
            hy, hx = math.ceil(ty + L * b.sin[i]), math.ceil(tx + L * b.cos[i])
            py, px = math.ceil(hy + Lm * b.rev_sin[i]), math.ceil(hx + Lm * b.rev_cos[i])
            if self.inside(hy + B, hx + B) and self.inside(py + B, px + B):
                return _Snake(tail, i, (py + B, px + B))
        return None

    def extend(self, s: _Snake, rng: np.random.Generator) -> bool:
        """snakes.extend_snake: add one paddle to s; False when none is found."""
        b, B, R = self.b, self.b.B, self.p.resolution
        step = float(self.p.paddle_length + 2 * self.margin)
        ny = math.ceil(s.pivot[0] - B + step * b.sin[s.j]) + B
        nx = math.ceil(s.pivot[1] - B + step * b.cos[s.j]) + B
        base = ny * b.W + nx
        pmf = 1.0 - self.dil_flat[base + b.cand_flat]  # (K,) 1 - dilated mask at each candidate
        pmf *= b.weights[s.j]
        r = b.radius
        if not (B + r <= ny < B + R - r and B + r <= nx < B + R - r):  # some candidates may be outside
            pmf *= b.inside[base + b.cand_flat]
        cmf = np.cumsum(pmf)
        total = float(cmf[-1])
        if total < 1e-4:
            return False
        for _ in range(self.p.max_paddle_retrial + 1):
            c = min(int(cmf.searchsorted(rng.random() * total, side="right")), len(cmf) - 1)
            hy, hx = ny + b.cand[c][0], nx + b.cand[c][1]
            j = len(_DEGREES) + c
            if (self.window(hy, hx) + b.mask[j]).max() < 1.8:
                break
        else:
            return False
        self.commit(*s.pending)
        s.pending = (hy, hx, j)
        s.paddles.append(s.pending)
        s.pivot, s.j, s.tip = (ny, nx), j, (hy, hx)
        return True


def _two_targets(c: _Canvas, contour_length: int, rng: np.random.Generator) -> list[_Snake] | None:
    """snakes2.two_snakes: the first tail at least 2 seed distances from the edges, the second
    seed_distance from it (no mask test), then both grown alternately."""
    p, b, B = c.p, c.b, c.b.B
    sd = p.seed_distance
    first = c.seed(rng, first=True)
    if first is None:
        return None
    L, Lm = float(p.paddle_length), float(p.paddle_length + c.margin)
    for _ in range(p.max_paddle_retrial + 1):
        i = int(rng.integers(len(_DEGREES)))
        beta = int(rng.integers(360)) * np.pi / 180
        ty = int(round(first.origin[0] - B + sd * math.sin(beta)))
        tx = int(round(first.origin[1] - B + sd * math.cos(beta)))
        hy, hx = math.ceil(ty + L * b.sin[i]), math.ceil(tx + L * b.cos[i])
        py, px = math.ceil(hy + Lm * b.rev_sin[i]), math.ceil(hx + Lm * b.rev_cos[i])
        if c.inside(hy + B, hx + B) and c.inside(py + B, px + B):
            second = _Snake((ty + B, tx + B), i, (py + B, px + B))
            break
    else:
        return None
    snakes = [first, second]
    for _ in range(contour_length - 1):
        for s in snakes:
            if not c.extend(s, rng):
                return None
    c.commit(*second.pending)  # the first snake's last paddle never joins the mask (as snakes2)
    return snakes


def _distractors(c: _Canvas, contour_length: int, rng: np.random.Generator) -> list[_Snake]:
    """snakes.make_many_snakes: each distractor tried max_distractor_retrial + 1 times, then skipped."""
    p, B, R = c.p, c.b.B, c.p.resolution
    length, done = p.distractor_length(contour_length), []

    def crowded() -> bool:  # seed_snake's stop_with_availability test; the mask changes only when a snake is added
        return bool((c.mask[B : B + R, B : B + R] <= 0.3).sum() < p.stop_with_availability * R * R)

    if crowded():
        return done
    for _ in range(p.n_distractors(contour_length)):
        for _ in range(p.max_distractor_retrial + 1):
            s = c.seed(rng)
            if s is None:
                continue
            saved = c.mask.copy(), c.dil.copy()
            if all(c.extend(s, rng) for _ in range(length - 1)):
                c.commit(*s.pending)
                done.append(s)
                if crowded():
                    return done  # every further try would stop at this test
                break
            np.copyto(c.mask, saved[0])  # an incomplete snake is erased (allow_shorter_snakes=False)
            np.copyto(c.dil, saved[1])
    return done


def _marker(params: PathfinderParams, y: int, x: int) -> np.ndarray:
    """snakes2.draw_circle: a disc on the whole window at antialias scale, resized; uint8 (R, R)."""
    R, a = params.resolution, params.antialias
    q = np.arange(R * a)
    disc = ((q[:, None] - y * a) ** 2 + (q[None, :] - x * a) ** 2) <= (params.marker_radius * a) ** 2
    return _resize(disc.astype(np.float64), R)


def draw(params: PathfinderParams, contour_length: int, rng: np.random.Generator) -> Sample:
    """Draw one Pathfinder image with target snakes of ``contour_length`` paddles."""
    label = int(rng.integers(2))
    margin = params.margins[int(rng.integers(len(params.margins)))]
    bank = _bank(params, margin)
    for _ in range(params.max_target_restarts):
        c = _Canvas(params, bank, margin)
        targets = _two_targets(c, contour_length, rng)
        if targets is not None:
            break
    else:
        raise RuntimeError(f"no two target snakes of {contour_length} paddles fit after "
                           f"{params.max_target_restarts} tries with {params}")  # fmt: skip
    distractors = _distractors(c, contour_length, rng)

    R, B, k = params.resolution, bank.B, bank.k
    img = np.zeros_like(c.mask)
    strokes = np.zeros((2, *c.mask.shape), np.float32)
    for stamps, snakes in ((bank.stroke_target, targets), (bank.stroke_distractor, distractors)):
        for s in snakes:
            for y, x, j in s.paddles:
                win = img[y - k : y + k + 1, x - k : x + k + 1]
                np.maximum(win, stamps[j], out=win)
    for t, s in enumerate(targets):
        for y, x, j in s.paddles:
            win = strokes[t, y - k : y + k + 1, x - k : x + k + 1]
            np.maximum(win, bank.stroke[j], out=win)
    first = int(rng.integers(2))
    other = first if label == 1 else 1 - first
    ends = np.array([targets[first].origin, targets[other].tip]) - B  # (2, 2) image coordinates
    markers = np.maximum(_marker(params, *ends[0]), _marker(params, *ends[1])) / 255.0
    image = _bytescale(np.maximum(img[B : B + R, B : B + R], markers))  # imsave's min-max scaling
    targets_img = np.ascontiguousarray(strokes[:, B : B + R, B : B + R])
    return Sample(image=image, label=label, targets=targets_img, markers=ends, margin=margin)
