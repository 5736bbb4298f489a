"""The README's quickstart numbers are what ``lra-train experiment=quickstart`` prints, at its real size.

The trust anchor of the README: the run takes about 1.5 min on an idle 2-core CPU (over 20 min when
the machine is shared by several trainings, hence the generous timeout), and the
quickstart sets ``trainer.deterministic: true``, so the accuracies are the same on every run.
Timings (ms, tokens/s) vary with the machine and are not checked.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCURACIES = re.compile(r"val_acc (\d\.\d{4}) test_acc (\d\.\d{4})")


def test_readme_quickstart_accuracies_are_what_the_command_prints(tmp_path):
    quoted = ACCURACIES.findall((ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0])
    assert len(quoted) == 1, "the README's quickstart should quote one 'val_acc X test_acc Y'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout; LRA_DATA_DIR as the suite has it
    env.setdefault("LRA_DATA_DIR", str(tmp_path / "data"))
    cmd = [sys.executable, "-m", "lra.train", "experiment=quickstart", "trainer.enable_progress_bar=false",
           "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = ACCURACIES.findall(proc.stdout + proc.stderr)
    assert printed == quoted, f"README quotes val/test {quoted[0]}, the command printed {printed}"
