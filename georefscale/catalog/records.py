"""Catalog records: one per raster, equivalent to a STAC Item (projection + eo extensions).

Footprints are shapely geometries in EPSG:4326 (lon, lat degrees); datetimes are timezone-aware UTC;
``gsd`` is the ground sample distance in metres; ``checksum`` is the STAC ``file:checksum`` of the
file (SHA-256 multihash: ``"1220"`` + hex digest).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import mapping, shape

from georefscale.errors import InputError
from georefscale.raster.io import sha256_file

#: Multihash prefix of a SHA-256 digest (code 0x12, length 0x20), as used by STAC ``file:checksum``.
SHA256_MULTIHASH_PREFIX = "1220"
#: Vertices added per footprint edge before reprojection, so curved edges stay accurate.
DENSIFY_POINTS = 10
#: Tolerance (degrees, about 10 cm) for dropping reprojected vertices left on a straight edge.
SIMPLIFY_DEGREES = 1e-6
#: The valid-data mask is read at most this many pixels on its long side.
MASK_MAX_SIDE = 512
#: Tags holding an acquisition date, checked in this order.
ACQUISITION_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "DATE_ACQUIRED", "SENSING_TIME")
#: Tags holding a cloud cover percentage.
CLOUD_TAGS = ("CLOUD_COVER", "CLOUDY_PIXEL_PERCENTAGE", "CLOUD_COVERAGE_ASSESSMENT")
#: Default file-name date: an 8-digit YYYYMMDD token (NAIP ``_20190904``, OSCD ``paris_20161130``).
DEFAULT_DATE_PATTERN = r"(?<!\d)(\d{8})(?!\d)"
COMMON_NAMES = ("coastal", "blue", "green", "red", "yellow", "pan", "rededge", "nir", "nir08",
                "nir09", "cirrus", "swir16", "swir22", "lwir", "lwir11", "lwir12")
#: Sentinel-2 MSI band names and their STAC common names (asset keys of many STAC APIs).
SENTINEL2_COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red",
                    "B05": "rededge", "B06": "rededge", "B07": "rededge", "B08": "nir",
                    "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
                    "B12": "swir22"}
#: Asset roles of a cloud / shadow mask (values: nonzero = masked, see
#: :mod:`georefscale.raster.refmask`).
MASK_ROLES = frozenset({"cloud", "cloud-shadow", "data-mask"})
#: Asset key of a Sentinel-2 L2A scene classification (any case): a mask of rule "scl".
SCL_KEY = "scl"
#: Asset roles that never hold a band of the scene (unless the asset is also a "data" asset).
NON_BAND_ROLES = frozenset({"thumbnail", "overview", "visual", "metadata"}) | MASK_ROLES
#: At most this many assets are looked at in one STAC Item (an item is metadata, not data).
MAX_ASSETS = 1000
STAC_EXTENSIONS = (
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
)


@dataclass(frozen=True)
class Band:
    """One raster band: ``name`` (e.g. ``B02``), optional STAC ``common_name`` and description;
    ``href``: the single-band file holding it when the record's bands are separate files (STAC
    band assets), else None (band i of the record's file)."""

    name: str
    common_name: str | None = None
    description: str | None = None
    href: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("name", self.name), ("common_name", self.common_name),
                                  ("description", self.description)) if v is not None}


