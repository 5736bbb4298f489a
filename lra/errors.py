"""User errors on the command line: the message names the key or file and the fix, exit status 2.

``lra-train`` and ``lra-data`` run through ``run_cli``. An error the user can fix (a bad config value,
missing or damaged data, a bad JSON file, a run folder that is taken, a full disk) is printed as
``<prog>: <message>`` on stderr, without a traceback, and the command exits with status 2; any other
exception is a bug and keeps its traceback. ``--debug`` on the command line or ``HYDRA_FULL_ERROR=1``
shows the traceback of user errors too.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

DEBUG_FLAG = "--debug"


class UserError(Exception):
    """A mistake the user can fix; the message says which key or file, and how."""


class Reported(BaseException):
    """A user error carried past a job runner that catches ``Exception`` (Hydra's prints a header line for
    a failed job); ``run_cli`` shows the error it carries."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


# What a user can cause and fix: config composition and values, data files, disks, run folders.
USER_ERRORS = (UserError, OSError, ValueError, ImportError, HydraException, OmegaConfBaseException)


def debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"


def run_cli(prog: str, fn: Callable[[], int | None], *, debug: bool) -> int:
    """``fn()``'s exit status; a user error is printed as one message and gives status 2."""
    try:
        try:
            return fn() or 0
        except Reported as r:
            raise r.error from None
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: {e}", file=sys.stderr)
        return 2


def read_json(path: Path, remake: str) -> dict:
    """The JSON object in ``path``; a file that is not valid JSON raises a ValueError naming the file and
    ``remake``, the command that writes it again."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); remake it with: {remake}") from None


def no_space(folder: Path, needed: int) -> OSError:
    """The OSError for a full disk, naming the folder, the bytes needed and the bytes free."""
    try:
        free = f"{shutil.disk_usage(folder).free:,} bytes are free"
    except OSError:
        free = "its free space is unknown"
    error = OSError(
        f"no space left on the disk of {folder}: writing there needs about {needed:,} bytes and {free}; "
        "free some space or write elsewhere (hydra.run.dir / paths.runs for runs, LRA_DATA_DIR for data)"
    )
    error.errno = errno.ENOSPC
    return error


@contextmanager
def space_for(folder: Path, needed: int) -> Iterator[None]:
    """Turn a full disk while writing into ``folder`` into ``no_space``: the OSError ENOSPC of plain writes
    and the RuntimeError of ``torch.save``'s writer (``[enforce fail at inline_container.cc...]``)."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise no_space(folder, needed) from e
    except RuntimeError as e:
        if "inline_container" not in str(e) or shutil.disk_usage(folder).free >= needed:
            raise
        raise no_space(folder, needed) from e
