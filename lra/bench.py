"""``lra-bench``: speed and peak memory of every attention mechanism against sequence length.

    lra-bench                                                   # configs/bench.yaml's full grid
    lra-bench mechanisms=[vanilla,cast] lengths=[1024,2048] batch=2

LRA Table 2 protocol: the Text task's encoder and classifier. For each (row, length) point a
fresh subprocess builds the model and times, after ``warmup`` untimed calls, ``repeats``
inference forwards (eval, no grad) and then ``repeats`` full training steps (forward,
cross-entropy, backward, AdamW step), CUDA synchronised around each. Rows are the configured
mechanisms plus ``vanilla_naive`` (vanilla with ``impl: naive``) and ``floor`` (the same encoder
with every attention layer replaced by the identity, so ``(step - floor) / (vanilla - floor)`` is
the share of vanilla's attention cost a mechanism keeps).

Peak memory: on CUDA ``max_memory_allocated`` after a reset (weights and optimizer state
included); on CPU the child's peak resident set during the phase (the kernel's high-water mark,
reset before each phase) minus its resident set before the model and inputs exist, taken after
one step of a tiny model so that the torch libraries' code pages and lazily initialised runtime
state are in the baseline (weights, gradients, optimizer state and activations are counted).

An OOM, an exception, a crash or a timeout is recorded in the point's row and the sweep goes on.
Outputs in ``out_dir`` (a new ``results/efficiency/<device>-<date>_<time>/`` per run; a folder that
already holds files, e.g. committed results, is refused unless ``overwrite=true``): points.csv,
table.md, speed.png, memory.png, README.md (lra.bench_report). Each point records the 1-minute load
average before and after it; the table flags points whose numbers the machine may have bent.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import lra.resolvers  # noqa: F401  (the attention configs' ${sqrt_pow2:...} etc.)
from lra.config import CONFIG_DIR
from lra.memory import data_mb, peak_rss_mb, reset_peak_rss, rss_mb

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
BASELINE, NAIVE, FLOOR = "vanilla", "vanilla_naive", "floor"
_MARK = "@@lra-bench "  # prefix of the child's result lines on stdout
MODEL_KEYS = ("n_layers", "d_model", "n_heads", "d_mlp", "d_head", "dropout", "attn_dropout", "positions", "pool")


# ---------------------------------------------------------------------------------------------
# Devices and memory
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


def device_slug(device: str) -> str:
    """Folder name for a device: ``cpu-amd-epyc``, ``cuda-nvidia-h100-80gb-hbm3``."""
    dev = resolve_device(device)
    name = device_name(dev).split(" (")[0]
    kind = "cuda" if dev.startswith("cuda") else "cpu"
    return kind + "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


OmegaConf.register_new_resolver("device_slug", device_slug, replace=True)


def reset_peak(dev) -> None:
    """Start a new peak: the CUDA allocator's, or on CPU the kernel's resident high-water mark
    (``/proc/self/clear_refs``, Linux >= 4.0), so that earlier peaks (imports) do not count."""
    import torch

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    elif not reset_peak_rss():
        log.warning("cannot reset the peak RSS; CPU memory peaks include everything before")


def peak_mb(dev, base_rss_mb: float) -> float:
    """CUDA: allocator peak since the last reset. CPU: peak RSS since the last reset minus ``base_rss_mb``."""
    import torch

    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return peak_rss_mb() - base_rss_mb


def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int, dev) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, CUDA synchronised."""
    import torch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times = []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def summarise(times: list[float], prefix: str) -> dict:
    """Median, min, max and every value (ms) under ``<prefix>_*`` keys."""
    ms = [1000 * t for t in times]
    return {
        f"{prefix}_median_ms": statistics.median(ms),
        f"{prefix}_min_ms": min(ms),
        f"{prefix}_max_ms": max(ms),
        f"{prefix}_times_ms": ";".join(f"{t:.2f}" for t in ms),
    }


