"""Query: candidates for an AOI (any CRS) and a time, ranked with the ranking explained.

Coverage (``overlap``) is the fraction of the AOI area covered by a record footprint, measured in
EPSG:4326 degrees (exact enough for scene-sized AOIs). The score is a weighted sum, lower is better:

    score = time * gap_days / 365.25 + coverage * (1 - overlap)
          + resolution * |log2(gsd / target_gsd)| + cloud * cloud_cover / 100
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from shapely.geometry import shape

from georefscale.catalog.records import Record, densified_footprint, parse_datetime
from georefscale.errors import InputError

#: Overlap at which a record (or a mosaic) counts as covering the AOI.
FULL_COVER = 0.999
#: Default weights of the score terms (per year of time gap, per unit of uncovered fraction,
#: per octave of resolution mismatch, per 100 % cloud).
DEFAULT_WEIGHTS = {"time": 1.0, "coverage": 10.0, "resolution": 1.0, "cloud": 2.0}
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Candidate:
    """A ranked record: ``overlap`` = covered fraction of the AOI, ``ranking`` = score terms
    (``time_gap_days``, ``overlap``, ``gsd_ratio``, ``cloud_cover``, weighted ``terms``,
    ``score``)."""

    record: Record
    overlap: float
    score: float
    ranking: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: id, href, datetime (ISO), overlap, score, ranking, checksum."""
        r = self.record
        return {"id": r.id, "href": r.href, "datetime": r.datetime.isoformat(),
                "overlap": round(self.overlap, 6), "score": round(self.score, 6),
                "ranking": self.ranking, "checksum": r.checksum, "crs": r.crs,
                "gsd": r.gsd, "platform": r.platform}


@dataclass(frozen=True)
class QueryResult:
    """Ranked ``candidates`` (best first); ``mosaic``: a covering set when no single candidate
    covers the AOI (None when one does or when even all together do not)."""

    aoi: shapely.Geometry
    candidates: list[Candidate]
    mosaic: list[Candidate] | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def references(self) -> list[Record]:
        """Records to use: the best candidate if it covers the AOI, else the mosaic, else the
        best (partial) candidate."""
        if self.best is not None and self.best.overlap >= FULL_COVER:
            return [self.best.record]
        if self.mosaic:
            return [c.record for c in self.mosaic]
        return [self.best.record] if self.best is not None else []


@dataclass(frozen=True)
class TimeFilter:
    """Time constraint: ``before`` (strictly earlier) or ``at`` (nearest either side), and an
    optional maximum gap ``max_age_days`` (counted from ``before``/``at``, else from now)."""

    before: datetime | None = None
    at: datetime | None = None
    max_age_days: float | None = None

    @classmethod
    def make(cls, before: Any = None, at: Any = None,
             max_age_days: float | None = None) -> TimeFilter:
        if before is not None and at is not None:
            raise InputError("give either a 'before' or an 'at' time, not both")
        if max_age_days is not None and not (max_age_days >= 0 and math.isfinite(max_age_days)):
            raise InputError(f"max age {max_age_days} days must be a finite number >= 0")
        return cls(parse_datetime(before) if before is not None else None,
                   parse_datetime(at) if at is not None else None, max_age_days)

    @property
    def anchor(self) -> datetime:
        return self.before or self.at or datetime.now(timezone.utc)

    def describe(self) -> str:
        parts = []
        if self.before:
            parts.append(f"before {self.before.date().isoformat()}")
        if self.at:
            parts.append(f"nearest to {self.at.date().isoformat()}")
        if self.max_age_days is not None:
            parts.append(f"within {self.max_age_days:g} days")
        return " ".join(parts) or "at any time"


