"""The ``georefscale`` command line.

Each area of the library adds its commands from its own module (``georefscale.cli.<name>``, which
defines ``register(group)``); torch is imported lazily inside the commands that need it.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys

import click

from georefscale.errors import GeoRefScaleError, NoCandidateError

#: Modules that add commands to the group, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = ("demo", "model", "link", "scene", "catalog", "archive")

EXIT_ERROR = 1
EXIT_NO_CANDIDATE = 3


class _Group(click.Group):
    """Click group that turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context):  # noqa: D401
        signal.signal(signal.SIGTERM, _interrupt)  # a kill ends a run like Ctrl-C: cleaned up
        try:
            return super().invoke(ctx)
        except NoCandidateError as exc:
            click.echo(f"georefscale: {exc}", err=True)
            sys.exit(EXIT_NO_CANDIDATE)
        except GeoRefScaleError as exc:
            click.echo(f"georefscale: error: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        except OSError as exc:  # a full disk, a file size limit, a vanished folder
            if exc.errno not in _IO_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"georefscale: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_ERROR)


#: OS errors that are the environment's, not bugs: reported in one line.
_IO_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENOENT,
              errno.EIO}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="georefscale")
def main() -> None:
    """Reference-based invertible rescaling of georeferenced imagery.

    On board: `georefscale onboard TARGET.tif --reference REF.tif -o LR.tif` shrinks a scene 2x or
    4x with the help of an older co-registered image of the same place.  On the ground:
    `georefscale ground LR.tif --reference REF.tif -o HR.tif` rebuilds the full-resolution scene.
    `georefscale demo` runs the whole job on the bundled sample archive.
    """


for _name in COMMAND_MODULES:
    importlib.import_module(f"georefscale.cli.{_name}").register(main)