# ---------------------------------------------------------------------------------------------
# Child processes: one per point, results as marked JSON lines on stdout
# ---------------------------------------------------------------------------------------------
def _failure(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".lower()
    oom = isinstance(e, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    return "oom" if oom else "error"


def _limit_memory(limit_gb: float | None) -> None:
    """Cap this process's data segment at its current size + ``limit_gb``: a larger allocation fails
    with a torch "can't allocate memory" error (recorded as oom) instead of waking the OOM killer."""
    if not limit_gb:
        return
    cap = int(data_mb() * 2**20 + limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, resource.getrlimit(resource.RLIMIT_DATA)[1]))


def child_main() -> None:
    """Entry of a child: run ``target(**kwargs)`` from the JSON on stdin, print each record it gives."""
    job = json.loads(sys.stdin.read())

    def emit(record: dict) -> None:
        print(_MARK + json.dumps(record), flush=True)

    try:
        import torch  # noqa: F401 - imported before the memory cap, which is meant for the work alone

        module, _, name = job["target"].partition(":")
        fn = getattr(importlib.import_module(module), name)
        _limit_memory(job.get("mem_limit_gb"))
        result = fn(**job["kwargs"])
        for record in [result] if isinstance(result, dict) else result:
            emit(record)
        emit({"phase": "done"})
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        emit({"phase": "failed", "status": _failure(e), "detail": f"{type(e).__name__}: {str(e).strip()[:300]}"})


@dataclass
class ChildResult:
    records: list[dict] = field(default_factory=list)
    status: str = "ok"  # ok | oom | error | timeout | crash
    detail: str = ""
    wall_s: float = 0.0


def run_child(target: str, kwargs: dict, *, timeout_s: float, mem_limit_gb: float | None = None) -> ChildResult:
    """Run ``target`` ("module:function") in a fresh Python process; never raises for its failures.

    The child imports this checkout (PYTHONPATH), so parent and child run the same code.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    job = json.dumps({"target": target, "kwargs": kwargs, "mem_limit_gb": mem_limit_gb})
    cmd = [sys.executable, "-c", "from lra.bench import child_main; child_main()"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    result = ChildResult()
    try:
        out, err = proc.communicate(job, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        result.status, result.detail = "timeout", f"no result within {timeout_s:g} s"
    result.wall_s = time.perf_counter() - t0
    result.records = [json.loads(line[len(_MARK) :]) for line in out.splitlines() if line.startswith(_MARK)]
    last = result.records[-1] if result.records else {}
    if result.status == "timeout":
        pass
    elif last.get("phase") == "failed":
        result.status, result.detail = last["status"], last["detail"]
    elif last.get("phase") != "done":
        tail = (err.strip().splitlines() or [""])[-1][:300]
        if proc.returncode == -9:
            result.status, result.detail = "oom", "killed by SIGKILL (the kernel's OOM killer?) " + tail
        else:
            result.status, result.detail = "crash", f"exit code {proc.returncode}: {tail}"
    result.records = [r for r in result.records if r.get("phase") not in ("done", "failed")]
    return result


# ---------------------------------------------------------------------------------------------
# One point: the model, the inputs, the timed calls (runs in the child)
# ---------------------------------------------------------------------------------------------
def _no_mixing():
    from torch import Tensor, nn

    from models.attention._common import zero_padding

    class NoMixing(nn.Module):
        """The floor's "attention": the identity (no token mixing, no projections), zero at padding."""

        def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
            return zero_padding(x, mask)  # (B, N, D)

    return NoMixing()


def build_classifier(
    *, attention: str | None, options: dict, length: int, model: dict, vocab_size: int, n_classes: int
):
    """The Text-task classifier for one point; ``attention=None`` builds the no-mixing floor."""
    from models.encoder import Classifier, Encoder

    enc_args = {k: v for k, v in model.items() if k != "d_head"}
    encoder = Encoder(
        vocab_size=vocab_size,
        max_len=length,
        attention=attention or BASELINE,
        attention_options=options if attention else {},
        **enc_args,
    )
    if attention is None:
        for block in encoder.blocks:
            block.attn = _no_mixing()
    return Classifier(encoder, n_classes=n_classes, d_model=model["d_model"], d_head=model["d_head"])


def measure(
    *,
    attention: str | None,
    options: dict,
    length: int,
    model: dict,
    vocab_size: int,
    n_classes: int,
    batch: int,
    device: str,
    dtype: str,
    warmup: int,
    repeats: int,
    seed: int,
    threads: int | None = None,
) -> Iterator[dict]:
    """Time inference forwards, then training steps, of one point; yields one record per phase."""
    import contextlib
    import gc

    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def calls(net, n: int):
        """infer() and train_step() of ``net`` on a random batch of ``n`` tokens."""
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.1)
        ids = torch.randint(1, vocab_size, (batch, n), device=dev)  # (B, N), no padding id 0
        mask = ids != 0  # (B, N) all True, passed as lra-train passes it
        labels = torch.randint(0, n_classes, (batch,), device=dev)

        def infer():
            with torch.no_grad(), autocast:
                net(ids, mask)

        def train_step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = net(ids, mask)  # (B, n_classes)
            F.cross_entropy(logits.float(), labels).backward()
            opt.step()

        return infer, train_step

    def build(attention, n, layers):
        args = dict(options=options, model={**model, "n_layers": layers}, vocab_size=vocab_size, n_classes=n_classes)
        return build_classifier(attention=attention, length=n, **args).to(dev)

    # One step of a tiny floor model first, so that code pages and lazily initialised runtime state
    # (autograd engine, optimizer kernels, thread pools: ~90 MB RSS) are in the CPU baseline.
    for fn in calls(build(None, 16, 1), 16):
        fn()
    gc.collect()
    torch.manual_seed(seed)
    base_rss = rss_mb()  # before the measured model and its inputs
    net = build(attention, length, model["n_layers"])
    infer, train_step = calls(net, length)

    for phase, fn, rate in (("infer", infer, "infer_forwards_per_s"), ("train", train_step, "train_steps_per_s")):
        net.train(phase == "train")  # inference in eval mode
        reset_peak(dev)
        rec = summarise(time_calls(fn, warmup=warmup, repeats=repeats, dev=dev), phase)
        median_s = rec[f"{phase}_median_ms"] / 1000
        yield {"phase": phase, **rec, rate: 1 / median_s, f"{phase}_tokens_per_s": batch * length / median_s,
               f"{phase}_peak_mem_mb": peak_mb(dev, base_rss)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The sweep (runs in the parent)
# ---------------------------------------------------------------------------------------------
@dataclass
class Point:
    """One (row, length) of the grid. ``attention`` is the registry name, None for the floor."""

    row: str
    attention: str | None
    options: dict
    length: int
    timeout_s: float
    unavailable: str = ""  # why this row cannot run (not registered, no config)
    mem_limit_gb: float | None = None  # CPU memory cap for this point instead of the sweep's


def attention_config(name: str, length: int) -> dict | None:
    """Options from configs/attention/<name>.yaml (without ``name``) for sequences of ``length``
    (sizes such as CAST's clusters follow ``task.max_len``), None if there is no such file."""
    path = Path(CONFIG_DIR) / "attention" / f"{name}.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.create({"task": {"max_len": int(length)}, "attention": OmegaConf.load(path)})
    opts = OmegaConf.to_container(cfg.attention, resolve=True)
    opts.pop("name", None)
    return opts


def plan(cfg: DictConfig) -> list[Point]:
    """The grid: every configured mechanism (+ vanilla_naive, + floor) at every length, row by row."""
    from models.attention import available

    raw = OmegaConf.to_container(cfg.per_length, resolve=True) if cfg.per_length else {}
    per_length = {name: {str(n): o for n, o in by_len.items()} for name, by_len in raw.items()}  # "1024" or 1024
    for name, by_len in per_length.items():
        if not (Path(CONFIG_DIR) / "attention" / f"{name}.yaml").is_file() and name not in available():
            raise ValueError(f"per_length.{name}: no attention of that name (no configs/attention/{name}.yaml)")
        bad = [k for k in by_len if not str(k).isdigit()]
        if bad:
            raise ValueError(f"per_length.{name}: keys must be sequence lengths, got {bad}")
    rows: list[tuple[str, str | None, dict, str]] = []  # row, attention, options on top of its config, why not
    for name in cfg.mechanisms:
        why = ""
        if name not in available():
            why = f"'{name}' is not registered in models.attention (available: {', '.join(available())})"
        elif not (Path(CONFIG_DIR) / "attention" / f"{name}.yaml").is_file():
            why = f"no configs/attention/{name}.yaml"
        rows.append((name, name, {}, why))
        if name == BASELINE and cfg.vanilla_naive:
            rows.append((NAIVE, name, {"impl": "naive"}, why))
    if cfg.floor:
        rows.append((FLOOR, None, {}, ""))
    points = []
    for row, attention, own, why in rows:
        for n in cfg.lengths:
            opts = (attention_config(attention, n) or {}) if attention else {}
            extra = per_length.get(attention, {}).get(str(n), {}) if attention else {}
            points.append(Point(row, attention, {**opts, **own, **extra}, int(n), float(cfg.timeout_s), why))
    return points


def settings(cfg: DictConfig) -> dict:
    """What every child needs besides the point: model, data sizes, device, batch, dtype, repeats."""
    device = resolve_device(cfg.device)
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"dtype must be auto, fp32 or bf16, got '{cfg.dtype}'")
    batch = cfg.batch if cfg.batch is not None else (cfg.batch_gpu if device.startswith("cuda") else cfg.batch_cpu)
    return {
        "model": {k: cfg.model[k] for k in MODEL_KEYS},
        "vocab_size": int(cfg.vocab_size),
        "n_classes": int(cfg.n_classes),
        "batch": int(batch),
        "device": device,
        "dtype": dtype,
        "warmup": int(cfg.warmup),
        "repeats": int(cfg.repeats),
        "seed": int(cfg.seed),
        "threads": cfg.cpu_threads if device == "cpu" else None,
    }


