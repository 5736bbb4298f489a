"""Atomic file writes: a file is either its old content or its complete new content, never a part.

Every writer here follows one recipe: write into a temporary file in the destination's own folder
(``.<name>.<random>.tmp``: the same file system, so the rename below is atomic), flush and
``fsync`` it (``durable=False`` skips the fsync for files that are cheap to make again, e.g.
generated images; the rename is still atomic against a killed process), then ``os.replace`` it
over the destination. On any error the temporary file is removed and the destination is as it was.
A full disk is the OSError of ``lra.errors.space_for``: it names the folder and the bytes needed.

    write_text_atomic(path, text)        write_json_atomic(path, obj)      write_bytes_atomic(path, data)
    write_atomic(path, lambda f: torch.save(obj, f), needed=n_bytes)   # any writer of a binary file
    publish_dir(tmp_folder, folder)      # a folder written elsewhere, swapped into place
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lra.errors import space_for


def write_atomic(
    path: str | Path, write: Callable[[IO], None], *, needed: int, text: bool = False, durable: bool = True
) -> None:
    """Call ``write(f)`` on a temporary file next to ``path`` (binary, or text with ``text``: UTF-8,
    newlines as written), then rename it over ``path``. ``needed`` (bytes, an estimate) is what a full
    disk's error message names."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = {"mode": "w", "encoding": "utf-8", "newline": ""} if text else {"mode": "wb"}
        with space_for(path.parent, needed), os.fdopen(fd, **mode) as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    write_atomic(path, lambda f: f.write(data), needed=len(data), durable=durable)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` as UTF-8, newlines as given."""
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, obj) -> None:
    """``obj`` as JSON, indented by 2, keys in their order, with a final newline."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def publish_dir(tmp: str | Path, folder: str | Path) -> None:
    """Put the complete folder ``tmp`` in the place of ``folder``: an old ``folder`` is first renamed
    aside (``.<name>.old-<pid>``), so ``folder`` is at every moment absent, the old one or the new one,
    never a mix; the old one is removed afterwards."""
    tmp, folder = Path(tmp), Path(folder)
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
