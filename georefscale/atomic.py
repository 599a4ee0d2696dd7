"""Atomic outputs: write to a temporary name in the destination folder, rename on success.

A failure (exception, Ctrl-C) deletes the temporary file, so no half-written output is ever left
under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from georefscale.errors import InputError


def temp_path(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """Create an empty hidden temporary file beside ``path`` with the permissions a plain
    ``open(path, "w")`` would give (``mkstemp`` alone makes it 0600)."""
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: output directory {parent} does not exist")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix, dir=parent)
    except OSError as exc:
        raise InputError(f"{out}: cannot write in {parent}: {exc.strerror}") from exc
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds."""
    out = Path(path)
    tmp = temp_path(out, suffix)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: object, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_output(path, ".json.tmp") as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")
    return Path(path)
