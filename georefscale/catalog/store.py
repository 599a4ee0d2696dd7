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
])

#: stac-geoparquet property columns <- flat columns.
_PROPERTY_COLUMNS = (
    ("datetime", "datetime"), ("platform", "platform"), ("gsd", "gsd"),
    ("eo:cloud_cover", "cloud_cover"), ("eo:bands", "bands"), ("proj:transform", "transform"),
    ("proj:shape", "shape"), ("data_type", "dtype"), ("nodata", "nodata"),
    ("georefscale:datetime_source", "datetime_source"),
    ("georefscale:footprint", "footprint_kind"),
)


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
        bands=tuple(Band(b["name"], b["common_name"], b["description"]) for b in row["bands"]),
        dtype=row["dtype"], nodata=row["nodata"], platform=row["platform"],
        cloud_cover=row["cloud_cover"], gsd=row["gsd"], checksum=row["checksum"],
        file_size=row["file_size"], collection=row["collection"],
        datetime_source=row["datetime_source"], footprint_kind=row["footprint_kind"] or "bounds",
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


def write_catalog(path: str | os.PathLike[str], table: pa.Table, footprints: np.ndarray,
                  archive: str | os.PathLike[str] | None = None) -> None:
    """Write a flat table + footprints as stac-geoparquet at ``path`` atomically; local hrefs are
    stored relative to ``archive`` (default: the catalog file's folder)."""
    import pyarrow.parquet as pq
    from pyproj import CRS

    out = Path(path).absolute()
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    root = Path(archive).absolute() if archive is not None else out.parent
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
                                           names=["xmin", "ymin", "xmax", "ymax"]),
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
    types = sorted({g.geom_type for g in footprints}) if n else []
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {
            "encoding": "WKB", "geometry_types": types, "crs": CRS.from_epsg(4326).to_json_dict(),
            "bbox": ([float(bounds[:, 0].min()), float(bounds[:, 1].min()),
                      float(bounds[:, 2].max()), float(bounds[:, 3].max())] if n else []),
        }},
    }
    meta = {
        b"geo": json.dumps(geo).encode(),
        STAC_GEOPARQUET_KEY: json.dumps({"version": "1.0.0"}).encode(),
        CATALOG_META_KEY: json.dumps({
            "version": 1, "archive": Path(os.path.relpath(root, out.parent)).as_posix()}).encode(),
    }
    result = pa.table(columns).replace_schema_metadata(meta)
    with atomic_output(out, ".parquet.tmp") as tmp:
        pq.write_table(result, tmp, compression="zstd")


def read_catalog(path: str | os.PathLike[str], archive: str | os.PathLike[str] | None = None
                 ) -> tuple[pa.Table, np.ndarray, Path]:
    """Read a stac-geoparquet catalog: (flat table with absolute hrefs, footprints, archive root).
    Raises InputError when ``path`` is missing or is not a catalog."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = Path(path).absolute()
    if not src.is_file():
        raise InputError(f"{src}: catalog file does not exist")
    try:
        table = pq.read_table(src)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{src}: not a catalog (not a Parquet file: {exc})") from None
    missing = [c for c in ("id", "geometry", "datetime", "assets") if c not in table.column_names]
    if missing:
        raise InputError(f"{src}: not a catalog (missing columns {', '.join(missing)})")
    meta = json.loads((table.schema.metadata or {}).get(CATALOG_META_KEY, b"{}"))
    if archive is not None:
        root = Path(archive).absolute()
        if not root.is_dir():
            raise InputError(f"{root}: archive folder does not exist")
    else:
        root = Path(os.path.normpath(src.parent / meta.get("archive", ".")))
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
        }
        footprints = shapely.from_wkb(table.column("geometry").combine_chunks().to_numpy(
            zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, shapely.errors.GEOSException) as exc:
        raise InputError(f"{src}: not a catalog (unreadable columns: {exc})") from None
    if flat["datetime"].null_count or flat["id"].null_count:
        raise InputError(f"{src}: not a catalog (records without id or datetime)")
    return pa.Table.from_arrays(list(flat.values()), schema=FLAT_SCHEMA), footprints, root


def write_item_collection(path: str | os.PathLike[str], records: Iterable[Record]) -> None:
    """Write ``records`` as a STAC ItemCollection JSON (local hrefs relative to its folder)."""
    out = Path(path).absolute()
    items = []
    for r in records:
        items.append(r.with_href(relative_href(r.href, out.parent)).to_item()
                     .to_dict(include_self_link=False))
    with atomic_output(out, ".json.tmp") as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
