"""Catalog records, ingest and stac-geoparquet storage on the real sample archive."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from pyproj import Transformer

from georefscale.catalog import (
    Catalog,
    IngestWarning,
    Record,
    file_checksum,
    ingest,
    parse_datetime,
    record_from_raster,
)
from georefscale.errors import InputError

NAIP_2019 = "m_4709963_se_14_1_20190904.tif"


@pytest.fixture(scope="module")
def naip_catalog(naip_dir: Path) -> Catalog:
    return Catalog.from_records(ingest([naip_dir], platform="NAIP").records)


def test_naip_record_grid_date_checksum(naip_dir: Path) -> None:
    path = naip_dir / NAIP_2019
    rec = record_from_raster(path)
    with rasterio.open(path) as ds:
        assert rec.crs == "EPSG:26914"
        assert rec.transform == tuple(ds.transform)[:6]
        assert rec.shape == (ds.height, ds.width)
        left, bottom, right, top = ds.bounds
        cx, cy = (left + right) / 2, (bottom + top) / 2
        edge_points = [(left, top), (right, bottom), (cx, top), (right, cy), (cx, bottom),
                       (left, cy), (left + 0.3 * (right - left), top)]
    assert rec.id == "m_4709963_se_14_1_20190904"
    assert rec.datetime == datetime(2019, 9, 4, tzinfo=timezone.utc)
    assert rec.datetime_source == "filename"
    assert rec.dtype == "uint8" and rec.nodata == 0 and rec.band_count == 4
    assert rec.gsd == pytest.approx(5.0)
    assert rec.footprint_kind == "valid"
    assert rec.checksum == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec.checksum == file_checksum(path)
    # Corners and edge points reprojected exactly lie on the footprint's boundary (< ~10 cm):
    # edges follow the curved image of the UTM rectangle, not a 4-vertex lon/lat box.
    to_wgs84 = Transformer.from_crs(26914, 4326, always_xy=True)
    for x, y in edge_points:
        lon, lat = to_wgs84.transform(x, y)
        assert rec.footprint.boundary.distance(shapely.Point(lon, lat)) < 1.5e-6
    assert len(shapely.get_coordinates(rec.footprint)) > 5


def test_oscd_record_date_tag_and_bands(oscd_dir: Path) -> None:
    rec = record_from_raster(oscd_dir / "paris_20161130.tif")
    assert rec.datetime == datetime(2016, 11, 30, tzinfo=timezone.utc)
    assert rec.datetime_source == "tag:ACQUISITION_DATE"
    assert [(b.name, b.common_name) for b in rec.bands] == [
        ("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir")]
    assert rec.platform == "Sentinel-2A MSI L1C"
    assert rec.crs == "EPSG:4326" and rec.footprint_kind == "bounds"
    assert 8 < rec.gsd < 12


def test_valid_footprint_follows_nodata(naip_dir: Path, tmp_path: Path) -> None:
    with rasterio.open(naip_dir / NAIP_2019) as src:
        data = src.read()
        profile = src.profile
    data[:, :, : data.shape[2] // 2] = 0  # west half becomes nodata
    path = tmp_path / "half_20190904.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    full = record_from_raster(naip_dir / NAIP_2019).footprint
    half = record_from_raster(path)
    assert half.footprint.area / full.area == pytest.approx(0.5, abs=0.02)
    assert record_from_raster(path, footprint="bounds").footprint.area == pytest.approx(
        full.area, rel=1e-6)


def test_item_round_trip_through_pystac(oscd_dir: Path) -> None:
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    rec = record_from_raster(oscd_dir / "rio_20160424.tif", collection="oscd")
    item = pystac.Item.from_dict(rec.to_item().to_dict())
    assert ProjectionExtension.ext(item).code == "EPSG:4326"
    assert ProjectionExtension.ext(item).shape == list(rec.shape)
    assert item.assets["data"].extra_fields["file:checksum"] == rec.checksum
    back = Record.from_item(item)
    assert back == rec


def test_ingest_skips_bad_files_with_named_warnings(naip_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "garbage_20200101.tif").write_bytes(b"not a tiff")
    os.symlink(naip_dir / NAIP_2019, tmp_path / NAIP_2019)
    with rasterio.open(naip_dir / NAIP_2019) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(tmp_path / "nodate.tif", "w", **profile) as dst:
        dst.write(data)
    with pytest.warns(IngestWarning) as caught:
        result = ingest([tmp_path])
    assert [r.id for r in result.records] == ["m_4709963_se_14_1_20190904"]
    messages = " ".join(str(w.message) for w in caught)
    assert "garbage_20200101.tif" in messages and "nodate.tif" in messages
    assert {Path(s).name for s, _ in result.skipped} == {"garbage_20200101.tif", "nodate.tif"}


def test_ingest_missing_path_and_bad_pattern(naip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ingest([tmp_path / "nope"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        result = ingest([naip_dir / NAIP_2019], date_pattern=r"_(\d{4})\.tif$")
    assert result.records == [] and "date-pattern" in result.skipped[0][1]


def test_reingest_updates_not_duplicates(naip_dir: Path) -> None:
    cat = Catalog()
    first = cat.ingest([naip_dir])
    second = cat.ingest([naip_dir / NAIP_2019], platform="NAIP")
    assert (first.added, second.added, second.updated) == (10, 0, 1)
    assert len(cat) == 10
    assert cat.get("m_4709963_se_14_1_20190904").platform == "NAIP"


def test_save_load_geopandas_duckdb(naip_catalog: Catalog, tmp_path: Path) -> None:
    import duckdb
    import geopandas

    path = tmp_path / "naip.parquet"
    naip_catalog.save(path, archive=naip_catalog.get(NAIP_2019[:-4]).href.rsplit("/", 2)[0])
    back = Catalog.load(path)  # rows are stored in Hilbert order of their bbox centres
    assert sorted(back, key=lambda r: r.id) == sorted(naip_catalog, key=lambda r: r.id)
    gdf = geopandas.read_parquet(path)
    assert len(gdf) == 10 and gdf.crs.to_epsg() == 4326
    assert {"id", "datetime", "proj:code", "proj:transform", "eo:bands", "assets"} <= set(gdf)
    newest = duckdb.sql(f"SELECT id FROM read_parquet('{path}') WHERE datetime < "
                        "TIMESTAMPTZ '2020-08-31' ORDER BY datetime DESC LIMIT 1").fetchall()
    assert newest == [("m_4709963_se_14_1_20190904",)]


def test_hrefs_relative_and_archive_override(naip_catalog: Catalog, naip_dir: Path,
                                             tmp_path: Path) -> None:
    path = tmp_path / "cat" / "naip.parquet"
    path.parent.mkdir()
    naip_catalog.save(path, archive=naip_dir.parent)
    hrefs = pq.read_table(path).column("assets").to_pylist()
    assert all(a["data"]["href"].startswith("naip/") for a in hrefs)
    meta = json.loads(pq.read_schema(path).metadata[b"georefscale:catalog"])
    assert not os.path.isabs(meta["archive"])
    assert Catalog.load(path).get(NAIP_2019[:-4]).href == str(naip_dir / NAIP_2019)
    moved = tmp_path / "moved"
    moved.mkdir()
    os.symlink(naip_dir, moved / "naip")
    assert Catalog.load(path, archive=moved).get(NAIP_2019[:-4]).href == str(
        moved / "naip" / NAIP_2019)
    link = tmp_path / "link"  # an archive root reached through a symbolic link
    os.symlink(naip_dir.parent, link)
    naip_catalog.save(path, archive=link)
    hrefs = pq.read_table(path).column("assets").to_pylist()
    assert all(a["data"]["href"].startswith("naip/") for a in hrefs)
    assert Catalog.load(path).get(NAIP_2019[:-4]).href == str(link / "naip" / NAIP_2019)


def test_not_a_catalog(tmp_path: Path, naip_dir: Path) -> None:
    import geopandas

    with pytest.raises(InputError, match="not a catalog"):
        Catalog.load(naip_dir / NAIP_2019)
    other = tmp_path / "other.parquet"
    geopandas.GeoDataFrame({"name": ["x"]}, geometry=[shapely.box(0, 0, 1, 1)],
                           crs=4326).to_parquet(other)
    with pytest.raises(InputError, match="missing columns"):
        Catalog.load(other)
    with pytest.raises(InputError, match="does not exist"):
        Catalog.load(tmp_path / "absent.parquet")


def test_item_collection_export_reingests(naip_catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "items.json"
    naip_catalog.export_items(out)
    doc = json.loads(out.read_text())
    assert len(doc["features"]) == 10
    assert not os.path.isabs(doc["features"][0]["assets"]["data"]["href"])
    again = ingest([out]).records
    assert sorted(again, key=lambda r: r.id) == sorted(naip_catalog, key=lambda r: r.id)


def test_item_collection_export_through_symlinked_folder(naip_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / NAIP_2019).write_bytes((naip_dir / NAIP_2019).read_bytes())
    link = tmp_path / "link"  # the export's folder reached through a symbolic link
    os.symlink(real, link)
    cat = Catalog()
    cat.ingest([real])
    cat.export_items(link / "items.json")
    doc = json.loads((real / "items.json").read_text())
    assert doc["features"][0]["assets"]["data"]["href"] == NAIP_2019
    assert [r.href for r in ingest([link / "items.json"]).records] == [
        str((real / NAIP_2019).resolve())]


@pytest.mark.parametrize(("text", "expected"), [
    ("2020-08-31", datetime(2020, 8, 31, tzinfo=timezone.utc)),
    ("20200831", datetime(2020, 8, 31, tzinfo=timezone.utc)),
    ("2020:08:31 10:20:30", datetime(2020, 8, 31, 10, 20, 30, tzinfo=timezone.utc)),
    ("2020-08-31T12:00:00+02:00", datetime(2020, 8, 31, 10, tzinfo=timezone.utc)),
    ("2020-08-31T10:00:00Z", datetime(2020, 8, 31, 10, tzinfo=timezone.utc)),
])
def test_parse_datetime(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize("text", ["2020-13-45", "yesterday", "31/08/2020", ""])
def test_parse_datetime_rejects(text: str) -> None:
    with pytest.raises(InputError, match="does not parse"):
        parse_datetime(text)


def test_footprints_are_valid_polygons(naip_catalog: Catalog) -> None:
    geoms = np.array([r.footprint for r in naip_catalog], dtype=object)
    assert shapely.is_valid(geoms).all()
    assert set(shapely.get_type_id(geoms)) == {3}