def run_point(point: Point, setup: dict, *, mem_limit_gb: float | None) -> dict:
    """Measure one point in a fresh process; returns its CSV row (status ok or why not)."""
    row = {"row": point.row, "attention": point.attention or "none", "length": point.length}
    row["options"] = json.dumps(point.options, sort_keys=True)
    if point.unavailable:
        return {**row, "status": "unavailable", "detail": point.unavailable}
    kwargs = {"attention": point.attention, "options": point.options, "length": point.length, **setup}
    limit = (point.mem_limit_gb or mem_limit_gb) if setup["device"] == "cpu" else None
    res = run_child("lra.bench:measure", kwargs, timeout_s=point.timeout_s, mem_limit_gb=limit)
    for rec in res.records:
        row.update({k: v for k, v in rec.items() if k != "phase"})
    phases = [r["phase"] for r in res.records]
    failed = "" if res.status == "ok" else "infer" if "infer" not in phases else "train"
    return {**row, "status": res.status, "failed_phase": failed, "detail": res.detail, "wall_s": round(res.wall_s, 1)}


def sweep(
    points: list[Point], setup: dict, *, mem_limit_gb: float | None, skip_longer: bool = False, on_row=None
) -> list[dict]:
    """Every point in turn under a progress bar; ``on_row(rows)`` after each (to save partial results).

    With ``skip_longer``, once a row runs out of memory or time, its longer lengths are not run
    (status ``skipped``): they would only fail later and slower.
    """
    from tqdm import tqdm

    rows, failed_at = [], {}  # row -> (status, length) of its first oom/timeout
    bar = tqdm(points, desc="lra-bench", unit="point", dynamic_ncols=True)
    for point in bar:
        bar.set_postfix_str(f"{point.row} N={point.length}")
        if skip_longer and point.row in failed_at and point.length > failed_at[point.row][1]:
            status, n = failed_at[point.row]
            row = {"row": point.row, "attention": point.attention or "none", "length": point.length,
                   "options": json.dumps(point.options, sort_keys=True), "status": "skipped",
                   "detail": f"not run: {status} at N={n}"}  # fmt: skip
        else:
            load_start = os.getloadavg()[0]
            row = run_point(point, setup, mem_limit_gb=mem_limit_gb)
            row.update(load_start=round(load_start, 2), load_end=round(os.getloadavg()[0], 2))
        if row["status"] in ("oom", "timeout"):
            failed_at.setdefault(point.row, (row["status"], point.length))
        rows.append(row)
        if row["status"] == "ok":
            msg = f"{row['train_median_ms']:.1f} ms/step, peak {row['train_peak_mem_mb']:.0f} MB"
        else:
            msg = f"{row['status']} {row.get('detail', '')}"
        bar.write(f"{point.row:>20s} N={point.length:<6d} {msg}")
        if on_row:
            on_row(rows)
    return rows


