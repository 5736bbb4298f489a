"""One benchmark point per fresh process, so that no point's memory, caches or threads leak into the next.

The parent (``run_child``) starts ``python -c "from lra.bench_child import child_main; child_main()"``
and writes one JSON job on its stdin: ``{"target": "module:function", "kwargs": {...},
"mem_limit_gb": ...}``. The child (``child_main``) imports the target, calls it, and prints each
record it returns or yields as a line ``@@lra-bench <json>`` on stdout, then ``{"phase": "done"}``;
an exception becomes ``{"phase": "failed", "status": "oom" | "error", "detail": ...}``. Other output
(warnings, progress) goes through untouched and is ignored.

The parent never raises for a child's failure: a timeout kills the child (status ``timeout``), an
exit without the ``done`` line is a ``crash`` (or ``oom`` when SIGKILL ended it, the kernel's OOM
killer's signal), and the records that did arrive are kept (an inference phase that finished
before the training phase failed still counts).

CPU memory cap: ``RLIMIT_DATA`` = the child's data segment after its imports + ``mem_limit_gb``, so
an allocation past it fails inside torch ("can't allocate memory", recorded as oom) instead of
waking the OOM killer, which may pick another process on a shared machine.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lra.measure import data_mb

ROOT = Path(__file__).resolve().parents[1]
MARK = "@@lra-bench "  # prefix of the child's result lines on stdout


def failure_status(e: BaseException) -> str:
    """``oom`` for an allocation failure (CPU or CUDA), ``error`` for anything else."""
    text = f"{type(e).__name__}: {e}".lower()
    oom = isinstance(e, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    return "oom" if oom else "error"


def limit_memory(limit_gb: float | None) -> None:
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
        print(MARK + json.dumps(record), flush=True)

    try:
        import torch  # noqa: F401 - imported before the memory cap, which is meant for the work alone

        module, _, name = job["target"].partition(":")
        fn = getattr(importlib.import_module(module), name)
        limit_memory(job.get("mem_limit_gb"))
        result = fn(**job["kwargs"])
        for record in [result] if isinstance(result, dict) else result:
            emit(record)
        emit({"phase": "done"})
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        emit({"phase": "failed", "status": failure_status(e), "detail": f"{type(e).__name__}: {str(e).strip()[:300]}"})


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
    cmd = [sys.executable, "-c", "from lra.bench_child import child_main; child_main()"]
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
    result.records = [json.loads(line[len(MARK) :]) for line in out.splitlines() if line.startswith(MARK)]
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
