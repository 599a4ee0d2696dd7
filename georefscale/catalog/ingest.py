"""Ingest: GeoTIFF files, folders, globs and STAC JSON (ItemCollection, Item, static catalog)
into records. Unreadable inputs are skipped with a warning naming each one."""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from georefscale.catalog.records import Record, record_from_raster
from georefscale.errors import InputError
from georefscale.raster.io import is_url

RASTER_SUFFIXES = (".tif", ".tiff")
STAC_SUFFIXES = (".json", ".geojson")
#: Levels of ``child`` links followed from a static STAC catalog.
MAX_STAC_DEPTH = 8
#: STAC documents (catalogs, collections, items) read from one input at most.
MAX_STAC_DOCUMENTS = 100_000


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
    """Records for every raster / STAC item under ``paths`` (see :func:`expand_sources`), and
    for each http(s) URL of a STAC document (hrefs kept remote).

    Options apply to rasters (see :func:`record_from_raster`); ``collection`` also to STAC items.
    Ids are file stems; a second input with an id already read is skipped.
    """
    result = IngestResult()
    seen: dict[str, str] = {}
    paths = [os.fspath(p) for p in paths]
    urls = [p for p in paths if is_url(p)]
    sources: list[str | Path] = [*urls, *expand_sources(p for p in paths if p not in urls)]
    for path in sources:
        if isinstance(path, str) or path.suffix.lower() in STAC_SUFFIXES:
            records = _stac_records(str(path), result)
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


def _stac_records(location: str, result: IngestResult) -> list[Record]:
    """Records of a STAC ItemCollection / Item / static Catalog / Collection (a local file or
    an http(s) URL); each item's relative asset hrefs resolve against its self link or the
    document it came from, and stay URLs for a remote one. A catalog's ``child`` and ``item``
    links are followed up to :data:`MAX_STAC_DEPTH` levels and :data:`MAX_STAC_DOCUMENTS`
    documents; a remote catalog's links must be http(s). Unreadable documents and items are
    skipped with a reason."""
    from georefscale.stac import read_json

    records: list[Record] = []
    pending = [(location, 0)]
    seen: set[str] = set()
    while pending:
        where, depth = pending.pop(0)
        if where in seen:
            continue
        seen.add(where)
        if len(seen) > MAX_STAC_DOCUMENTS:
            result.skip(where, f"more than {MAX_STAC_DOCUMENTS} STAC documents; stopped here")
            break
        try:
            doc = read_json(where)
        except InputError as exc:
            result.skip(where, str(exc).removeprefix(f"{where}: "))
            continue
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "FeatureCollection" and isinstance(doc.get("features"), list):
            items = doc["features"]
        elif kind == "Feature":
            items = [doc]
        elif kind in ("Catalog", "Collection"):
            for link in doc.get("links") or []:
                rel = link.get("rel") if isinstance(link, dict) else None
                href = link.get("href") if rel in ("child", "item") else None
                if not isinstance(href, str):
                    continue
                target = _link(where, href)
                if target is None:
                    result.skip(f"{where} -> {href[:80]}", "a remote catalog may only link "
                                "to http(s) documents")
                elif depth >= MAX_STAC_DEPTH:
                    result.skip(target, f"deeper than {MAX_STAC_DEPTH} catalog levels")
                else:
                    pending.append((target, depth + 1))
            continue
        else:
            result.skip(where, "not a STAC ItemCollection, Item, Catalog or Collection")
            continue
        for i, item in enumerate(items):
            name = item.get("id") if isinstance(item, dict) else None
            label = f"{where}#{name if isinstance(name, str) else i}"[:300]
            if not isinstance(item, dict):
                result.skip(label, "not a STAC Item")
                continue
            try:
                rec = Record.from_item(item, base=where)
            except (InputError, KeyError, ValueError, TypeError) as exc:
                result.skip(label, str(exc))
                continue
            if not rec.bands:
                result.skip(label, "no bands recorded (no band assets with eo:bands / bands "
                            "entries or band-named keys such as blue or B02, and no item-level "
                            "eo:bands): it could never be picked as a reference")
                continue
            if rec.mask_href is not None:
                try:
                    rec = _mask_cover(rec)
                except InputError as exc:
                    result.skip(label, f"mask asset: {exc}")
                    continue
            records.append(rec)
    return records


def _mask_cover(rec: Record) -> Record:
    """``rec`` with the cloud cover its mask asset gives over its grid
    (:func:`~georefscale.raster.refmask.mask_cover`, the rule the reference is masked with),
    which wins over ``eo:cloud_cover``: the ranking then means by "cloudy" what the mask
    removes, over the record's own footprint rather than the provider's whole scene.

    Raises:
        InputError: the mask cannot be read onto the record's grid.
    """
    from georefscale.raster.refmask import mask_cover

    cover = mask_cover(str(rec.mask_href), str(rec.mask_rule),
                       (rec.crs, rec.transform, rec.shape), f"mask asset of {rec.id}")
    return replace(rec, cloud_cover=cover)


def _link(base: str, href: str) -> str | None:
    """A catalog link's target: a URL, or a local path for a local catalog; None for a
    remote catalog's link to anything but http(s)."""
    from urllib.parse import urljoin

    if "://" in href:
        return href if href.lower().startswith(("http://", "https://")) else None
    if is_url(base):
        return urljoin(base, href)
    return os.path.normpath(href if os.path.isabs(href) else Path(base).parent / href)
