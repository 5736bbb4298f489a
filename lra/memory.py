"""Process memory on Linux, without importing torch or Lightning (benchmark children use it too)."""

from __future__ import annotations

import resource


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
