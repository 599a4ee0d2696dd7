"""Ingest: GeoTIFF files, folders, globs and STAC JSON (ItemCollection, Item, static catalog)
into records. Unreadable inputs are skipped with a warning naming each one."""

from __future__ import annotations

import glob
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from georefscale.catalog.records import Record, record_from_raster
from georefscale.errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff")
STAC_SUFFIXES = (".json", ".geojson")


class IngestWarning(UserWarning):
    """A file or STAC item was skipped during ingest."""


@dataclass
class IngestResult:
    """Records read, the inputs skipped as ``(path or item, reason)``, and (when added to a
    catalog) how many records were new or replaced an existing one."""

    records: list[Record] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    added: int = 0
    updated: int = 0

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append((source, reason))
        warnings.warn(f"{source}: skipped: {reason}", IngestWarning, stacklevel=3)


def expand_sources(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``paths``: files as given, folders searched recursively for GeoTIFFs and
    STAC JSON, glob patterns expanded. Raises InputError for a path that matches nothing."""
    out: list[Path] = []
    for raw in paths:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES + STAC_SUFFIXES)
        elif path.is_file():
            found = [path]
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            raise InputError(f"{text}: no such file or folder")
        if not found:
            raise InputError(f"{text}: no GeoTIFF or STAC JSON found")
        out.extend(p.resolve() for p in found)
    return list(dict.fromkeys(out))


def ingest(paths: Iterable[str | os.PathLike[str]], *, date_pattern: str | None = None,
           platform: str | None = None, band_names: Sequence[str] | None = None,
           collection: str | None = None, footprint: str = "auto") -> IngestResult:
    """Records for every raster / STAC item under ``paths`` (see :func:`expand_sources`).

    Options apply to rasters (see :func:`record_from_raster`); ``collection`` also to STAC items.
    Ids are file stems; a second input with an id already read is skipped.
    """
    result = IngestResult()
    seen: dict[str, str] = {}
    for path in expand_sources(paths):
        if path.suffix.lower() in STAC_SUFFIXES:
            records = _stac_records(path, result)
        else:
            try:
                records = [record_from_raster(path, date_pattern=date_pattern, platform=platform,
                                              band_names=band_names, collection=collection,
                                              footprint=footprint)]
            except InputError as exc:
                result.skip(str(path), str(exc).removeprefix(f"{path}: "))
                continue
        for rec in records:
            if collection and not rec.collection:
                rec = replace(rec, collection=collection)
            if rec.id in seen and seen[rec.id] != rec.href:
                result.skip(rec.href, f"id {rec.id!r} already used by {seen[rec.id]}")
                continue
            seen[rec.id] = rec.href
            result.records.append(rec)
    return result


def _stac_records(path: Path, result: IngestResult) -> list[Record]:
    """Records of a STAC ItemCollection / Item / Catalog / Collection JSON file; relative asset
    hrefs are resolved against the file's folder."""
    import pystac

    try:
        doc = json.loads(path.read_text())
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(doc).items)
        elif kind == "Feature":
            items = [pystac.Item.from_dict(doc)]
        elif kind in ("Catalog", "Collection"):
            items = list(pystac.read_file(str(path)).get_items(recursive=True))  # type: ignore
        else:
            raise ValueError("not a STAC ItemCollection, Item, Catalog or Collection")
    except (OSError, ValueError, KeyError, TypeError, pystac.STACError) as exc:
        result.skip(str(path), f"not readable STAC JSON ({exc})")
        return []
    records = []
    for item in items:
        try:
            rec = Record.from_item(item)
        except (InputError, KeyError, ValueError, TypeError) as exc:
            result.skip(f"{path}#{item.id}", str(exc))
            continue
        if "://" not in rec.href and not os.path.isabs(rec.href):
            rec = rec.with_href(os.path.normpath(path.parent / rec.href))
        records.append(rec)
    return records
