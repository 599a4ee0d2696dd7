"""Dated files of evaluation / training sites: ``<site>_<YYYYMMDD>.tif`` in one folder.

For evaluation, the latest date of a site is the target and the date before it the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from georefscale.errors import InputError

__all__ = ["SITE_DATE", "Site", "dated_files", "evaluation_sites", "find_sites", "seen_in_training"]

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


def seen_in_training(models: Iterable[str]) -> set[str]:
    """File names the ``models`` were trained or validated on, from their model cards
    (training targets and references, validation targets); names without a card (``bicubic``,
    unknown models) add nothing. ``models``: names or paths of trained ``.safetensors`` files."""
    from georefscale.engine.cards import model_card

    seen: set[str] = set()
    for name in set(models) - {"bicubic"}:
        try:
            training = model_card(name).get("training", {})
        except InputError:
            continue
        for pair in training.get("data", []):
            seen.update(part.strip() for part in pair.split("<-"))
        seen.update(training.get("validation", []))
    return seen


def evaluation_sites(
    folder: str | Path,
    models: Iterable[str],
    names: list[str] | None = None,
    include_seen: bool = False,
) -> tuple[list[Site], list[str]]:
    """The sites of ``folder`` (optionally only ``names``) to score ``models`` on, and the names
    of the sites left out because one of the models was trained or validated on their target
    file (by name; ``include_seen`` keeps them). InputError when every site was seen."""
    models = list(models)
    sites = find_sites(folder, names)
    if include_seen:
        return sites, []
    seen_files = seen_in_training(models)
    kept = [s for s in sites if s.target.name not in seen_files]
    seen = [s.name for s in sites if s.target.name in seen_files]
    if not kept:
        raise InputError(
            f"{folder}: every site here ({', '.join(seen)}) was in the training or validation "
            f"data of {', '.join(m for m in models if m != 'bicubic')}; scores on them would not "
            "measure generalisation (include_seen=True / --include-seen scores them anyway)"
        )
    return kept, seen