def parse_aoi(aoi: Any, crs: Any = None) -> shapely.Geometry:
    """An AOI as a valid polygonal shapely geometry in EPSG:4326 (densified before reprojection).

    ``aoi``: shapely geometry, GeoJSON dict (geometry / Feature / FeatureCollection), a string
    holding WKT, GeoJSON or ``minx,miny,maxx,maxy``, a path to a GeoJSON file, or 4 numbers
    (bbox). ``crs``: anything ``rasterio.crs.CRS.from_user_input`` takes; default EPSG:4326.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    geom = _to_geometry(aoi)
    try:
        src_crs = CRS.from_user_input(crs if crs is not None else "EPSG:4326")
    except CRSError:
        raise InputError(f"unknown AOI CRS {crs!r}") from None
    if geom.is_empty:
        raise InputError("AOI geometry is empty")
    if not geom.is_valid:
        raise InputError(f"AOI geometry is invalid ({shapely.is_valid_reason(geom)})")
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.area <= 0:
        raise InputError(f"AOI must be a polygon with non-zero area, got a {geom.geom_type}")
    if src_crs.is_geographic:
        west, south, east, north = geom.bounds
        if west < -180 or east > 180 or south < -90 or north > 90:
            raise InputError(f"AOI bounds {geom.bounds} are outside longitude/latitude range; "
                             "give its CRS (--aoi-crs)")
    try:
        out = densified_footprint(geom, src_crs)
    except Exception as exc:  # rasterio/GDAL transform failures carry no common base class
        raise InputError(f"AOI cannot be reprojected from {src_crs} to EPSG:4326 ({exc})") from None
    if out.is_empty or out.area <= 0 or not math.isfinite(out.area):
        raise InputError(f"AOI in {src_crs} has no area in EPSG:4326")
    return out


def _to_geometry(aoi: Any) -> shapely.Geometry:
    if isinstance(aoi, shapely.Geometry):
        return aoi
    if isinstance(aoi, dict):
        return _from_geojson(aoi)
    if isinstance(aoi, Path):
        return _from_file(aoi)
    if isinstance(aoi, str):
        text = aoi.strip()
        if text.startswith("{"):
            try:
                return _from_geojson(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InputError(f"AOI GeoJSON does not parse ({exc})") from None
        parts = text.replace(" ", "").split(",")
        if len(parts) == 4:
            try:
                return shapely.box(*(float(p) for p in parts))
            except ValueError:
                pass
        if re.match(r"[A-Za-z]+\s*(\(|EMPTY)", text, re.IGNORECASE):
            try:
                return shapely.from_wkt(text)
            except shapely.errors.GEOSException as exc:
                raise InputError(f"AOI WKT does not parse ({exc})") from None
        if Path(text).is_file():
            return _from_file(Path(text))
        raise InputError(f"AOI {text[:60]!r} is not WKT, GeoJSON, a bbox 'minx,miny,maxx,maxy' "
                         "or a GeoJSON file")
    if isinstance(aoi, Sequence) and len(aoi) == 4:
        try:
            return shapely.box(*(float(v) for v in aoi))
        except (TypeError, ValueError):
            pass
    raise InputError(f"AOI of type {type(aoi).__name__} is not a geometry, GeoJSON, WKT or bbox")


def _from_file(path: Path) -> shapely.Geometry:
    try:
        return _from_geojson(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a GeoJSON file ({exc})") from None


def _from_geojson(doc: dict[str, Any]) -> shapely.Geometry:
    try:
        if doc.get("type") == "FeatureCollection":
            return shapely.union_all([shape(f["geometry"]) for f in doc["features"]])
        if doc.get("type") == "Feature":
            return shape(doc["geometry"])
        return shape(doc)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise InputError(f"AOI GeoJSON is not a geometry ({exc})") from None


class QueryIndex:
    """Spatial index (shapely STRtree over EPSG:4326 footprints) plus the per-record arrays the
    filters and the ranking use. Built once per loaded catalog."""

    def __init__(self, footprints: np.ndarray, table: pa.Table) -> None:
        self.footprints = footprints
        self.tree = shapely.STRtree(footprints)
        self.table = table
        self.times_us = table.column("datetime").combine_chunks().cast(pa.int64()).to_numpy()
        self.gsd = table.column("gsd").to_numpy().astype("float64")
        self.cloud = table.column("cloud_cover").to_numpy().astype("float64")
        self.band_count = pc.list_value_length(table.column("bands").combine_chunks()).fill_null(
            0).to_numpy(zero_copy_only=False)

    def strings(self, column: str, rows: np.ndarray) -> np.ndarray:
        """Values of a string column for ``rows`` (object array, None where missing)."""
        return np.array(self.table.column(column).take(rows).to_pylist(), dtype=object)

    def search(self, aoi: shapely.Geometry, when: TimeFilter, *, platform: str | None = None,
               band_count: int | None = None,
               gsd: float | None = None, gsd_tolerance: float | None = None,
               max_cloud: float | None = None, exclude_ids: Sequence[str] = (),
               exclude_checksums: Sequence[str] = (), exclude_hrefs: Sequence[str] = (),
               weights: dict[str, float] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any], dict[str, int]]:
        """Rows intersecting ``aoi`` (EPSG:4326) that pass every filter, best first:
        (rows, overlap, score, per-row ranking arrays, counts)."""
        w = {**DEFAULT_WEIGHTS, **(weights or {})}
        rows = self.tree.query(aoi, predicate="intersects")
        stats = {"intersecting": int(rows.size)}
        anchor = int(when.anchor.timestamp() * 1_000_000)
        t = self.times_us[rows]
        keep = np.ones(rows.size, dtype=bool)
        if when.before is not None:
            keep &= t < anchor
        gap_days = np.abs(anchor - t) / _US_PER_DAY
        if when.max_age_days is not None:
            keep &= gap_days <= when.max_age_days
        if platform:
            needle = platform.lower()
            keep &= np.array([p is not None and needle in p.lower()
                              for p in self.strings("platform", rows)], dtype=bool)
        if band_count is not None:
            keep &= self.band_count[rows] == band_count
        if gsd is not None and gsd_tolerance is not None:
            keep &= np.abs(self.gsd[rows] / gsd - 1.0) <= gsd_tolerance
        if max_cloud is not None:
            keep &= ~(self.cloud[rows] > max_cloud)
        for column, excluded in (("id", exclude_ids), ("checksum", exclude_checksums),
                                 ("href", exclude_hrefs)):
            if excluded:
                keep &= ~np.isin(self.strings(column, rows), list(excluded))
        rows, gap_days = rows[keep], gap_days[keep]
        stats["passing_filters"] = int(rows.size)
        overlap = shapely.area(shapely.intersection(self.footprints[rows], aoi)) / aoi.area
        overlap = np.clip(overlap, 0.0, 1.0)
        ratio = self.gsd[rows] / gsd if gsd else np.full(rows.size, np.nan)
        res_term = np.where(np.isfinite(ratio) & (ratio > 0), np.abs(np.log2(ratio)), 0.0)
        cloud = self.cloud[rows]
        terms = {
            "time": w["time"] * gap_days / 365.25,
            "coverage": w["coverage"] * (1.0 - overlap),
            "resolution": w["resolution"] * res_term,
            "cloud": w["cloud"] * np.nan_to_num(cloud, nan=0.0) / 100.0,
        }
        score = sum(terms.values())
        order = np.lexsort((self.strings("id", rows), gap_days, score))
        rows, overlap, score = rows[order], overlap[order], score[order]
        raw = {"time_gap_days": gap_days[order], "gsd_ratio": ratio[order], "cloud_cover":
               cloud[order], **{f"term_{k}": v[order] for k, v in terms.items()}}
        return rows, overlap, score, raw, stats


def explain(raw: dict[str, np.ndarray], i: int, overlap: float, score: float,
            weights: dict[str, float] | None) -> dict[str, Any]:
    """The ranking of one candidate as plain numbers (None where unknown)."""

    def num(value: float) -> float | None:
        return None if not math.isfinite(value) else round(float(value), 6)

    return {
        "time_gap_days": num(raw["time_gap_days"][i]),
        "overlap": round(float(overlap), 6),
        "gsd_ratio": num(raw["gsd_ratio"][i]),
        "cloud_cover": num(raw["cloud_cover"][i]),
        "terms": {k.removeprefix("term_"): round(float(v[i]), 6)
                  for k, v in raw.items() if k.startswith("term_")},
        "weights": {**DEFAULT_WEIGHTS, **(weights or {})},
        "score": round(float(score), 6),
    }


def covering_set(aoi: shapely.Geometry, footprints: Sequence[shapely.Geometry],
                 target: float = FULL_COVER) -> list[int] | None:
    """Indices into ``footprints`` (given best first) of a small set whose union covers at least
    ``target`` of ``aoi``: greedy by largest newly covered area (earlier wins ties), then members
    whose removal keeps the cover are dropped. None when all together do not reach ``target``."""
    remaining = aoi
    chosen: list[int] = []
    pool = list(range(len(footprints)))
    need = (1.0 - target) * aoi.area
    while remaining.area > need and pool:
        gains = shapely.area(shapely.intersection(
            np.array([footprints[i] for i in pool], dtype=object), remaining))
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            break
        chosen.append(pool.pop(best))
        remaining = remaining.difference(footprints[chosen[-1]])
    if remaining.area > need:
        return None
    for i in list(reversed(chosen)):
        rest = [footprints[j] for j in chosen if j != i]
        if rest and aoi.difference(shapely.union_all(rest)).area <= need:
            chosen.remove(i)
    return chosen
