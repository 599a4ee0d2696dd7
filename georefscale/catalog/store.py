"""Catalog storage: stac-geoparquet files written with pyarrow, and STAC ItemCollection JSON.

On disk the layout follows the stac-geoparquet spec (one row per STAC Item: ``type``,
``stac_version``, ``stac_extensions``, ``id``, ``geometry`` as WKB in EPSG:4326 with GeoParquet
``geo`` metadata, ``bbox`` struct, ``links``, ``assets``, ``collection`` and the item properties as
top-level columns such as ``datetime``, ``proj:code``, ``eo:bands``), so ``geopandas.read_parquet``
and DuckDB open it as-is.

Hrefs of local files are stored relative to the *archive root*; the root itself is stored in the
file metadata relative to the catalog file (``georefscale:catalog`` key). Loading resolves hrefs
against that root, or against an ``archive`` directory given by the caller (the data moved).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from georefscale.atomic import atomic_output
from georefscale.catalog.records import STAC_EXTENSIONS, Band, Record, media_type
from georefscale.errors import InputError

STAC_VERSION = "1.1.0"
CATALOG_META_KEY = b"georefscale:catalog"
STAC_GEOPARQUET_KEY = b"stac-geoparquet"

#: Records per Parquet row group: the unit a query reads. Smaller groups skip more of the file
#: for a small AOI; larger ones keep the footer (and the cold open) small.
ROW_GROUP_ROWS = 2048
#: Bits per axis of the Hilbert curve the rows are sorted along (:func:`hilbert_key`).
HILBERT_ORDER = 16
#: Fields of the ``bbox`` struct column, the GeoParquet 1.1 bbox covering of ``geometry``.
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")

_BAND = pa.struct([("name", pa.string()), ("common_name", pa.string()),
                   ("description", pa.string())])

#: In-memory (flat) record table; geometry lives beside it as a shapely array.
FLAT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("href", pa.string()),
    ("datetime", pa.timestamp("us", tz="UTC")),
    ("collection", pa.string()),
    ("platform", pa.string()),
    ("gsd", pa.float64()),
    ("cloud_cover", pa.float64()),
    ("bands", pa.list_(_BAND)),
    ("crs", pa.string()),
    ("transform", pa.list_(pa.float64())),
    ("shape", pa.list_(pa.int64())),
    ("dtype", pa.string()),
    ("nodata", pa.float64()),
    ("checksum", pa.string()),
    ("file_size", pa.int64()),
    ("datetime_source", pa.string()),
    ("footprint_kind", pa.string()),
    ("band_hrefs", pa.list_(pa.string())),
    ("mask_href", pa.string()),
    ("mask_rule", pa.string()),
])

#: stac-geoparquet property columns <- flat columns.
_PROPERTY_COLUMNS = (
    ("datetime", "datetime"), ("platform", "platform"), ("gsd", "gsd"),
    ("eo:cloud_cover", "cloud_cover"), ("eo:bands", "bands"), ("proj:transform", "transform"),
    ("proj:shape", "shape"), ("data_type", "dtype"), ("nodata", "nodata"),
    ("georefscale:datetime_source", "datetime_source"),
    ("georefscale:footprint", "footprint_kind"),
)
#: Per-band files of a record whose bands are separate assets (hrefs stored like ``href``).
BAND_HREFS_COLUMN = "georefscale:band_hrefs"
#: A record's cloud / shadow mask asset (href stored like ``href``) and its rule.
MASK_HREF_COLUMN, MASK_RULE_COLUMN = "georefscale:mask_href", "georefscale:mask_rule"


#: stac-geoparquet columns a query reads (the rest: constant or not part of a record).
_READ_COLUMNS = ("id", "geometry", "assets", "collection", *(p for p, _ in _PROPERTY_COLUMNS),
                 "proj:code", "proj:wkt2", BAND_HREFS_COLUMN, MASK_HREF_COLUMN,
                 MASK_RULE_COLUMN)


def records_to_table(records: Sequence[Record]) -> tuple[pa.Table, np.ndarray]:
    """Flat table and footprint array (shapely, EPSG:4326) of ``records``."""
    cols: dict[str, list[Any]] = {name: [] for name in FLAT_SCHEMA.names}
    for r in records:
        cols["id"].append(r.id)
        cols["href"].append(r.href)
        cols["datetime"].append(r.datetime)
        cols["collection"].append(r.collection)
        cols["platform"].append(r.platform)
        cols["gsd"].append(r.gsd)
        cols["cloud_cover"].append(r.cloud_cover)
        cols["bands"].append([b.to_dict() for b in r.bands])
        cols["crs"].append(r.crs)
        cols["transform"].append(list(r.transform) if r.transform is not None else None)
        cols["shape"].append(list(r.shape) if r.shape is not None else None)
        cols["dtype"].append(r.dtype)
        cols["nodata"].append(r.nodata)
        cols["checksum"].append(r.checksum)
        cols["file_size"].append(r.file_size)
        cols["datetime_source"].append(r.datetime_source)
        cols["footprint_kind"].append(r.footprint_kind)
        cols["band_hrefs"].append([b.href or r.href for b in r.bands]
                                  if any(b.href for b in r.bands) else None)
        cols["mask_href"].append(r.mask_href)
        cols["mask_rule"].append(r.mask_rule)
    arrays = [pa.array(cols[f.name], type=f.type, from_pandas=False) for f in FLAT_SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=FLAT_SCHEMA)
    return table, np.array([r.footprint for r in records], dtype=object)


def row_to_record(row: dict[str, Any], footprint: shapely.Geometry) -> Record:
    """Record from one row of the flat table (``table.slice(i, 1).to_pylist()[0]``)."""
    return Record(
        id=row["id"], href=row["href"], datetime=row["datetime"], footprint=footprint,
        crs=row["crs"],
        transform=tuple(row["transform"]) if row["transform"] is not None else None,
        shape=tuple(row["shape"]) if row["shape"] is not None else None,  # type: ignore[arg-type]
        bands=tuple(Band(b["name"], b["common_name"], b["description"],
                         row["band_hrefs"][i] if row.get("band_hrefs") else None)
                    for i, b in enumerate(row["bands"])),
        dtype=row["dtype"], nodata=row["nodata"], platform=row["platform"],
        cloud_cover=row["cloud_cover"], gsd=row["gsd"], checksum=row["checksum"],
        file_size=row["file_size"], collection=row["collection"],
        datetime_source=row["datetime_source"], footprint_kind=row["footprint_kind"] or "bounds",
        mask_href=row.get("mask_href"), mask_rule=row.get("mask_rule"),
    )


def is_remote(href: str) -> bool:
    return "://" in href


def relative_href(href: str, root: str | os.PathLike[str]) -> str:
    """A local absolute href as a POSIX path relative to ``root``; a URL unchanged. Records hold
    resolved paths, so a root reached through a symbolic link is compared by its real path."""
    if is_remote(href):
        return href
    rel = os.path.relpath(href, root)
    if rel.startswith(".."):
        inside = os.path.relpath(href, os.path.realpath(root))
        rel = rel if inside.startswith("..") else inside
    return Path(rel).as_posix()


def relative_hrefs(hrefs: Iterable[str], root: Path) -> list[str]:
    """:func:`relative_href` of each href."""
    return [relative_href(h, root) for h in hrefs]


def resolve_hrefs(hrefs: Iterable[str], root: Path) -> list[str]:
    """Relative hrefs resolved against ``root`` (normalised absolute paths); others unchanged."""
    return [h if is_remote(h) or os.path.isabs(h) else os.path.normpath(root / h) for h in hrefs]


def hilbert_key(bounds: np.ndarray, order: int = HILBERT_ORDER) -> np.ndarray:
    """Position of each bbox centre along a Hilbert curve over the lon/lat plane.

    Args:
        bounds: ``(n, 4)`` array of ``(xmin, ymin, xmax, ymax)``, EPSG:4326 degrees.
        order: bits per axis; the plane is cut into ``2**order`` cells a side (16: about
            0.0055 x 0.0027 degrees).

    Returns:
        ``(n,)`` int64 keys; records close on the curve are close on the ground, so rows
        written in key order make spatially compact row groups.
    """
    side = 1 << order
    cx = (bounds[:, 0] + bounds[:, 2]) / 2.0
    cy = (bounds[:, 1] + bounds[:, 3]) / 2.0
    x = np.clip(((cx + 180.0) / 360.0 * side).astype(np.int64), 0, side - 1)
    y = np.clip(((cy + 90.0) / 180.0 * side).astype(np.int64), 0, side - 1)
    key = np.zeros(len(x), dtype=np.int64)
    s = side >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        key += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x = np.where(flip, side - 1 - x, x)
        y = np.where(flip, side - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return key


def _disk_table(table: pa.Table, footprints: np.ndarray, root: Path) -> tuple[pa.Table,
                                                                               np.ndarray]:
    """The stac-geoparquet columns of a flat table (local hrefs relative to ``root``) and the
    footprint bounds ``(n, 4)``."""
    n = table.num_rows
    bounds = shapely.bounds(footprints) if n else np.zeros((0, 4))
    hrefs = relative_hrefs(table.column("href").to_pylist(), root)
    asset = pa.StructArray.from_arrays(
        [pa.array(hrefs, pa.string()),
         pa.array([media_type(h) for h in hrefs], pa.string()),
         pa.array([["data"]] * n, pa.list_(pa.string())),
         table.column("checksum").combine_chunks(), table.column("file_size").combine_chunks()],
        names=["href", "type", "roles", "file:checksum", "file:size"])
    crs = table.column("crs").to_pylist()
    is_code = [c is not None and ":" in c and not c.lstrip().startswith(("PROJCRS", "GEOGCRS",
                                                                        "BOUNDCRS")) for c in crs]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "type": pa.array(["Feature"] * n, pa.string()),
        "stac_version": pa.array([STAC_VERSION] * n, pa.string()),
        "stac_extensions": pa.array([list(STAC_EXTENSIONS)] * n, pa.list_(pa.string())),
        "id": table.column("id"),
        "geometry": pa.array(shapely.to_wkb(footprints) if n else [], pa.binary()),
        "bbox": pa.StructArray.from_arrays([pa.array(bounds[:, i], pa.float64()) for i in range(4)],
                                           names=list(BBOX_FIELDS)),
        "links": pa.array([[]] * n, pa.list_(pa.struct([("rel", pa.string()),
                                                        ("href", pa.string())]))),
        "assets": pa.StructArray.from_arrays([asset], names=["data"]),
        "collection": table.column("collection"),
    }
    for prop, flat in _PROPERTY_COLUMNS:
        columns[prop] = table.column(flat)
    pairs = list(zip(crs, is_code, strict=True))
    columns["proj:code"] = pa.array([c if ok else None for c, ok in pairs], pa.string())
    columns["proj:wkt2"] = pa.array([None if ok else c for c, ok in pairs], pa.string())
    columns[BAND_HREFS_COLUMN] = pa.array(
        [relative_hrefs(h, root) if h is not None else None
         for h in table.column("band_hrefs").to_pylist()], pa.list_(pa.string()))
    masks = table.column("mask_href").to_pylist()
    columns[MASK_HREF_COLUMN] = pa.array(
        [None if h is None else relative_href(h, root) for h in masks], pa.string())
    columns[MASK_RULE_COLUMN] = table.column("mask_rule")
    return pa.table(columns), bounds


def _file_metadata(out: Path, root: Path, geometry_types: Sequence[str],
                   extent: Sequence[float] | None) -> dict[bytes, bytes]:
    """Parquet key-value metadata of a catalog file: GeoParquet 1.1 ``geo`` (with the bbox
    covering), stac-geoparquet version, and the archive root relative to the file."""
    from pyproj import CRS

    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {
            "encoding": "WKB", "geometry_types": sorted(geometry_types),
            "crs": CRS.from_epsg(4326).to_json_dict(),
            **({"bbox": [float(v) for v in extent]} if extent is not None else {}),
            "covering": {"bbox": {f: ["bbox", f] for f in BBOX_FIELDS}},
        }},
    }
    return {
        b"geo": json.dumps(geo).encode(),
        STAC_GEOPARQUET_KEY: json.dumps({"version": "1.0.0"}).encode(),
        CATALOG_META_KEY: json.dumps({
            "version": 2, "order": "hilbert",
            "archive": Path(os.path.relpath(root, out.parent)).as_posix()}).encode(),
    }


class CatalogWriter:
    """Streams chunks of records into a stac-geoparquet file, in the order given.

    Row groups hold at most ``ROW_GROUP_ROWS`` records and carry min/max statistics of the
    GeoParquet 1.1 ``bbox`` covering column, so a reader skips the row groups away from its AOI;
    :func:`write_catalog` sorts by :func:`hilbert_key` first so that row groups are compact. The
    file appears at ``path`` only when :meth:`close` succeeds (use it as a context manager).
    """

    def __init__(self, path: str | os.PathLike[str],
                 archive: str | os.PathLike[str] | None = None, *,
                 geometry_types: Sequence[str] = (),
                 extent: Sequence[float] | None = None) -> None:
        """Args:
            path: the catalog file to write (its folder must exist).
            archive: local hrefs are stored relative to this folder (default: the file's).
            geometry_types: the footprints' geometry types for the GeoParquet metadata
                (empty: not stated).
            extent: ``(xmin, ymin, xmax, ymax)`` of all footprints, EPSG:4326 degrees, for the
                GeoParquet metadata (None: not stated).

        Raises:
            InputError: the folder does not exist.
        """
        self.out = Path(path).absolute()
        if not self.out.parent.is_dir():
            raise InputError(f"{self.out}: folder {self.out.parent} does not exist")
        self.root = Path(archive).absolute() if archive is not None else self.out.parent
        self._meta = _file_metadata(self.out, self.root, geometry_types, extent)
        self._atomic = atomic_output(self.out, ".parquet.tmp")
        self._tmp = self._atomic.__enter__()
        self._writer: Any = None

    def write(self, table: pa.Table, footprints: np.ndarray) -> None:
        """Append records (a :data:`FLAT_SCHEMA` table and its EPSG:4326 footprints)."""
        import pyarrow.parquet as pq

        disk, _ = _disk_table(table, footprints, self.root)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, disk.schema.with_metadata(self._meta),
                                            compression="zstd")
        elif disk.schema != self._writer.schema:
            disk = disk.cast(self._writer.schema)
        self._writer.write_table(disk, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._writer is None:
            self.write(FLAT_SCHEMA.empty_table(), np.empty(0, dtype=object))
        self._writer.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the partial file; ``path`` is left as it was."""
        if self._writer is not None:
            self._writer.close()
        self._atomic.__exit__(InputError, InputError("aborted"), None)

    def __enter__(self) -> CatalogWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_catalog(path: str | os.PathLike[str], table: pa.Table, footprints: np.ndarray,
                  archive: str | os.PathLike[str] | None = None) -> None:
    """Write a flat table + footprints as stac-geoparquet at ``path`` atomically, rows in
    Hilbert order of their bbox centres (see :class:`CatalogWriter`); local hrefs are stored
    relative to ``archive`` (default: the catalog file's folder).

    Raises:
        InputError: the folder of ``path`` does not exist.
    """
    bounds = shapely.bounds(footprints) if table.num_rows else np.zeros((0, 4))
    order = np.argsort(hilbert_key(bounds), kind="stable")
    types = sorted({g.geom_type for g in footprints})
    extent = ([*bounds[:, :2].min(0), *bounds[:, 2:].max(0)] if table.num_rows else None)
    with CatalogWriter(path, archive, geometry_types=types, extent=extent) as writer:
        for start in range(0, max(table.num_rows, 1), ROW_GROUP_ROWS):
            rows = order[start:start + ROW_GROUP_ROWS]
            writer.write(table.take(rows), footprints[rows])


class CatalogFile:
    """An open stac-geoparquet catalog: its Parquet metadata, archive root and, when the file
    has a GeoParquet 1.1 bbox covering, the per-row-group bbox statistics; rows are read on
    demand, only those a filter keeps (see :meth:`read`).

    Attributes:
        path: the file (absolute).
        root: the folder relative hrefs resolve against.
        num_rows: records in the file.
        covering: the ``(xmin, ymin, xmax, ymax)`` column paths of the bbox covering, or None
            for a file written without one (before covering columns were written).
        last_read: what the last :meth:`read` by boxes read: ``row_groups`` in the file,
            ``near`` (statistics meet a box), ``read`` (holding a match), ``rows`` kept.
    """

    def __init__(self, path: str | os.PathLike[str],
                 archive: str | os.PathLike[str] | None = None) -> None:
        """Open ``path`` (reads the footer only).

        Args:
            path: the catalog file.
            archive: folder relative hrefs resolve against (default: the root recorded in the
                file, relative to the file).

        Raises:
            InputError: the file is missing, not Parquet (e.g. truncated), or not a catalog;
                ``archive`` is not a folder.
        """
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        self.path = Path(path).absolute()
        if not self.path.is_file():
            raise InputError(f"{self.path}: catalog file does not exist")
        try:
            self._parquet = pq.ParquetFile(self.path)
            self.schema = self._parquet.schema_arrow
            self._fragment = next(iter(ds.dataset(self.path, format="parquet").get_fragments()))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.path}: not a catalog (not a Parquet file: {exc})") from None
        missing = [c for c in ("id", "geometry", "datetime", "assets")
                   if c not in self.schema.names]
        if missing:
            raise InputError(f"{self.path}: not a catalog (missing columns {', '.join(missing)})")
        meta = self.schema.metadata or {}
        try:
            own = json.loads(meta.get(CATALOG_META_KEY, b"{}"))
            geo = json.loads(meta.get(b"geo", b"{}"))
        except ValueError as exc:
            raise InputError(f"{self.path}: not a catalog (metadata is not JSON: {exc})") from None
        if archive is not None:
            self.root = Path(archive).absolute()
            if not self.root.is_dir():
                raise InputError(f"{self.root}: archive folder does not exist")
        else:
            self.root = Path(os.path.normpath(self.path.parent / str(own.get("archive", "."))))
        self.num_rows: int = self._parquet.metadata.num_rows
        self.covering = self._covering(geo)
        meta = self._parquet.metadata
        self._group_rows = np.array([meta.row_group(g).num_rows
                                     for g in range(meta.num_row_groups)], dtype=np.int64)
        self._groups = self._group_bounds() if self.covering is not None else None
        self.last_read: dict[str, int] = {}

    def _covering(self, geo: Any) -> tuple[tuple[str, ...], ...] | None:
        """The bbox covering's column paths when the file declares a usable one."""
        try:
            spec = geo["columns"][geo["primary_column"]]["covering"]["bbox"]
            paths = tuple(tuple(str(p) for p in spec[f]) for f in BBOX_FIELDS)
        except (KeyError, TypeError):
            return None
        for p in paths:
            typ: Any = self.schema
            try:
                for name in p:
                    typ = typ.field(name).type
            except KeyError:
                raise InputError(f"{self.path}: not a catalog (bbox covering column "
                                 f"{'.'.join(p)} is missing)") from None
            if not pa.types.is_floating(typ):
                raise InputError(f"{self.path}: not a catalog (bbox covering column "
                                 f"{'.'.join(p)} is {typ}, not a float)")
        return paths

    def _group_bounds(self) -> np.ndarray:
        """``(row groups, 4)``: min xmin, min ymin, max xmax, max ymax of each row group
        (infinite where a row group has no statistics, so it is always read)."""
        meta = self._parquet.metadata
        leaf = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
        cols = [leaf[".".join(p)] for p in self.covering or ()]
        out = np.empty((meta.num_row_groups, 4))
        fallback = (-np.inf, -np.inf, np.inf, np.inf)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for k, col in enumerate(cols):
                stats = group.column(col).statistics
                if stats is None or not stats.has_min_max:
                    out[g, k] = fallback[k]
                else:
                    out[g, k] = stats.min if k < 2 else stats.max
        return out

    def read(self, boxes: Sequence[tuple[float, float, float, float]] | None = None,
             ids: Sequence[str] | None = None) -> tuple[pa.Table, np.ndarray]:
        """Records whose bbox meets one of ``boxes``, or whose id is in ``ids``, or all.

        With ``boxes``, in two passes: the bbox covering columns of the row groups whose
        statistics meet a box, then every column of the row groups holding a matching row;
        only the matching rows are kept. With ``ids``, the file is scanned with a filter on the
        id column (row group by row group), keeping only the matching rows.

        Args:
            boxes: ``(west, south, east, north)`` boxes, EPSG:4326 degrees (needs a covering).
            ids: record ids to keep.

        Returns:
            The flat table (:data:`FLAT_SCHEMA`, absolute hrefs) and the footprints.

        Raises:
            InputError: the rows cannot be read or are not catalog records; ``boxes`` for a
                file without a bbox covering.
        """
        import pyarrow.compute as pc

        columns = [c for c in _READ_COLUMNS if c in self.schema.names]
        try:
            if boxes is not None:
                table = self._read_boxes(boxes, columns)
            else:
                expr = None if ids is None else pc.field("id").isin(
                    pa.array(list(ids), pa.string()))
                table = self._fragment.to_table(schema=self.schema, columns=columns,
                                                filter=expr)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.path}: not a catalog (unreadable rows: {exc})") from None
        return _flatten(table, self.path, self.root)

    def _read_boxes(self, boxes: Sequence[tuple[float, float, float, float]],
                    columns: list[str]) -> pa.Table:
        """``columns`` of the rows whose bbox meets one of ``boxes`` (see :meth:`read`)."""
        import pyarrow.compute as pc

        if self.covering is None or self._groups is None:
            raise InputError(f"{self.path}: has no bbox covering columns; load it whole")
        g = self._groups
        near = np.zeros(len(g), dtype=bool)
        for w, s, e, n in boxes:
            near |= (g[:, 0] <= e) & (g[:, 2] >= w) & (g[:, 1] <= n) & (g[:, 3] >= s)
        groups = np.flatnonzero(near)
        self.last_read = {"row_groups": len(g), "near": int(groups.size), "read": 0, "rows": 0}
        if not groups.size:
            return self.schema.empty_table().select(columns)
        tops = sorted({p[0] for p in self.covering})
        cover = self._parquet.read_row_groups(groups.tolist(), columns=tops, use_threads=False)

        def coord(path: tuple[str, ...]) -> np.ndarray:
            arr: Any = cover.column(path[0])
            for name in path[1:]:
                arr = pc.struct_field(arr, name)
            return arr.to_numpy()

        xmin, ymin, xmax, ymax = (coord(p) for p in self.covering)
        hit = np.zeros(cover.num_rows, dtype=bool)
        for w, s, e, n in boxes:
            hit |= (xmin <= e) & (xmax >= w) & (ymin <= n) & (ymax >= s)
        if not hit.any():
            return self.schema.empty_table().select(columns)
        sizes = self._group_rows[groups]
        holding = np.add.reduceat(hit, np.r_[0, np.cumsum(sizes)[:-1]]) > 0
        rows = self._parquet.read_row_groups(groups[holding].tolist(), columns=columns,
                                             use_threads=False)
        self.last_read.update(read=int(holding.sum()), rows=int(hit.sum()))
        return rows.filter(pa.array(hit[np.repeat(holding, sizes)]))


