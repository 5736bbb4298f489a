"""Speed and memory of one attention layer, forward + backward, each point in a fresh process.

    python -m lra.bench_layer --attention vanilla cast --lengths 1024 4096 16384 --batch 8

Prints one line per (attention, length) and, with ``--csv FILE``, writes the raw numbers.
Peak memory on CPU is the child process's peak resident set minus its resident set just
before the inputs were made (so the torch import is not counted); on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(
    attention: str,
    options: dict,
    length: int,
    batch: int,
    d_model: int,
    n_heads: int,
    repeats: int,
    warmup: int,
    device: str,
    seed: int = 0,
) -> dict:
    """Time forward+backward of one layer in this process. Returns a dict of raw numbers."""
    import torch

    from models.attention import build_attention

    torch.manual_seed(seed)
    dev = torch.device(device)
    layer = build_attention(attention, d_model=d_model, n_heads=n_heads, **options).to(dev).train()
    base_mb = _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base_cuda = torch.cuda.memory_allocated(dev)
    x = torch.randn(batch, length, d_model, device=dev, requires_grad=True)
    mask = torch.ones(batch, length, dtype=torch.bool, device=dev)

    def step():
        y = layer(x, mask)
        y.square().mean().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(dev) - base_cuda) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_mb
    return {
        "attention": attention,
        "options": json.dumps(options, sort_keys=True),
        "length": length,
        "batch": batch,
        "d_model": d_model,
        "n_heads": n_heads,
        "device": device,
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "max_ms": 1000 * max(times),
        "repeats": repeats,
        "peak_mem_mb": peak,
        "status": "ok",
    }


def run_point(attention: str, options: dict, length: int, *, timeout_s: float, **kw) -> dict:
    """Run ``measure`` in a fresh subprocess; an OOM, crash or timeout is recorded, not raised."""
    args = json.dumps({"attention": attention, "options": options, "length": length, **kw})
    cmd = [sys.executable, "-m", "lra.bench_layer", "--child", args]
    row = {"attention": attention, "options": json.dumps(options, sort_keys=True), "length": length, **kw}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**row, "status": f"timeout>{timeout_s:.0f}s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        status = "oom" if "out of memory" in proc.stderr.lower() or proc.returncode == -9 else f"error: {tail[0]}"
        return {**row, "status": status}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument(
        "--attention",
        nargs="+",
        default=["vanilla"],
        help='names, optionally with JSON options: \'vanilla:{"impl":"naive"}\'',
    )
    p.add_argument("--lengths", nargs="+", type=int, default=[1024, 4096, 16384])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per point")
    p.add_argument("--csv", help="write the raw rows here")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(**json.loads(a.child))))
        return
    rows = []
    for spec in a.attention:
        name, _, opts = spec.partition(":")
        options = json.loads(opts) if opts else {}
        for n in a.lengths:
            row = run_point(
                name,
                options,
                n,
                timeout_s=a.timeout,
                batch=a.batch,
                d_model=a.d_model,
                n_heads=a.heads,
                repeats=a.repeats,
                warmup=a.warmup,
                device=a.device,
            )
            rows.append(row)
            if row["status"] == "ok":
                print(
                    f"{spec:40s} N={n:6d}  {row['median_ms']:10.1f} ms  peak {row['peak_mem_mb']:9.1f} MB", flush=True
                )
            else:
                print(f"{spec:40s} N={n:6d}  {row['status']}", flush=True)
    if a.csv:
        keys = sorted({k for r in rows for k in r})
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
