"""Dated files of evaluation / training sites: ``<site>_<YYYYMMDD>.tif`` in one folder.

For evaluation, the latest date of a site is the target and the date before it the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from georefscale.errors import InputError

SITE_DATE = re.compile(r"^(?P<site>.+)_(?P<date>\d{8})\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True)
class Site:
    """One evaluation site: the target (latest date) and its reference (the date before)."""

    name: str
    target: Path
    reference: Path


def dated_files(folder: str | Path) -> dict[str, list[tuple[str, Path]]]:
    """``{site: [(YYYYMMDD, path), ...]}``, dates ascending, for the files named by the rule."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    dated: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(folder.iterdir()):
        m = SITE_DATE.match(path.name)
        if m:
            dated.setdefault(m["site"], []).append((m["date"], path))
    return {site: sorted(files) for site, files in sorted(dated.items())}


def find_sites(folder: str | Path, names: list[str] | None = None) -> list[Site]:
    """Sites of ``folder`` with at least two dated files (optionally only ``names``)."""
    sites = [
        Site(name, files[-1][1], files[-2][1])
        for name, files in dated_files(folder).items()
        if len(files) >= 2 and (names is None or name in names)
    ]
    if not sites:
        raise InputError(f"{folder}: no site with two dated files <site>_<YYYYMMDD>.tif")
    return sites
