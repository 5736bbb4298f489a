"""What the rows of ``lra-bench`` say: the numbers its table derives from them and the timings it flags.

A row is one (attention row, length) point as in points.csv. ``ok_value`` is a number only where the
phase it measures (``<phase>_...``, lra.measure.PHASES) succeeded: the point's status is ok or the
phase is in its ``phases_done`` (a point that timed out in ``train_step`` keeps its earlier phases).
At each length N, t = a phase's median time:

- relative = value / value of ``vanilla`` (SDPA) at the same N;
- attention cost = (t - t_floor) / (t_vanilla - t_floor), the share of vanilla's attention time kept
  (0 = no more than no token mixing at all, 1 = as much as exact attention);
- share above the floor = (t - t_floor) / t, the part of a mechanism's own step spent above the
  no-mixing floor (its attention's share of its step);
- slope = the least-squares slope of log(value) against log(N) (1 = linear, 2 = quadratic);
- efficiency length of a mechanism in a phase (``efficiency_length``): the shortest measured N from
  which it beats vanilla SDPA at every longer measured N. It beats vanilla at N when its phase
  succeeded there and vanilla's is slower or ran out of memory or time (oom, timeout, or skipped
  after one); it loses at N when vanilla's phase succeeded and its own is not faster or failed;
  N where neither is known (both failed, a point missing, vanilla's error) decide nothing. The
  efficiency length is the smallest N where it beats vanilla with no loss at any longer N; None
  ("none up to N_max") when there is no such N, e.g. when it loses at the longest decided N.

``flags`` names what the machine may have bent: a floor (no attention) slower than a row with
attention, a negative or meaningless attention share, a 1-minute load average that moved by more
than ``LOAD_MOVED`` during a point or the sweep.
"""

from __future__ import annotations

import math

from lra.measure import BASELINE, FLOOR, NAIVE, PHASES

PHASE_NAMES = {
    "op_forward": "attention forward",
    "op_forward_backward": "attention forward + backward",
    "inference": "inference forward",
    "train_step": "training step",
}
OUT_OF_RESOURCES = ("oom", "timeout", "skipped")  # vanilla failing like this at N counts as beaten


def phase_of(key: str) -> str | None:
    """The phase a column belongs to (``op_forward_backward_median_ms`` -> ``op_forward_backward``)."""
    return next((p for p in sorted(PHASES, key=len, reverse=True) if key.startswith(p + "_")), None)


def phases_done(r: dict) -> list[str]:
    """The phases a point has numbers for: every phase if ok, else those in ``phases_done``."""
    done = r.get("phases_done")
    return [p for p in str(done).split(";") if p] if isinstance(done, str) else []


def index(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["row"], int(r["length"])): r for r in rows}


def ok_value(idx: dict, row: str, n: int, key: str) -> float | None:
    """``key`` of the (row, n) point if its phase succeeded, else None (a point that failed in a later
    phase keeps the numbers of the phases before it)."""
    r = idx.get((row, n))
    if r is None or r.get(key) in (None, ""):
        return None
    done = r.get("status") == "ok" or phase_of(key) in phases_done(r)
    return float(r[key]) if done else None


def relative(idx: dict, row: str, n: int, key: str) -> float | None:
    """(row, n)'s ``key`` divided by vanilla SDPA's at the same n; None if either is missing."""
    v, base = ok_value(idx, row, n, key), ok_value(idx, BASELINE, n, key)
    return None if v is None or not base else v / base


def attention_cost(idx: dict, row: str, n: int, key: str = "train_step_median_ms") -> float | None:
    """(t - t_floor) / (t_vanilla - t_floor) at the same n: the share of vanilla's attention time kept."""
    t, floor, van = (ok_value(idx, r, n, key) for r in (row, FLOOR, BASELINE))
    if t is None or floor is None or van is None or van == floor:
        return None
    return (t - floor) / (van - floor)


