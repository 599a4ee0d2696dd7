"""The :class:`Catalog`: records of an archive, their stac-geoparquet file and the query index."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from georefscale.catalog import store
from georefscale.catalog.ingest import IngestResult, ingest
from georefscale.catalog.query import (
    FULL_COVER,
    Candidate,
    QueryIndex,
    QueryResult,
    TimeFilter,
    covering_set,
    explain,
    parse_aoi,
)
from georefscale.catalog.records import Record, record_from_raster
from georefscale.errors import InputError, NoCandidateError

#: At most this many candidates (best first) are considered when building a covering mosaic.
MOSAIC_POOL = 256
#: A catalog file without bbox covering columns and at least this many records is loaded whole
#: with a warning that rebuilding it would let queries read only the records near their AOI.
REBUILD_HINT_RECORDS = 100_000


class CatalogWarning(UserWarning):
    """A catalog works, but not as well as it could (e.g. a file to rebuild)."""


class Catalog:
    """Records of an archive, either in memory (a pyarrow table plus a shapely footprint array,
    EPSG:4326, with a spatial index built on the first query) or, for a catalog file with bbox
    covering columns, *out of core*: each query reads only the row groups and rows whose bbox
    meets the AOI, and the whole file is loaded only by what needs every record (iterating,
    :attr:`index`, :meth:`add`, :meth:`save`)."""

    def __init__(self, table: pa.Table | None = None, footprints: np.ndarray | None = None, *,
                 path: str | os.PathLike[str] | None = None,
                 archive: str | os.PathLike[str] | None = None,
                 source: store.CatalogFile | None = None) -> None:
        """Args:
            table: records as a :data:`~store.FLAT_SCHEMA` table (default: none).
            footprints: their EPSG:4326 footprints, one per row.
            path: the catalog file (where :meth:`save` writes by default).
            archive: the folder local hrefs are relative to in the file.
            source: an open catalog file to query out of core instead of ``table``.
        """
        self._source = source if table is None else None
        if table is None and source is None:
            table = store.FLAT_SCHEMA.empty_table()
        self._table: pa.Table | None = table
        self._footprints = (footprints if footprints is not None
                            else np.empty(0, dtype=object))
        self.path = Path(path) if path is not None else None
        self.archive = Path(archive) if archive is not None else None
        self._index: QueryIndex | None = None
        self._rows: dict[str, int] | None = None

    # ---------------------------------------------------------------- construction / storage
    @classmethod
    def load(cls, path: str | os.PathLike[str],
             archive: str | os.PathLike[str] | None = None, *,
             out_of_core: bool | None = None) -> Catalog:
        """Open a stac-geoparquet catalog; relative hrefs resolve against ``archive`` if given,
        else against the archive root recorded in the file.

        Args:
            path: the catalog file.
            archive: folder the relative hrefs resolve against.
            out_of_core: True: query the file without loading it (it must have bbox covering
                columns); False: load it whole; None (default): out of core when the file
                allows, else loaded whole (a file of :data:`REBUILD_HINT_RECORDS` or more
                records warns with a :class:`CatalogWarning` to rebuild it).

        Returns:
            The catalog.

        Raises:
            InputError: the file is missing, truncated or not a catalog; ``out_of_core=True``
                for a file without covering columns.
        """
        file = store.CatalogFile(path, archive)
        if file.covering is not None and out_of_core is not False:
            return cls(path=path, archive=file.root, source=file)
        hint = (f"{file.path}: written without bbox covering columns (by an earlier version), "
                "so it is loaded whole to be queried; rebuild it to query it out of core: "
                f"Catalog.load(path).save() or 'georefscale catalog build ... -o {file.path}'")
        if out_of_core:
            raise InputError(hint)
        if file.num_rows >= REBUILD_HINT_RECORDS and out_of_core is None:
            warnings.warn(hint, CatalogWarning, stacklevel=2)
        table, footprints = file.read()
        return cls(table, footprints, path=path, archive=file.root)

    @property
    def out_of_core(self) -> bool:
        """Whether queries read the file instead of records held in memory."""
        return self._table is None

    def _loaded(self) -> tuple[pa.Table, np.ndarray]:
        """All records in memory (read from the file the first time when out of core)."""
        if self._table is None:
            assert self._source is not None
            self._table, self._footprints = self._source.read()
            self._source = None
        return self._table, self._footprints

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> Catalog:
        catalog = cls()
        catalog.add(records)
        return catalog

    def save(self, path: str | os.PathLike[str] | None = None,
             archive: str | os.PathLike[str] | None = None) -> Path:
        """Write the catalog atomically (default: where it was loaded from); local hrefs are
        stored relative to ``archive`` (default: this catalog's archive root, else the file's
        folder)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise InputError("catalog has no file yet: give a path to save it to")
        root = archive if archive is not None else self.archive
        store.write_catalog(target, *self._loaded(), root)
        self.path = target
        self.archive = Path(root) if root is not None else target.absolute().parent
        return target

    def export_items(self, path: str | os.PathLike[str]) -> None:
        """Write all records as a STAC ItemCollection JSON."""
        store.write_item_collection(path, iter(self))

    def ingest(self, paths: Iterable[str | os.PathLike[str]], **options: Any) -> IngestResult:
        """Read rasters / STAC JSON under ``paths`` (see :func:`ingest.ingest` for ``options``)
        and add them; a record whose id or href is already present replaces it."""
        result = ingest(paths, **options)
        result.added, result.updated = self.add(result.records)
        return result

    def add(self, records: Iterable[Record]) -> tuple[int, int]:
        """Add or replace (same id or same href) records; returns (added, updated)."""
        records = list(records)
        if not records:
            return 0, 0
        table, footprints = self._loaded()
        new_table, new_footprints = store.records_to_table(records)
        new_ids = set(new_table.column("id").to_pylist())
        new_hrefs = new_table.column("href").combine_chunks()
        replaced = pc.or_(pc.is_in(table.column("id"), pa.array(sorted(new_ids))),
                          pc.is_in(table.column("href"), new_hrefs))
        keep = pc.invert(replaced).to_numpy(zero_copy_only=False)
        updated = int((~keep).sum())
        self._table = pa.concat_tables([table.filter(pa.array(keep)), new_table])
        self._footprints = np.concatenate([footprints[keep], new_footprints])
        self._index, self._rows = None, None
        return len(records) - updated, updated

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        if self._table is None and self._source is not None:
            return self._source.num_rows
        return self._loaded()[0].num_rows

    def __iter__(self) -> Iterator[Record]:
        table, footprints = self._loaded()
        for i, row in enumerate(table.to_pylist()):
            yield store.row_to_record(row, footprints[i])

    def __contains__(self, record_id: object) -> bool:
        if self._table is None and self._source is not None:
            return isinstance(record_id, str) and len(self._source.read(ids=[record_id])[1]) > 0
        return record_id in self._row_of()

    @property
    def ids(self) -> list[str]:
        return self._loaded()[0].column("id").to_pylist()

    def get(self, record_id: str) -> Record:
        """The record with ``record_id`` (out of core: read by a filter on the id column).

        Raises:
            InputError: there is none.
        """
        if self._table is None and self._source is not None:
            table, footprints = self._source.read(ids=[record_id])
            if table.num_rows:
                return store.row_to_record(table.slice(0, 1).to_pylist()[0], footprints[0])
            raise InputError(f"{self._name()}: no record with id {record_id!r}")
        row = self._row_of().get(record_id)
        if row is None:
            raise InputError(f"{self._name()}: no record with id {record_id!r}")
        return self._record(row)

    def _record(self, row: int, index: QueryIndex | None = None) -> Record:
        """Record ``row`` of ``index`` (default: of the whole catalog)."""
        table, footprints = (index.table, index.footprints) if index else self._loaded()
        return store.row_to_record(table.slice(row, 1).to_pylist()[0], footprints[row])

    def _row_of(self) -> dict[str, int]:
        if self._rows is None:
            self._rows = {rid: i for i, rid in enumerate(self.ids)}
        return self._rows

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "catalog"

    @property
    def index(self) -> QueryIndex:
        """The query index of every record (built on first use; loads an out-of-core
        catalog whole)."""
        if self._index is None:
            table, footprints = self._loaded()
            self._index = QueryIndex(footprints, table)
        return self._index

    def _index_for(self, area: shapely.Geometry) -> QueryIndex:
        """The index to search for ``area``: the whole one in memory, or out of core one over
        the records whose bbox meets the bbox of a part of ``area`` (a superset of those that
        intersect it, so the search finds the same records)."""
        if self._table is not None or self._source is None:
            return self.index
        boxes = [tuple(map(float, part.bounds)) for part in shapely.get_parts(area)]
        table, footprints = self._source.read(boxes)
        return QueryIndex(footprints, table)

    # ---------------------------------------------------------------- query
    def query(self, aoi: Any, *, aoi_crs: Any = None, before: Any = None, at: Any = None,
              max_age_days: float | None = None, min_overlap: float = 0.0,
              sensor: str | None = None, band_count: int | None = None,
              gsd: float | None = None, gsd_tolerance: float | None = None,
              max_cloud: float | None = None, limit: int = 10,
              exclude: Sequence[str] = (), exclude_checksums: Sequence[str] = (),
              exclude_hrefs: Sequence[str] = (),
              weights: dict[str, float] | None = None) -> QueryResult:
        """Ranked references for ``aoi`` (see :func:`query.parse_aoi`, CRS ``aoi_crs``).

        Time: strictly ``before`` a datetime, or nearest to ``at``; ``max_age_days`` bounds the
        gap. Filters: ``min_overlap`` (fraction of the AOI covered), ``sensor`` (case-insensitive
        substring of the platform), ``band_count``, ``gsd`` in metres with relative
        ``gsd_tolerance`` (``gsd`` alone only ranks), ``max_cloud`` percent. ``exclude*``
        drop records by id, checksum or href. When no record covers the AOI the result carries a
        covering ``mosaic``. Raises NoCandidateError when nothing qualifies.
        """
        if not 0.0 <= min_overlap <= 1.0:
            raise InputError(f"min overlap {min_overlap} must be between 0 and 1")
        if limit < 1:
            raise InputError(f"limit {limit} must be >= 1")
        if gsd_tolerance is not None and gsd is None:
            raise InputError("a resolution tolerance needs a resolution (gsd) to compare to")
        when = TimeFilter.make(before, at, max_age_days)
        area = parse_aoi(aoi, aoi_crs)
        index = self._index_for(area)
        rows, overlap, score, raw, stats = index.search(
            area, when, platform=sensor, band_count=band_count, gsd=gsd,
            gsd_tolerance=gsd_tolerance, max_cloud=max_cloud, exclude_ids=exclude,
            exclude_checksums=exclude_checksums, exclude_hrefs=exclude_hrefs, weights=weights)
        passing = np.flatnonzero(overlap >= max(min_overlap, 1e-12))
        stats["covering_min_overlap"] = int(passing.size)
        candidates = [self._candidate(index, rows, overlap, score, raw, i, weights)
                      for i in passing[:limit]]
        mosaic = None
        if not (candidates and candidates[0].overlap >= FULL_COVER) and rows.size:
            pool = np.arange(min(rows.size, MOSAIC_POOL))
            chosen = covering_set(area, [index.footprints[rows[i]] for i in pool])
            if chosen:
                mosaic = [self._candidate(index, rows, overlap, score, raw, int(pool[i]),
                                          weights) for i in sorted(chosen)]
        if not candidates and not mosaic:
            west, south, east, north = area.bounds
            raise NoCandidateError(
                f"{self._name()}: no reference for AOI [{west:.5f}, {south:.5f}, {east:.5f}, "
                f"{north:.5f}] (EPSG:4326) {when.describe()}: {stats['intersecting']} records "
                f"intersect it, {stats['passing_filters']} pass the filters"
                + (f", none covers >= {min_overlap:.0%}" if stats["passing_filters"] else ""))
        return QueryResult(aoi=area, candidates=candidates, mosaic=mosaic, stats=stats)

    def _candidate(self, index: QueryIndex, rows: np.ndarray, overlap: np.ndarray,
                   score: np.ndarray, raw: dict[str, np.ndarray], i: int,
                   weights: dict[str, float] | None) -> Candidate:
        return Candidate(record=self._record(int(rows[i]), index), overlap=float(overlap[i]),
                         score=float(score[i]),
                         ranking=explain(raw, i, float(overlap[i]), float(score[i]), weights))

    def references_for(self, target: Any, *, time: str = "nearest",
                       when: datetime | str | None = None, date_pattern: str | None = None,
                       **filters: Any) -> QueryResult:
        """References for a target raster (path), STAC Item (``pystac.Item``, dict, JSON file
        or URL) or record: its footprint as AOI, its acquisition time (or ``when``) as ``at``
        (``time="nearest"``) or ``before`` (``time="before"``), its gsd for ranking; the target
        itself (same href, id or checksum) is excluded. ``filters`` go to :meth:`query`."""
        from georefscale.stac import is_stac_item, load_item

        if time not in ("nearest", "before"):
            raise InputError(f"time must be 'nearest' or 'before', not {time!r}")
        if isinstance(target, Record):
            rec = target
            exclude_ids = [rec.id]
        elif is_stac_item(target):
            item, base = load_item(target)
            rec = Record.from_item(item, base=base or None)
            exclude_ids = [rec.id]
        else:
            rec = record_from_raster(target, date_pattern=date_pattern,
                                     acquired=when)  # type: ignore[arg-type]
            exclude_ids = []
        moment = when if when is not None else rec.datetime
        timing = {"at": moment} if time == "nearest" else {"before": moment}
        filters.setdefault("gsd", rec.gsd)
        return self.query(rec.footprint, aoi_crs="EPSG:4326", **timing,
                          exclude=[*exclude_ids, *filters.pop("exclude", ())],
                          exclude_checksums=[rec.checksum] if rec.checksum else [],
                          exclude_hrefs=[rec.href], **filters)
