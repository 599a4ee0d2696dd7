"""Atomic outputs: write to a temporary name in the destination folder, rename on success.

A failure (exception, Ctrl-C) deletes the temporary file, so no half-written output is ever left
under the final name.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from georefscale.errors import InputError

__all__ = ["atomic_output", "check_replaceable", "guard_outputs", "remove_stale", "replace",
           "same_file", "temp_path", "write_json"]


def check_replaceable(path: str | os.PathLike) -> Path:
    """An output may only create a file or replace a regular file (never a device, a FIFO, a
    directory or a symlink, whose rename would replace the link, not what it points to).

    Raises:
        InputError: ``path`` exists and is not a regular file.
    """
    p = Path(path)
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return p
    if stat.S_ISLNK(mode):
        raise InputError(f"{p}: output is a symbolic link; give the real path")
    if not stat.S_ISREG(mode):
        raise InputError(f"{p}: output exists and is not a regular file")
    return p


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (resolved paths, symlinks followed, or the same
    device and inode)."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return False


def guard_outputs(outputs: Iterable[str | os.PathLike | None],
                  inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse outputs that would destroy an input or each other, before any work.

    Args:
        outputs: the files a command will write (None entries are ignored).
        inputs: the files it reads (None entries and URLs are ignored).

    Raises:
        InputError: an output is one of the inputs, two outputs are the same file, or an
            output is not replaceable (see :func:`check_replaceable`).
    """
    outs = [Path(o) for o in outputs if o is not None]
    ins = [Path(i) for i in inputs if i is not None and "://" not in str(i)]
    for i, out in enumerate(outs):
        check_replaceable(out)
        for src in ins:
            if same_file(out, src):
                raise InputError(f"{out}: output is the input {src}; it would be destroyed")
        for other in outs[:i]:
            if same_file(out, other):
                raise InputError(f"{out}: given for two outputs ({other})")


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries an interrupted (killed) earlier write of ``path`` left beside it:
    hidden regular files named like :func:`temp_path` names them for this output.

    Returns:
        The files removed.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    removed = []
    for p in parent.glob(f".{glob_escape(out.name)}.*"):
        if ".tmp" in p.name[len(out.name) + 2:] and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


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
    out = check_replaceable(path)
    remove_stale(out)
    tmp = temp_path(out, suffix)
    try:
        yield tmp
        replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: object, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_output(path, ".json.tmp") as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")
    return Path(path)


def replace(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename the finished ``tmp`` onto ``out``, which must still be replaceable."""
    check_replaceable(out)
    os.replace(tmp, out)