class OutDirTaken(ValueError):
    """``out_dir`` already holds files and ``overwrite`` is off."""


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds files (naming those tracked by git) unless ``overwrite``."""
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not present or overwrite:
        return
    try:
        listed = subprocess.run(["git", "-C", str(out), "ls-files", "."], capture_output=True, text=True, check=True)
        tracked = sorted({Path(line).parts[0] for line in listed.stdout.splitlines() if line})
    except (OSError, subprocess.CalledProcessError):  # no git, or not in a repository
        tracked = []
    names = tracked or present
    shown = ", ".join(names[:4]) + (f", +{len(names) - 4} more" if len(names) > 4 else "")
    what = f"results committed to git ({shown})" if tracked else f"files of an earlier run or by hand ({shown})"
    raise OutDirTaken(
        f"{out} already holds {what}; leave out_dir out for a new folder per run, or add overwrite=true to write"
        " over them"
    )


def run(cfg: DictConfig, command: str = "lra-bench", points: list[Point] | None = None) -> list[dict]:
    """Plan (or take) the points, sweep them, write every output into ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    check_out_dir(out, bool(cfg.overwrite))  # before anything is measured or written
    import torch

    from lra import bench_report

    setup = settings(cfg)
    points = plan(cfg) if points is None else points
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "device_name": device_name(setup["device"]),
        "torch": torch.__version__,
        "dtype": setup["dtype"],
        "batch": setup["batch"],
        "threads": setup["threads"] or "default",
        "warmup": setup["warmup"],
        "repeats": setup["repeats"],
        **{k: setup["model"][k] for k in ("n_layers", "d_model", "n_heads", "d_mlp")},
    }
    info = {
        "command": command,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_before": os.getloadavg(),
        "device": setup["device"],
        "cfg": cfg,
        "meta": meta,
    }
    log.info("%d points on %s, batch %d, %s; results in %s", len(points), meta["device_name"], setup["batch"],
             setup["dtype"], out)  # fmt: skip

    def save(rows):
        bench_report.write_csv(out / "points.csv", [{**r, **meta, "timeout_s": cfg.timeout_s} for r in rows])

    t0 = time.perf_counter()
    rows = sweep(points, setup, mem_limit_gb=cfg.cpu_mem_limit_gb, skip_longer=cfg.skip_longer, on_row=save)
    info.update(wall_s=time.perf_counter() - t0, load_after=os.getloadavg())
    bench_report.write_all(out, rows, lengths=[int(n) for n in cfg.lengths], info=info)
    for reason in bench_report.flags(rows)[0]:
        log.warning("flagged (marked ! in %s): %s", out / "table.md", reason)
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    launcher = "lra-bench" if Path(sys.argv[0]).name == "lra-bench" else "python -m lra.bench"
    try:
        run(cfg, command=" ".join([launcher, *HydraConfig.get().overrides.task]))
    except OutDirTaken as e:
        print(f"lra-bench: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
