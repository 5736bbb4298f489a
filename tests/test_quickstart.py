"""The README's quickstart numbers are what ``lra-train experiment=quickstart`` prints, at its real size.

The trust anchor of the README: the run takes about 1.5 min on an idle 2-core CPU (over 20 min when
the machine is shared by several trainings, hence the generous timeout), and the
quickstart sets ``trainer.deterministic: true``, so the accuracies are the same on every run of one
machine; the README quotes them per CPU kernel set (torch's float reductions differ between them).
Timings (ms, tokens/s) vary with the machine and are not checked.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ACCURACIES = re.compile(r"val_acc (\d\.\d{4}) test_acc (\d\.\d{4})")
ROW = re.compile(r"^\| ([^|]+?) \| `val_acc (\d\.\d{4}) test_acc (\d\.\d{4})` \|$", re.M)


def quoted_by_kernels() -> dict[str, tuple[str, str]]:
    """The quickstart section's table: CPU kernel set -> (val_acc, test_acc) it prints."""
    section = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return {kernels: (val, test) for kernels, val, test in ROW.findall(section)}


def test_readme_quickstart_accuracies_are_what_the_command_prints(tmp_path):
    rows = quoted_by_kernels()
    assert len(rows) >= 1, "the README's quickstart should quote 'val_acc X test_acc Y' per CPU kernel set"
    kernels = torch.backends.cpu.get_cpu_capability()
    quoted = [rows[kernels]] if kernels in rows else list(rows.values())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout; LRA_DATA_DIR as the suite has it
    env.setdefault("LRA_DATA_DIR", str(tmp_path / "data"))
    cmd = [sys.executable, "-m", "lra.train", "experiment=quickstart", "trainer.enable_progress_bar=false",
           "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = ACCURACIES.findall(proc.stdout + proc.stderr)
    assert len(printed) == 1 and printed[0] in quoted, (
        f"README quotes val/test {quoted} for {kernels} kernels, the command printed {printed}"
    )
