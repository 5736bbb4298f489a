"""Measurement shared by training (lra.callbacks) and the benchmarks (lra-bench, lra.bench_layer).

Timing: a timed call is ``sync(); t0; fn(); sync(); t1`` on the device, since CUDA kernels run
asynchronously and an unsynchronised timer measures the launch, not the work. ``time_calls`` drops
``warmup`` calls (allocator warm-up, kernel selection) and ``summarise`` reports the median (robust
to a call slowed by another process), the 20th and 80th percentiles (``percentile``: linear
interpolation between the sorted values, x_(k) + f (x_(k+1) - x_(k)) at rank k + f = q (n - 1),
numpy's default), min, max and every value.

Peak memory in MB since the last ``reset_peak(dev)``, ``peak_mb(dev, base)``:
- CUDA: the allocator's ``max_memory_allocated`` (tensors only: weights, gradients, optimizer
  state, activations; not the CUDA context or the allocator's cached blocks);
- CUDA, reserved (``peak_reserved_mb``): ``max_memory_reserved``, what the caching allocator held
  from the driver at its peak (allocated plus cached blocks; None on CPU);
- CPU: the process's peak resident set (``VmHWM`` in ``/proc/self/status``), which Linux lets a
  process reset to its current size (``/proc/self/clear_refs``, Linux >= 4.0), minus ``base``
  (the resident set before the measured objects existed, ``rss_mb()``).

Conditions a CPU timing depends on (torch threads, usable CPUs, the load average) and the device's
name are read here too, and the benchmark's fixed row names: ``vanilla`` (SDPA, the baseline every
relative column divides by), ``vanilla_naive`` (N x N scores materialised) and ``floor`` (no token
mixing), and its phases (``PHASES``, in the order a point runs them): ``op_forward`` and
``op_forward_backward`` (one attention layer alone), ``inference`` and ``train_step`` (the encoder).
Nothing here imports torch at module level: benchmark children import this module before their
memory cap is set, and ``lra.bench_report`` needs only the row names.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
BASELINE, NAIVE, FLOOR = "vanilla", "vanilla_naive", "floor"
PHASES = ("op_forward", "op_forward_backward", "inference", "train_step")


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """A readable name: the GPU's, or ``<cpu model> (<n> cores)``."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model} ({os.cpu_count()} cores)"


def record_device(device) -> str:
    """The result record's ``device``: the GPU's name, or ``cpu (<n> cores)`` (lra-table compares runs
    by it; the CPU model, which ``device_name`` adds, is left out)."""
    device = str(device)
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def device_slug(device: str) -> str:
    """Folder name for a device: ``cpu-amd-epyc``, ``cuda-nvidia-h100-80gb-hbm3``."""
    dev = resolve_device(device)
    name = device_name(dev).split(" (")[0]
    kind = "cuda" if dev.startswith("cuda") else "cpu"
    return kind + "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def sync(dev) -> None:
    """Wait for the device's queued work (a no-op on CPU, where every call is synchronous)."""
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize(dev)


# ---------------------------------------------------------------------------------------------
# Memory (Linux /proc; elsewhere the peak falls back to getrusage and cannot be reset)
# ---------------------------------------------------------------------------------------------
def _status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` field (kB) in MB, None where there is no such file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def release_freed() -> None:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc ``malloc_trim(0)``).

    Freed tensors stay in the process's heap (glibc keeps them for reuse), so the resident set does
    not fall when an earlier phase's objects are freed: a later phase would then reuse them without
    raising the resident set and read a peak near 0 MB. Called before each baseline ``rss_mb()``.
    Without glibc (musl, macOS) only the garbage collection runs.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb() -> float:
    """Current resident set size of this process in MB."""
    mb = _status_mb("VmRSS")
    return mb if mb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_mb() -> float:
    """Size of this process's data segment in MB (what RLIMIT_DATA limits)."""
    mb = _status_mb("VmData")
    if mb is None:
        raise OSError("no /proc/self/status: cannot read the data segment size")
    return mb


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size to its current size (Linux); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB since start or the last ``reset_peak_rss``."""
    mb = _status_mb("VmHWM")
    return mb if mb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak(dev) -> None:
    """Start a new peak: the CUDA allocator's, or on CPU the kernel's resident high-water mark, so
    that earlier peaks (imports, an earlier job or phase) do not count."""
    if dev.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(dev)
    elif not reset_peak_rss():
        log.warning("cannot reset the peak RSS; CPU memory peaks include everything before")


def peak_mb(dev, base_rss_mb: float = 0.0) -> float:
    """CUDA: allocator peak since the last reset. CPU: peak RSS since the last reset minus ``base_rss_mb``."""
    if dev.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(dev) / 2**20
    return peak_rss_mb() - base_rss_mb


def peak_reserved_mb(dev) -> float | None:
    """CUDA: the caching allocator's peak reserved memory since the last reset; None on CPU."""
    if dev.type != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_reserved(dev) / 2**20


# ---------------------------------------------------------------------------------------------
# Timing and the conditions it ran under
# ---------------------------------------------------------------------------------------------
def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int, dev) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, CUDA synchronised."""
    times = []
    for i in range(warmup + repeats):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between the sorted values (numpy's default)."""
    xs = sorted(values)
    rank = q / 100 * (len(xs) - 1)
    k = min(int(rank), len(xs) - 1)
    return xs[k] + (rank - k) * (xs[min(k + 1, len(xs) - 1)] - xs[k])


def summarise(times: list[float], prefix: str) -> dict:
    """Median, 20th and 80th percentiles, min, max and every value (ms) under ``<prefix>_*`` keys."""
    ms = [1000 * t for t in times]
    return {
        f"{prefix}_median_ms": statistics.median(ms),
        f"{prefix}_p20_ms": percentile(ms, 20),
        f"{prefix}_p80_ms": percentile(ms, 80),
        f"{prefix}_min_ms": min(ms),
        f"{prefix}_max_ms": max(ms),
        f"{prefix}_times_ms": ";".join(f"{t:.6g}" for t in ms),  # 6 digits: sub-ms op phases keep theirs
    }


def cpu_conditions() -> dict[str, int]:
    """What the CPU timing ran with: torch's intra-op threads and the CPUs this process may use."""
    import torch

    return {"threads": torch.get_num_threads(), "cpus_available": len(os.sched_getaffinity(0))}


def load_average() -> list[float]:
    """The system's 1, 5 and 15 minute load averages (other processes competing for the CPUs)."""
    return [round(x, 2) for x in os.getloadavg()]
