"""What the rows of ``lra-bench`` say: the numbers its table derives from them and the timings it flags.

A row is one (attention row, length) point as in points.csv. ``ok_value`` is a number only where the
phase it measures succeeded (inference runs first, so a point that failed in training keeps its
``infer_*`` numbers). At each length N:

- relative = value / value of ``vanilla`` (SDPA) at the same N;
- attention cost = (t - t_floor) / (t_vanilla - t_floor), the share of vanilla's attention time kept
  (0 = no more than no token mixing at all, 1 = as much as exact attention);
- slope = the least-squares slope of log(value) against log(N) (1 = linear, 2 = quadratic).

``flags`` names what the machine may have bent: a floor (no attention) slower than a row with
attention, a negative or meaningless attention share, a 1-minute load average that moved by more
than ``LOAD_MOVED`` during a point or the sweep.
"""

from __future__ import annotations

import math

from lra.measure import BASELINE, FLOOR, NAIVE


def index(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["row"], int(r["length"])): r for r in rows}


def ok_value(idx: dict, row: str, n: int, key: str) -> float | None:
    """``key`` of the (row, n) point if its phase succeeded, else None. Inference runs first, so a
    point that failed in training (``failed_phase`` train) still has valid ``infer_*`` numbers."""
    r = idx.get((row, n))
    if r is None or r.get(key) in (None, ""):
        return None
    done = r.get("status") == "ok" or (key.startswith("infer_") and r.get("failed_phase") == "train")
    return float(r[key]) if done else None


def relative(idx: dict, row: str, n: int, key: str) -> float | None:
    """(row, n)'s ``key`` divided by vanilla SDPA's at the same n; None if either is missing."""
    v, base = ok_value(idx, row, n, key), ok_value(idx, BASELINE, n, key)
    return None if v is None or not base else v / base


def attention_cost(idx: dict, row: str, n: int, key: str = "train_median_ms") -> float | None:
    """(t - t_floor) / (t_vanilla - t_floor) at the same n: the share of vanilla's attention time kept."""
    t, floor, van = (ok_value(idx, r, n, key) for r in (row, FLOOR, BASELINE))
    if t is None or floor is None or van is None or van == floor:
        return None
    return (t - floor) / (van - floor)


def slope(idx: dict, row: str, lengths: list[int], key: str) -> float | None:
    """Least-squares slope of log(key) against log(N) over ``lengths`` (None with fewer than 2 points)."""
    pts = [(math.log(n), math.log(v)) for n in lengths if (v := ok_value(idx, row, n, key)) and v > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


LOAD_MOVED = 1.0  # a 1-minute load average that moves by more than this during a point or the sweep is flagged


def load_value(r: dict, key: str) -> float | None:
    v = r.get(key)
    return float(v) if isinstance(v, int | float) else None


def flags(rows: list[dict]) -> tuple[list[str], set[tuple[str, int, str]]]:
    """Why some timings may be wrong, and the (row, N, phase) they concern (phase ``train`` or
    ``infer``): a floor (no attention at all) slower than a row with attention, a negative or
    meaningless attention share, a 1-minute load average that moved by more than ``LOAD_MOVED``
    during a point or the whole sweep."""
    idx, names, reasons, points = index(rows), row_order(rows), [], set()
    for n in sorted({int(r["length"]) for r in rows}):
        for key, phase in (("train_median_ms", "train"), ("infer_median_ms", "infer")):
            floor = ok_value(idx, FLOOR, n, key)
            faster = [(m, t) for m in names if m != FLOOR and (t := ok_value(idx, m, n, key)) is not None]
            faster = [(m, t) for m, t in faster if floor is not None and t < floor]
            if faster:
                than = ", ".join(f"{m} ({t:.1f} ms)" for m, t in faster)
                what = "training step" if phase == "train" else "inference forward"
                reasons.append(f"N={label(n)}: the floor's {what} ({floor:.1f} ms) is slower than {than}")
                points |= {(FLOOR, n, phase), *((m, n, phase) for m, _ in faster)}
        van, floor = (ok_value(idx, r, n, "train_median_ms") for r in (BASELINE, FLOOR))
        if van is not None and floor is not None and van <= floor:
            reasons.append(f"N={label(n)}: vanilla is not slower than the floor, so no attention share is meaningful")
            points |= {(m, n, "train") for m in names if ok_value(idx, m, n, "train_median_ms") is not None}
        negative = [m for m in names if (c := attention_cost(idx, m, n)) is not None and c < 0]
        if negative:
            reasons.append(f"N={label(n)}: negative attention share for {', '.join(negative)}")
            points |= {(m, n, "train") for m in negative}
    loads = [(r, load_value(r, "load_start"), load_value(r, "load_end")) for r in rows]
    loads = [(r, a, b) for r, a, b in loads if a is not None and b is not None]
    moved = [(r, a, b) for r, a, b in loads if abs(b - a) > LOAD_MOVED]
    if moved:
        shown = ", ".join(f"{r['row']} N={label(int(r['length']))} ({a:.2f} -> {b:.2f})" for r, a, b in moved)
        reasons.append(f"the 1-minute load average moved by more than {LOAD_MOVED:g} while these points ran: {shown}")
        points |= {(r["row"], int(r["length"]), phase) for r, _, _ in moved for phase in ("train", "infer")}
    if loads and abs(loads[-1][2] - loads[0][1]) > LOAD_MOVED:
        reasons.append(
            f"the 1-minute load average moved from {loads[0][1]:.2f} to {loads[-1][2]:.2f} during the sweep (it"
            " includes the sweep's own process): points measured at different loads compare less well"
        )
    return reasons, points


def row_order(rows: list[dict]) -> list[str]:
    """vanilla, vanilla_naive, the other mechanisms in sweep order, floor last; unavailable rows dropped."""
    seen = list(dict.fromkeys(r["row"] for r in rows if r.get("status") != "unavailable"))
    head = [r for r in (BASELINE, NAIVE) if r in seen]
    return head + [r for r in seen if r not in (BASELINE, NAIVE, FLOOR)] + ([FLOOR] if FLOOR in seen else [])


def label(n: int) -> str:
    """A length as the tables print it: 1K, 2K, ..., or the number itself."""
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)