@dataclass(frozen=True)
class Record:
    """One raster of the archive.

    ``crs`` is an authority code (``EPSG:26914``) or WKT; ``transform`` the 6 GDAL-order affine
    coefficients ``(a, b, c, d, e, f)`` of rasterio's ``Affine``; ``shape`` is ``(height, width)``.
    ``href`` is an absolute local path or a URL while in memory (the store writes it relative).
    ``mask_href`` / ``mask_rule``: the record's cloud / shadow mask asset and how its values
    mark masked pixels (:data:`~georefscale.options.MASK_RULES`), or None; see
    :func:`mask_asset`.
    """

    id: str
    href: str
    datetime: datetime
    footprint: shapely.Geometry
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    shape: tuple[int, int] | None = None
    bands: tuple[Band, ...] = ()
    dtype: str | None = None
    nodata: float | None = None
    platform: str | None = None
    cloud_cover: float | None = None
    gsd: float | None = None
    checksum: str | None = None
    file_size: int | None = None
    collection: str | None = None
    datetime_source: str | None = None
    footprint_kind: str = "bounds"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    mask_href: str | None = None
    mask_rule: str | None = None

    @property
    def band_count(self) -> int:
        return len(self.bands)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the footprint, degrees."""
        return tuple(float(v) for v in self.footprint.bounds)  # type: ignore[return-value]

    @property
    def sha256(self) -> str | None:
        """Hex SHA-256 of the file, without the multihash prefix."""
        if self.checksum is None:
            return None
        return self.checksum.removeprefix(SHA256_MULTIHASH_PREFIX)

    def to_item(self) -> Any:
        """The record as a ``pystac.Item`` (projection, eo and file extensions)."""
        import pystac

        props: dict[str, Any] = {
            "proj:code": self.crs if self.crs and not self.crs.lstrip().startswith(("PROJCRS",
                                                                                   "GEOGCRS"))
            else None,
            "eo:bands": [b.to_dict() for b in self.bands],
        }
        if self.crs and props["proj:code"] is None:
            props["proj:wkt2"] = self.crs
        if self.transform is not None:
            props["proj:transform"] = list(self.transform)
        if self.shape is not None:
            props["proj:shape"] = list(self.shape)
        for key, value in (("platform", self.platform), ("gsd", self.gsd),
                           ("eo:cloud_cover", self.cloud_cover), ("data_type", self.dtype),
                           ("nodata", _json_nodata(self.nodata)),
                           ("georefscale:datetime_source", self.datetime_source),
                           ("georefscale:footprint", self.footprint_kind)):
            if value is not None:
                props[key] = value
        item = pystac.Item(id=self.id, geometry=mapping(self.footprint), bbox=list(self.bbox),
                           datetime=self.datetime, properties=props, collection=None,
                           stac_extensions=list(STAC_EXTENSIONS))
        if self.collection:
            item.collection_id = self.collection
        asset_extra: dict[str, Any] = {}
        if self.checksum:
            asset_extra["file:checksum"] = self.checksum
        if self.file_size is not None:
            asset_extra["file:size"] = self.file_size
        if self.mask_href is not None:
            scl = self.mask_rule == "scl"
            item.add_asset(SCL_KEY if scl else "cloud-mask", pystac.Asset(
                href=self.mask_href, media_type=media_type(self.mask_href),
                roles=["data"] if scl else ["cloud", "cloud-shadow"]))
        if any(b.href for b in self.bands):
            for band in self.bands:
                item.add_asset(band.name, pystac.Asset(
                    href=band.href or self.href, media_type=media_type(band.href or self.href),
                    roles=["data"], extra_fields={"eo:bands": [band.to_dict()]}))
            return item
        item.add_asset("data", pystac.Asset(href=self.href, media_type=media_type(self.href),
                                            roles=["data"], extra_fields=asset_extra))
        return item

    @classmethod
    def from_item(cls, item: Any, asset_key: str | None = None, base: str | None = None
                  ) -> Record:
        """Build a record from a STAC Item (``pystac.Item`` or its dict, untrusted).

        The bands are the item's band assets when it has any (single-band assets named by an
        asset-level ``eo:bands`` / ``bands`` entry, or keyed by a band name such as ``blue`` or
        ``B02``): those on the finest grid, each keeping its own href (the record's href is the
        first one's). Otherwise the raster is asset ``asset_key`` or the first asset with role
        ``data`` / a GeoTIFF media type, with the item-level ``eo:bands``.

        Args:
            item: the Item.
            asset_key: the asset holding the raster, for items without band assets.
            base: where the item was read from (file or URL); relative hrefs resolve against
                its self link, else against ``base``. A remote item's assets must be remote.

        Returns:
            The record (hrefs absolute paths or URLs).

        Raises:
            InputError: the item is malformed (id, datetime, geometry, assets), its band
                assets disagree in grid, or a remote item names a local file.
        """
        if not isinstance(item, dict):
            base = base or item.get_self_href()
            item = item.to_dict(include_self_link=True)
        rid = item.get("id")
        if not isinstance(rid, str) or not rid.strip() or len(rid) > 1024 or any(
                ord(c) < 32 for c in rid):
            raise InputError(f"STAC item {str(rid)[:80]!r}: id must be a non-empty string of "
                             "printable characters")
        props = item.get("properties")
        assets = item.get("assets")
        if not isinstance(props, dict) or not isinstance(assets, dict):
            raise InputError(f"STAC item {rid}: properties and assets must be objects")
        if len(assets) > MAX_ASSETS:
            raise InputError(f"STAC item {rid}: {len(assets)} assets (at most {MAX_ASSETS})")
        self_link = next((ln.get("href") for ln in item.get("links") or []
                          if isinstance(ln, dict) and ln.get("rel") == "self"
                          and isinstance(ln.get("href"), str)), None)
        base = self_link if self_link and ("://" in self_link or base is None) else base
        when = props.get("datetime") or props.get("start_datetime")
        if when is None:
            raise InputError(f"STAC item {rid}: no datetime")
        when = parse_datetime(when) if isinstance(when, str) else when
        if not isinstance(when, datetime):
            raise InputError(f"STAC item {rid}: datetime {when!r} is not a date")
        try:
            footprint = shape(item["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError,
                shapely.errors.GEOSException) as exc:
            raise InputError(f"STAC item {rid}: no usable geometry ({exc})") from None
        if footprint.is_empty or not footprint.is_valid:
            raise InputError(f"STAC item {rid}: geometry is empty or invalid")
        grid = _grid(props, {})
        band_assets = _band_assets(rid, assets, props, base)
        if band_assets:
            bands = tuple(band for band, _, _ in band_assets)
            key, asset, grid = band_assets[0][1], assets[band_assets[0][1]], band_assets[0][2]
            href, checksum, size = bands[0].href, None, None
        else:
            key, asset = _pick_asset(rid, assets, asset_key)
            href = _resolve(rid, key, asset, base)
            bands = tuple(Band(str(b.get("name") or f"b{i + 1}"), b.get("common_name"),
                               b.get("description"))
                          for i, b in enumerate(props.get("eo:bands") or [])
                          if isinstance(b, dict))
            checksum, size = asset.get("file:checksum"), asset.get("file:size")
        crs, transform, shp = grid
        mask = mask_asset(rid, assets, base)
        raster = (asset.get("raster:bands") or [{}])[0]
        raster = raster if isinstance(raster, dict) else {}
        return cls(
            id=rid,
            href=href,  # type: ignore[arg-type]
            datetime=when.astimezone(timezone.utc),
            footprint=footprint,
            crs=crs,
            transform=transform,
            shape=shp,  # type: ignore[arg-type]
            bands=bands,
            dtype=props.get("data_type") or raster.get("data_type"),
            nodata=_parse_nodata(props.get("nodata", raster.get("nodata"))),
            platform=props.get("platform"),
            cloud_cover=_number(props.get("eo:cloud_cover")),
            gsd=_number(props.get("gsd")),
            checksum=checksum if isinstance(checksum, str) else None,
            file_size=size if isinstance(size, int) else None,
            collection=item.get("collection") if isinstance(item.get("collection"), str)
            else None,
            datetime_source=props.get("georefscale:datetime_source", "stac"),
            footprint_kind=props.get("georefscale:footprint", "stac"),
            mask_href=None if mask is None else mask[0],
            mask_rule=None if mask is None else mask[1],
        )

    def with_href(self, href: str) -> Record:
        return replace(self, href=href)


def file_checksum(path: str | os.PathLike[str]) -> str:
    """STAC ``file:checksum`` of a file: SHA-256 multihash (``"1220"`` + 64 hex digits)."""
    return SHA256_MULTIHASH_PREFIX + sha256_file(path)


def parse_datetime(value: str | date | datetime) -> datetime:
    """Parse ``YYYY-MM-DD[THH:MM[:SS]][Z|±HH:MM]``, ``YYYYMMDD``, ``YYYY:MM:DD HH:MM:SS`` (TIFF)
    or a date/datetime; naive values are taken as UTC. Raises InputError when it does not parse."""
    if isinstance(value, datetime):
        out = value
    elif isinstance(value, date):
        out = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        tiff = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2})", text)
        if tiff:
            text = f"{tiff[1]}-{tiff[2]}-{tiff[3]}T{tiff[4]}"
        elif re.fullmatch(r"\d{8}", text):
            text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
        elif re.fullmatch(r"\d{8}T\d{6}Z?", text):
            text = (f"{text[:4]}-{text[4:6]}-{text[6:8]}T{text[9:11]}:{text[11:13]}:{text[13:15]}"
                    + text[15:])
        try:
            out = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InputError(f"date {value!r} does not parse (use YYYY-MM-DD or an ISO 8601 "
                             "datetime)") from None
    if out.tzinfo is None:
        out = out.replace(tzinfo=timezone.utc)
    return out.astimezone(timezone.utc)


def densified_footprint(geom: shapely.Geometry, src_crs: Any,
                        points_per_edge: int = DENSIFY_POINTS) -> shapely.Geometry:
    """Reproject a footprint from ``src_crs`` to EPSG:4326 (cut at the antimeridian): edges get
    ``points_per_edge`` vertices per bounding-box side before the transform, and the vertices
    that stay collinear within ``SIMPLIFY_DEGREES`` are dropped after it."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    crs = CRS.from_user_input(src_crs.to_wkt() if hasattr(src_crs, "to_wkt") else src_crs)
    if crs == CRS.from_epsg(4326):
        return geom
    west, south, east, north = geom.bounds
    step = max(east - west, north - south) / max(points_per_edge, 1)
    dense = shapely.segmentize(geom, step) if step > 0 else geom
    out = shape(transform_geom(crs, "EPSG:4326", mapping(dense)))
    out = out if out.is_valid else shapely.make_valid(out)
    return shapely.simplify(out, SIMPLIFY_DEGREES)


def valid_data_polygon(ds: Any, max_side: int = MASK_MAX_SIDE) -> shapely.Geometry | None:
    """Valid-data area of an open rasterio dataset in its own CRS, from the dataset mask read
    at most ``max_side`` pixels wide (so accurate to about one decimated pixel); None if empty."""
    from rasterio.errors import NodataShadowWarning
    from rasterio.features import shapes

    decim = max(1, math.ceil(max(ds.width, ds.height) / max_side))
    out_h, out_w = math.ceil(ds.height / decim), math.ceil(ds.width / decim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NodataShadowWarning)  # nodata wins over alpha: intended
        mask = ds.dataset_mask(out_shape=(out_h, out_w))
    valid = (mask > 0).astype("uint8")
    if not valid.any():
        return None
    if valid.all():
        return shapely.box(*ds.bounds)
    transform = ds.transform @ ds.transform.scale(ds.width / out_w, ds.height / out_h)
    polys = [shape(geom) for geom, v in shapes(valid, mask=valid.astype(bool), transform=transform)
             if v == 1]
    pixel = max(abs(transform.a), abs(transform.e))
    return shapely.union_all(polys).simplify(pixel / 2)


def gsd_metres(crs: Any, transform: Any, bounds: Sequence[float]) -> float | None:
    """Ground sample distance in metres: geometric mean of the pixel sides, converted at the
    raster centre for geographic CRSs."""
    if crs is None:
        return None
    xres, yres = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        lat = math.radians((bounds[1] + bounds[3]) / 2)
        metres_per_degree = 111_320.0
        return math.sqrt(xres * metres_per_degree * math.cos(lat) * yres * metres_per_degree)
    return math.sqrt(xres * yres) * crs.linear_units_factor[1]


def acquisition_datetime(path: Path, tags: dict[str, str],
                         date_pattern: str | None) -> tuple[datetime, str]:
    """Acquisition time of a raster and where it came from: the explicit ``date_pattern``
    (regex on the file name; group ``date`` or group 1), then acquisition tags, then an
    8-digit YYYYMMDD token in the name, then ``TIFFTAG_DATETIME``."""
    if date_pattern:
        found = _match_date(date_pattern, path.name)
        if found is None:
            raise InputError(f"{path}: file name does not match --date-pattern {date_pattern!r}")
        return found, "filename"
    for tag in ACQUISITION_TAGS:
        if tags.get(tag):
            return parse_datetime(tags[tag]), f"tag:{tag}"
    found = _match_date(DEFAULT_DATE_PATTERN, path.name, quiet=True)
    if found is not None:
        return found, "filename"
    if tags.get("TIFFTAG_DATETIME"):
        return parse_datetime(tags["TIFFTAG_DATETIME"]), "tag:TIFFTAG_DATETIME"
    raise InputError(f"{path}: no acquisition date (no ACQUISITION_DATE tag, no date in the file "
                     "name; pass --date-pattern)")


def record_from_raster(path: str | os.PathLike[str], *, date_pattern: str | None = None,
                       platform: str | None = None, band_names: Sequence[str] | None = None,
                       collection: str | None = None, footprint: str = "auto",
                       acquired: datetime | None = None) -> Record:
    """Read one GeoTIFF's metadata (and its mask for ``footprint="valid"``, the default
    ``"auto"`` when the file has nodata or a mask) into a Record; ``acquired`` overrides the
    acquisition time found by :func:`acquisition_datetime`. Raises InputError."""
    import rasterio
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioError

    src = Path(path).resolve()
    if footprint not in ("auto", "valid", "bounds"):
        raise InputError(f"footprint must be auto, valid or bounds, not {footprint!r}")
    try:
        with rasterio.open(src) as ds:
            if ds.crs is None:
                raise InputError(f"{src}: raster has no CRS")
            if ds.transform.is_identity:
                raise InputError(f"{src}: raster has no geotransform")
            tags = ds.tags()
            when, when_source = ((parse_datetime(acquired), "given") if acquired is not None
                                 else acquisition_datetime(src, tags, date_pattern))
            has_mask = ds.nodata is not None or any(
                MaskFlags.all_valid not in flags for flags in ds.mask_flag_enums)
            kind = "valid" if footprint == "valid" or (footprint == "auto" and has_mask) else \
                "bounds"
            area = valid_data_polygon(ds) if kind == "valid" else shapely.box(*ds.bounds)
            if area is None:
                raise InputError(f"{src}: raster has no valid pixels")
            names = list(band_names) if band_names else None
            if names is not None and len(names) != ds.count:
                raise InputError(f"{src}: {len(names)} band names given for {ds.count} bands")
            bands = tuple(_band(i, ds.descriptions[i], names[i] if names else None)
                          for i in range(ds.count))
            cloud = next((float(tags[t]) for t in CLOUD_TAGS if _is_number(tags.get(t))), None)
            if cloud is None:
                cloud = _measured_cloud_cover(ds, bands)
            epsg = ds.crs.to_epsg()
            crs_text = f"EPSG:{epsg}" if epsg else ds.crs.to_wkt()
            return Record(
                id=src.stem,
                href=str(src),
                datetime=when,
                footprint=densified_footprint(area, ds.crs),
                crs=crs_text,
                transform=tuple(ds.transform)[:6],
                shape=(ds.height, ds.width),
                bands=bands,
                dtype=ds.dtypes[0],
                nodata=ds.nodata,
                platform=platform or tags.get("SENSOR") or tags.get("PLATFORM"),
                cloud_cover=cloud,
                gsd=gsd_metres(ds.crs, ds.transform, ds.bounds),
                checksum=file_checksum(src),
                file_size=src.stat().st_size,
                collection=collection,
                datetime_source=when_source,
                footprint_kind=kind,
            )
    except RasterioError as exc:
        raise InputError(f"{src}: not a readable raster ({exc})") from None
    except OSError as exc:
        raise InputError(f"{src}: cannot read ({exc.strerror or exc})") from None


def _measured_cloud_cover(ds: Any, bands: Sequence[Band]) -> float | None:
    """The cloud cover (percent) of a raster without a cloud tag, by the spectral test the
    references are masked with (:func:`~georefscale.raster.clouds.cloud_cover`, DN / the dtype's
    default scale), so ranking and masking mean the same by "cloudy"; None when its bands are
    not the four of a test, or the dtype has no default scale."""
    from georefscale.raster.clouds import cloud_bands, cloud_cover
    from georefscale.raster.io import DEFAULT_SCALES

    found = cloud_bands([b.name for b in bands])
    if found is None or ds.dtypes[0] not in DEFAULT_SCALES:
        return None
    kind, indexes = found
    return round(cloud_cover(ds, kind, DEFAULT_SCALES[ds.dtypes[0]], bands=indexes), 3)


def _band(index: int, description: str | None, name: str | None) -> Band:
    """Band from an explicit name or a GDAL description such as ``"B02 blue"``."""
    text = name or description or f"b{index + 1}"
    words = text.replace("_", " ").split()
    common = next((w.lower() for w in words if w.lower() in COMMON_NAMES), None)
    band_name = name or (words[0] if description and words else f"b{index + 1}")
    return Band(name=band_name, common_name=common, description=description or None)


def _match_date(pattern: str, name: str, quiet: bool = False) -> datetime | None:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"--date-pattern {pattern!r} is not a regular expression ({exc})") \
            from None
    for match in regex.finditer(name):
        text = match.group("date") if "date" in regex.groupindex else (
            match.group(1) if regex.groups else match.group(0))
        try:
            return parse_datetime(text)
        except InputError:
            if not quiet:
                raise InputError(f"{name}: date {text!r} from --date-pattern does not parse") \
                    from None
    return None


