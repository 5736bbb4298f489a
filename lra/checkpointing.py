"""``checkpoints/last.ckpt``: when a run saves the checkpoint it resumes from (``lra.resume`` picks it)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Checkpoint

from lra.dist import any_rank

log = logging.getLogger(__name__)


class ResumeCheckpoints(Checkpoint):
    """Owns ``checkpoints/last.ckpt``: saved after every validation, every ``every_n_steps`` optimizer
    steps (if set) and when the run is told to stop, always at the end of a loop iteration, so that a
    run resumed from it continues at exactly the point where the uninterrupted run stood.

    Lightning saves a checkpoint in the middle of its iteration when asked from ``on_train_batch_end``:
    the step's logged row and its validation come after the save, and a resumed run skips both. So:

    - a step whose validation is due is saved after that validation (``on_validation_end``, after
      ``ModelCheckpoint`` has updated ``best.ckpt``: Lightning runs ``Checkpoint`` callbacks last, in
      list order, so list this one after the ``ModelCheckpoint``); a resumed run does not validate again;
    - any other step is saved when Lightning's iteration ends (after the row of the step is logged),
      the one point of the loop without a callback hook: ``on_fit_start`` wraps the epoch loop's
      ``on_advance_end`` for the length of the fit;
    - the final step (``trainer.max_steps``) is saved once the fit has ended (``on_train_end``, after
      Lightning's epoch-end bookkeeping): Lightning skips the loop of a fit restored at
      ``max_steps``, so a checkpoint from earlier in that iteration would leave its end undone.

    Stopping signals:

    - SIGTERM (``kill``, ``scancel``, preemption): Lightning stops at the end of the current iteration;
      this callback saves there (unless in the middle of gradient accumulation, where the last
      regular checkpoint stands) and the process exits with status 143.
    - The submitit requeue signal (``$SUBMITIT_PREEMPT_SIGNAL``, USR2 by default; only when a
      handler is installed, i.e. under the submitit launcher): the next optimizer step finishes,
      the checkpoint is saved, then submitit's handler requeues the job, which resumes here.

    With several ranks a signal may reach one rank only (``kill`` of one pid, a node's preemption).
    Lightning's own SIGTERM handler then runs a collective inside the signal handler and the
    ranks stop at different steps (or hang); so from the first training step this callback's
    handler only notes the signal, and after every optimizer step the ranks agree (an all-reduce)
    whether any of them got one: all stop after the same step and save the checkpoint once.
    """

    def __init__(self, dirpath: Path, every_n_steps: int | None = None):
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self._signal = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
        self._requeue_handler = None
        self._requeue_pending = False
        self._step_at_batch_start = 0
        self._at_boundary = True
        self._due = False  # a step checkpoint waits for the end of this iteration
        self._saved_step = -1  # the optimizer step last.ckpt holds, from this process
        self._unwrap = None
        self._sigterm = False  # under DDP: this rank got SIGTERM (the ranks agree after each step)
        self._rank = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        previous = signal.getsignal(self._signal)
        if callable(previous):
            self._requeue_handler = previous
            signal.signal(self._signal, self._on_requeue_signal)
        loop = trainer.fit_loop.epoch_loop
        original = loop.on_advance_end

        def on_advance_end(*args, **kwargs):
            original(*args, **kwargs)
            self._on_iteration_end(trainer)

        loop.on_advance_end = on_advance_end
        self._unwrap = lambda: delattr(loop, "on_advance_end")

    def on_train_start(self, trainer, pl_module) -> None:
        # after Lightning installed its handlers (fit start); its teardown restores the original one
        self._rank = trainer.global_rank
        if trainer.world_size > 1:
            self._sigterm = False
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        log.warning("rank %d received SIGTERM: all ranks stop after this optimizer step", self._rank)
        self._sigterm = True

    def on_fit_end(self, trainer, pl_module) -> None:
        self._teardown()

    def _teardown(self) -> None:
        if self._requeue_handler is not None:
            signal.signal(self._signal, self._requeue_handler)
        if self._unwrap is not None:
            self._unwrap()
            self._unwrap = None

    def _on_requeue_signal(self, signum, frame) -> None:
        log.warning("received %s: saving a checkpoint after this step, then requeueing", signal.Signals(signum).name)
        self._requeue_pending = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._at_boundary = trainer.global_step != self._step_at_batch_start
        if trainer.world_size > 1 and self._at_boundary:
            self._sigterm, self._requeue_pending = any_rank(trainer, self._sigterm, self._requeue_pending)
            if self._sigterm:
                # Lightning's own flag: it stops every rank at the end of this step as it stops one process
                trainer._signal_connector.received_sigterm = True
        if self.every_n_steps and self._at_boundary and trainer.global_step % self.every_n_steps == 0:
            self._due = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._final(trainer):
            return
        self._save(trainer, quiet=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, quiet=True)

    @staticmethod
    def _final(trainer) -> bool:
        return trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step

    def _on_iteration_end(self, trainer) -> None:
        if not self._at_boundary or self._final(trainer):
            return
        if self._due and self._saved_step != trainer.global_step:
            self._save(trainer, quiet=True)
        self._due = False
        if self._requeue_pending:
            if self._saved_step != trainer.global_step:
                self._save(trainer)
            handler, self._requeue_pending = self._requeue_handler, False
            self._teardown()
            if handler is None:  # another rank got the requeue signal: this one stops with it (saved above)
                trainer._signal_connector.received_sigterm = True
                return
            handler(self._signal, None)  # submitit: requeue this job and exit

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if type(exception).__name__ == "SIGTERMException":
            if not self._at_boundary:
                log.warning("stopped inside gradient accumulation: the last regular checkpoint stands")
            elif self._saved_step != trainer.global_step:
                self._save(trainer)
            else:  # saved after this step's validation
                log.warning("%s holds step %d; run the same command again to resume", self.path, trainer.global_step)
        self._teardown()

    def _save(self, trainer, quiet: bool = False) -> None:
        trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes the file
        self._saved_step = trainer.global_step
        if not quiet and trainer.is_global_zero:
            log.warning("saved %s at step %d; run the same command again to resume", self.path, trainer.global_step)
