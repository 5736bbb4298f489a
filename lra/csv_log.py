"""``csv/metrics.csv`` that a resumed run continues row for row.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when a run restarts in its folder and keeps up to
100 rows in memory, so a run killed and resumed lost its earlier rows. Here the rows are part of the
run's state: ``LoggedRows`` stores every row logged so far in each checkpoint, and a resumed run
starts from exactly the rows its checkpoint holds (rows the killed process logged after that
checkpoint are dropped; the resumed run logs them again). The file is rewritten atomically.

Columns are the sorted metric names plus ``step`` (as ``CSVLogger`` writes them); a row holds the
metrics of one ``log_metrics`` call, empty cells for the others.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from lra.atomic import write_text_atomic


class RunCSVLogger(Logger):
    """Rows to ``save_dir/name/metrics.csv``; the file is rewritten every ``flush_every`` rows and at the end."""

    def __init__(self, save_dir: str | Path, name: str = "csv", flush_every: int = 100):
        super().__init__()
        self._dir = Path(save_dir) / name
        self.flush_every = flush_every
        self.rows: list[dict[str, float | int]] = []
        self._unsaved = 0

    @property
    def name(self) -> str:
        return self._dir.name

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self._dir.parent)

    @property
    def log_dir(self) -> str:
        return str(self._dir)

    @property
    def path(self) -> Path:
        return self._dir / "metrics.csv"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Nothing: the resolved config is in result.json and ``.hydra/``."""

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        row["step"] = len(self.rows) if step is None else int(step)
        self.rows.append(row)
        self._unsaved += 1
        if self._unsaved >= self.flush_every:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        if not self.rows:
            return
        keys = sorted(set().union(*self.rows))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        self._dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, out.getvalue())
        self._unsaved = 0

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()

    def restore(self, rows: list[dict]) -> None:
        """Continue from the rows a checkpoint holds (the file is rewritten to them)."""
        self.rows = [dict(r) for r in rows]
        self.save()


class LoggedRows(L.Callback):
    """Carries a ``RunCSVLogger``'s rows in every checkpoint and hands them back when a fit resumes.

    Testing from ``best.ckpt`` also loads callback states; those rows are ignored: they are applied
    when a fit starts (``on_fit_start``, after Lightning restored the checkpoint; ``on_train_start``
    for strategies that restore after setup), which a test never reaches.
    """

    def __init__(self, logger: RunCSVLogger):
        self.logger = logger
        self._restored: list[dict] | None = None

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.logger.rows]}

    def load_state_dict(self, state: dict) -> None:
        self._restored = state.get("rows")

    def on_fit_start(self, trainer, pl_module) -> None:
        self.on_train_start(trainer, pl_module)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._restored is not None:
            self.logger.restore(self._restored)
            self._restored = None