def _is_number(text: str | None) -> bool:
    try:
        return text is not None and math.isfinite(float(text))
    except ValueError:
        return False


def _json_nodata(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _parse_nodata(value: Any) -> float | None:
    return None if value is None else float(value)


def media_type(href: str) -> str | None:
    """STAC media type of a GeoTIFF href, else None."""
    if href.lower().endswith((".tif", ".tiff")):
        return "image/tiff; application=geotiff"
    return None


def _pick_asset(rid: str, assets: dict[str, Any], key: str | None) -> tuple[str, dict]:
    """The (key, asset) holding an item's raster: ``key``, else the first data / GeoTIFF one."""
    if key is not None:
        if not isinstance(assets.get(key), dict):
            raise InputError(f"STAC item {rid}: no asset {key!r}")
        return key, assets[key]
    usable = [(k, a) for k, a in assets.items() if isinstance(a, dict)]
    for k, asset in usable:
        if "data" in (asset.get("roles") or []) or "geotiff" in str(asset.get("type") or ""):
            return k, asset
    if usable:
        return usable[0]
    raise InputError(f"STAC item {rid}: no assets")


def _resolve(rid: str, key: str, asset: dict[str, Any], base: str | None) -> str:
    """The asset's href, absolute: a relative one resolved against ``base``. A remote item
    (``base`` a URL) may only name remote files."""
    from urllib.parse import urljoin

    href = asset.get("href")
    if not isinstance(href, str) or not href.strip() or len(href) > 4096:
        raise InputError(f"STAC item {rid}: asset {key!r} has no href")
    remote_base = base is not None and "://" in base
    if "://" in href:
        if not href.lower().startswith(("http://", "https://", "s3://", "gs://")):
            raise InputError(f"STAC item {rid}: asset {key!r} href {href[:80]!r} has an "
                             "unsupported scheme")
        return href
    if remote_base:  # a path on the item's server, never a local file
        return urljoin(base, href)  # type: ignore[arg-type]
    if os.path.isabs(href):
        return os.path.normpath(href)
    folder = Path(base).parent if base else Path.cwd()
    return os.path.normpath(folder / href)


def mask_asset(rid: str, assets: dict[str, Any], base: str | None) -> tuple[str, str] | None:
    """An Item's cloud / shadow mask asset: ``(href, rule)``; None when it has none.

    The Sentinel-2 L2A scene classification (key ``scl`` in any case, rule ``"scl"``) wins;
    else the first asset, by key, with a role of :data:`MASK_ROLES` (rule ``"nonzero"``). The
    href is resolved as a band's (:func:`_resolve`: a remote item names only remote files).

    Args:
        rid: the item's id, for messages.
        assets: its assets (untrusted).
        base: where the item was read from.

    Raises:
        InputError: the chosen asset has no usable href.
    """
    found = [(str(k), a) for k, a in assets.items() if isinstance(a, dict)]
    scl = [(k, a) for k, a in found if k.lower() == SCL_KEY]
    if scl:
        return _resolve(rid, scl[0][0], scl[0][1], base), "scl"
    for key, asset in sorted(found, key=lambda ka: ka[0]):
        roles = asset.get("roles")
        if isinstance(roles, list) and MASK_ROLES & {r for r in roles if isinstance(r, str)}:
            return _resolve(rid, key, asset, base), "nonzero"
    return None


def _grid(props: dict[str, Any], asset: dict[str, Any]
          ) -> tuple[str | None, tuple[float, ...] | None, tuple[int, int] | None]:
    """(CRS, transform, shape) from an asset's ``proj:`` fields, else the item's."""

    def get(name: str) -> Any:
        return asset.get(name, props.get(name))

    crs = get("proj:code") or get("proj:wkt2")
    if crs is None and isinstance(get("proj:epsg"), int):
        crs = f"EPSG:{get('proj:epsg')}"
    transform, shp = get("proj:transform"), get("proj:shape")
    try:
        transform = tuple(float(v) for v in transform[:6]) if transform else None
        shp = (int(shp[0]), int(shp[1])) if shp else None
    except (TypeError, ValueError, IndexError):
        transform, shp = None, None
    return (str(crs) if crs is not None else None), transform, shp


def _band_of(key: str, asset: dict[str, Any]) -> Band | None:
    """The band a single-band asset holds (by its one ``eo:bands`` / ``bands`` entry, or by a
    key that is a band name); None for any other asset."""
    roles = asset.get("roles") if isinstance(asset.get("roles"), list) else []
    if set(roles) & NON_BAND_ROLES and "data" not in roles:
        return None
    entries = asset.get("eo:bands", asset.get("bands"))
    if isinstance(entries, list):
        if len(entries) != 1 or not isinstance(entries[0], dict):
            return None
        name, common = entries[0].get("name"), entries[0].get("common_name")
        if not isinstance(name, str) and not isinstance(common, str):
            return None
        return Band(str(name or common), common if isinstance(common, str) else None,
                    entries[0].get("description"))
    upper = key.upper()
    if upper in SENTINEL2_COMMON or re.fullmatch(r"B0?([1-9]|1[0-2])|B8A", upper):
        name = upper if upper in SENTINEL2_COMMON else f"B{int(upper[1:]):02d}"
        return Band(name, SENTINEL2_COMMON.get(name))
    if key.lower() in COMMON_NAMES:
        return Band(key, key.lower())
    return None


def _band_assets(rid: str, assets: dict[str, Any], props: dict[str, Any], base: str | None
                 ) -> list[tuple[Band, str, tuple[Any, Any, Any]]]:
    """The item's band assets on its finest grid: (band with its href, asset key, grid).

    Raises:
        InputError: band assets of the same resolution disagree in CRS, transform or shape.
    """
    found = []
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            continue
        band = _band_of(str(key), asset)
        if band is not None:
            band = replace(band, href=_resolve(rid, str(key), asset, base))
            found.append((band, str(key), _grid(props, asset)))
    if any(grid[1] is None for _, _, grid in found):
        return found  # grids unknown: checked when the assets are read
    finest = min((abs(grid[1][0]) for _, _, grid in found), default=0.0)
    found = [f for f in found if math.isclose(abs(f[2][1][0]), finest, rel_tol=1e-9)]
    for _, key, grid in found[1:]:
        if grid != found[0][2]:
            raise InputError(
                f"STAC item {rid}: band assets {found[0][1]!r} and {key!r} disagree in grid "
                f"(CRS, transform, shape {found[0][2]} vs {grid})")
    return found


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None