def read_catalog(path: str | os.PathLike[str], archive: str | os.PathLike[str] | None = None
                 ) -> tuple[pa.Table, np.ndarray, Path]:
    """Read a whole stac-geoparquet catalog: (flat table with absolute hrefs, footprints,
    archive root). Raises InputError when ``path`` is missing or is not a catalog."""
    file = CatalogFile(path, archive)
    table, footprints = file.read()
    return table, footprints, file.root


def _flatten(table: pa.Table, src: Path, root: Path) -> tuple[pa.Table, np.ndarray]:
    """The flat table and footprints of stac-geoparquet rows read from ``src``."""
    import pyarrow.compute as pc

    assets = table.column("assets").combine_chunks()
    asset = (pc.struct_field(assets, "data") if "data" in [f.name for f in assets.type]
             else pc.struct_field(assets, 0))
    asset_fields = [f.name for f in asset.type]
    n = table.num_rows

    def prop(name: str, typ: pa.DataType) -> pa.Array:
        if name in table.column_names:
            return table.column(name).combine_chunks().cast(typ)
        return pa.nulls(n, typ)

    def from_asset(name: str, typ: pa.DataType) -> pa.Array:
        return pc.struct_field(asset, name).cast(typ) if name in asset_fields else pa.nulls(n, typ)

    code, wkt = prop("proj:code", pa.string()), prop("proj:wkt2", pa.string())
    try:
        flat = {
            "id": prop("id", pa.string()),
            "href": pa.array(resolve_hrefs(from_asset("href", pa.string()).to_pylist(), root),
                             pa.string()),
            "datetime": prop("datetime", pa.timestamp("us", tz="UTC")),
            "collection": prop("collection", pa.string()),
            "platform": prop("platform", pa.string()),
            "gsd": prop("gsd", pa.float64()),
            "cloud_cover": prop("eo:cloud_cover", pa.float64()),
            "bands": prop("eo:bands", pa.list_(_BAND)),
            "crs": pc.coalesce(code, wkt),
            "transform": prop("proj:transform", pa.list_(pa.float64())),
            "shape": prop("proj:shape", pa.list_(pa.int64())),
            "dtype": prop("data_type", pa.string()),
            "nodata": prop("nodata", pa.float64()),
            "checksum": from_asset("file:checksum", pa.string()),
            "file_size": from_asset("file:size", pa.int64()),
            "datetime_source": prop("georefscale:datetime_source", pa.string()),
            "footprint_kind": prop("georefscale:footprint", pa.string()),
            "band_hrefs": pa.array([resolve_hrefs(h, root) if h is not None else None
                                    for h in prop(BAND_HREFS_COLUMN, pa.list_(pa.string()))
                                    .to_pylist()], pa.list_(pa.string())),
            "mask_href": pa.array([None if h is None else resolve_hrefs([h], root)[0]
                                   for h in prop(MASK_HREF_COLUMN, pa.string()).to_pylist()],
                                  pa.string()),
            "mask_rule": prop(MASK_RULE_COLUMN, pa.string()),
        }
        footprints = shapely.from_wkb(table.column("geometry").combine_chunks().to_numpy(
            zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, shapely.errors.GEOSException) as exc:
        raise InputError(f"{src}: not a catalog (unreadable columns: {exc})") from None
    if flat["datetime"].null_count or flat["id"].null_count:
        raise InputError(f"{src}: not a catalog (records without id or datetime)")
    return pa.Table.from_arrays(list(flat.values()), schema=FLAT_SCHEMA), footprints


def write_item_collection(path: str | os.PathLike[str], records: Iterable[Record]) -> None:
    """Write ``records`` as a STAC ItemCollection JSON (local hrefs relative to its folder)."""
    out = Path(path).absolute()
    items = []
    for r in records:
        items.append(r.with_href(relative_href(r.href, out.parent)).to_item()
                     .to_dict(include_self_link=False))
    with atomic_output(out, ".json.tmp") as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
