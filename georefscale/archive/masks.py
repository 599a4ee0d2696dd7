"""A reference record's mask asset as an archive job carries it to the worker.

The mask is the one ``onboard --catalog`` applies for the same record
(:func:`~georefscale.references.record_mask`: the catalog's href and rule, read on the
reference's grid by :meth:`~georefscale.references.ReferenceSet.masked`). The job holds the
href and rule as catalogued and, for a local file, the SHA-256 of its bytes when the archive was
planned: all three are part of the scene's job key, so a rerun recomputes a scene whose
reference's mask changed (another href or rule, or other bytes). A remote mask is keyed by its
href and rule only (its bytes are not fetched to plan). The worker reads the href exactly as
``onboard`` does (a local regular file or a URL, opened as a raster; the rule checked), and
refuses a local mask whose bytes changed since planning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from georefscale.errors import InputError
from georefscale.raster.io import is_url, sha256_file
from georefscale.raster.refmask import MaskSource
from georefscale.references import record_mask

if TYPE_CHECKING:
    from georefscale.catalog import Record

__all__ = ["JobMask"]


def _local_sha256(href: str) -> str | None:
    """The SHA-256 of a local mask file's bytes; None for a URL or a path that is not a
    readable regular file (reading the mask then fails with the reason)."""
    if is_url(href):
        return None
    path = Path(href)
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None


@dataclass(frozen=True)
class JobMask:
    """A reference's mask asset in a scene job (picklable).

    Attributes:
        source: the mask as ``onboard --catalog`` reads it (href, rule, ``"asset"``, label).
        sha256: the SHA-256 of the local mask file at planning (None: remote or unreadable).
    """

    source: MaskSource
    sha256: str | None = None

    @classmethod
    def of(cls, rec: Record, where: str, sums: dict[str, str | None]) -> JobMask | None:
        """The mask asset of reference record ``rec``, or None when it has none.

        Args:
            rec: the reference record.
            where: its catalog, for messages.
            sums: SHA-256 of the mask files hashed so far in this plan, by href (filled).

        Returns:
            The mask with the SHA-256 of its local file.
        """
        source = record_mask(rec, where)
        if source is None:
            return None
        if source.href not in sums:
            sums[source.href] = _local_sha256(source.href)
        return cls(source, sums[source.href])

    def spec(self) -> dict[str, str | None]:
        """The mask as recorded in the scene manifest and job key (``href``, ``rule``,
        ``sha256``)."""
        return {"href": self.source.href, "rule": self.source.rule, "sha256": self.sha256}

    def check(self) -> None:
        """Check that the mask's local file is unchanged since planning.

        Raises:
            InputError: naming the mask and its record: its local file's bytes differ from
                those planned.
        """
        now = self.sha256 and _local_sha256(self.source.href)
        if now and now != self.sha256:  # a vanished file fails when it is read, saying so
            raise InputError(f"{self.source.label}: changed since the archive was planned "
                             "(SHA-256); run the archive again")
