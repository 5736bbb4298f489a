"""Speed and memory of one attention layer, forward + backward, each point in a fresh process.

    python -m lra.bench_layer --attention vanilla cast --lengths 1024 4096 16384 --batch 8

A quick probe for whoever works on a mechanism; the sweep with tables and plots is ``lra-bench``
(lra.bench), whose ``op_forward_backward`` phase this is (lra.bench_point.op_calls), and whose child
processes (lra.bench_child) and measurement (lra.measure) this module shares.
Options at each length are the mechanism's as ``lra-bench`` sizes them (configs/attention/<name>.yaml
resolved at ``task.max_len = N``, ``lra.bench_plan.attention_config``), updated by the JSON options
given after the name; so ``cast`` at 4096 gets 64 x 64 clusters and ``linformer`` max_len 4096.
Prints one line per (attention, length) and, with ``--csv FILE``, writes the raw numbers.
Peak memory on CPU is the child process's peak resident set minus its resident set just
before the layer and inputs were made (so the torch import is not counted); on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lra.bench_child import run_child
from lra.bench_plan import attention_config
from lra.bench_point import op_calls
from lra.bench_report import write_csv
from lra.measure import peak_mb, reset_peak, rss_mb, summarise, time_calls


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
    threads: int | None = None,
) -> dict:
    """Time forward+backward of one layer in this process (``lra-bench``'s ``op_forward_backward``,
    lra.bench_point.op_calls). Returns a dict of raw numbers."""
    import contextlib

    import torch

    from lra.attention_check import build_layer

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    dev = torch.device(device)
    base_mb = rss_mb()
    layer = build_layer(attention, options, d_model=d_model, n_heads=n_heads).to(dev).train()
    reset_peak(dev)
    step = op_calls(layer, batch=batch, length=length, d_model=d_model, dev=dev, autocast=contextlib.nullcontext())
    step = step["op_forward_backward"]  # lra-bench's phase of the same name

    times = time_calls(step, warmup=warmup, repeats=repeats, dev=dev)
    stats = {k.removeprefix("step_"): v for k, v in summarise(times, "step").items()}
    return {**stats, "peak_mem_mb": peak_mb(dev, base_mb)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per point")
    p.add_argument("--csv", help="write the raw rows here")
    a = p.parse_args(argv)
    rows = []
    for spec in a.attention:
        name, _, opts = spec.partition(":")
        given = json.loads(opts) if opts else {}
        for n in a.lengths:
            sized = attention_config(name, n)
            if sized is None:
                raise SystemExit(f"lra.bench_layer: no such attention '{name}' (registered: see lra-bench's rows)")
            options = {**sized, **given}
            kw = dict(batch=a.batch, d_model=a.d_model, n_heads=a.heads, repeats=a.repeats, warmup=a.warmup)
            kw.update(attention=name, options=options, length=n, device=a.device, threads=a.threads)
            res = run_child("lra.bench_layer:measure", kw, timeout_s=a.timeout)
            row = {**kw, "options": json.dumps(options, sort_keys=True), "status": res.status, "detail": res.detail}
            row.update(res.records[0] if res.records else {})
            rows.append(row)
            if res.status == "ok":
                msg = f"{row['median_ms']:10.1f} ms  peak {row['peak_mem_mb']:9.1f} MB"
                print(f"{spec:40s} N={n:6d}  {msg}", flush=True)
            else:
                print(f"{spec:40s} N={n:6d}  {res.status}: {res.detail}", flush=True)
    if a.csv:
        write_csv(Path(a.csv), rows)


if __name__ == "__main__":
    main()