def share_above_floor(idx: dict, row: str, n: int, key: str = "train_step_median_ms") -> float | None:
    """(t - t_floor) / t at the same n: the share of the row's own time above the no-mixing floor."""
    t, floor = ok_value(idx, row, n, key), ok_value(idx, FLOOR, n, key)
    return None if t is None or floor is None or t <= 0 else (t - floor) / t


def beats_vanilla(idx: dict, row: str, n: int, phase: str) -> bool | None:
    """True/False where (row, n) does/does not beat vanilla SDPA in ``phase``, None where undecided."""
    key = f"{phase}_median_ms"
    t, van = ok_value(idx, row, n, key), ok_value(idx, BASELINE, n, key)
    if van is None:
        r = idx.get((BASELINE, n))
        out = r is not None and r.get("status") in OUT_OF_RESOURCES
        return True if out and t is not None else None
    return t is not None and t < van


def efficiency_length(idx: dict, row: str, lengths: list[int], phase: str) -> int | None:
    """The shortest measured N from which ``row`` beats vanilla SDPA in ``phase`` at every longer
    measured N (module docstring); None when there is none."""
    decided = [(n, b) for n in sorted(lengths) if (b := beats_vanilla(idx, row, n, phase)) is not None]
    start = None
    for n, beats in decided:
        start = (start or n) if beats else None
    return start


def efficiency_text(idx: dict, row: str, lengths: list[int], phase: str) -> str:
    """An efficiency length as the table prints it: ``4K``, ``none up to 16K``, or ``-`` where no length
    decides (no vanilla SDPA point to compare with)."""
    if all(beats_vanilla(idx, row, n, phase) is None for n in lengths):
        return "-"
    n = efficiency_length(idx, row, lengths, phase)
    return label(n) if n is not None else f"none up to {label(max(lengths))}"


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
    """Why some timings may be wrong, and the (row, N, phase) they concern (phase one of PHASES): a
    floor (no attention at all) slower than a row with attention, a negative or meaningless attention
    share, a 1-minute load average that moved by more than ``LOAD_MOVED`` during a point or the
    whole sweep."""
    idx, names, reasons, points = index(rows), row_order(rows), [], set()
    for n in sorted({int(r["length"]) for r in rows}):
        for phase in PHASES:
            key = f"{phase}_median_ms"
            floor = ok_value(idx, FLOOR, n, key)
            faster = [(m, t) for m in names if m != FLOOR and (t := ok_value(idx, m, n, key)) is not None]
            faster = [(m, t) for m, t in faster if floor is not None and t < floor]
            if faster:
                than = ", ".join(f"{m} ({t:.1f} ms)" for m, t in faster)
                reasons.append(f"N={label(n)}: the floor's {PHASE_NAMES[phase]} ({floor:.1f} ms) is slower than {than}")
                points |= {(FLOOR, n, phase), *((m, n, phase) for m, _ in faster)}
        van, floor = (ok_value(idx, r, n, "train_step_median_ms") for r in (BASELINE, FLOOR))
        if van is not None and floor is not None and van <= floor:
            reasons.append(f"N={label(n)}: vanilla is not slower than the floor, so no attention share is meaningful")
            points |= {(m, n, "train_step") for m in names if ok_value(idx, m, n, "train_step_median_ms") is not None}
        negative = [m for m in names if (c := attention_cost(idx, m, n)) is not None and c < 0]
        if negative:
            reasons.append(f"N={label(n)}: negative attention share for {', '.join(negative)}")
            points |= {(m, n, "train_step") for m in negative}
    loads = [(r, load_value(r, "load_start"), load_value(r, "load_end")) for r in rows]
    loads = [(r, a, b) for r, a, b in loads if a is not None and b is not None]
    moved = [(r, a, b) for r, a, b in loads if abs(b - a) > LOAD_MOVED]
    if moved:
        shown = ", ".join(f"{r['row']} N={label(int(r['length']))} ({a:.2f} -> {b:.2f})" for r, a, b in moved)
        reasons.append(f"the 1-minute load average moved by more than {LOAD_MOVED:g} while these points ran: {shown}")
        points |= {(r["row"], int(r["length"]), phase) for r, _, _ in moved for phase in PHASES}
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
