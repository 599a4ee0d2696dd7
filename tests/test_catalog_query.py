"""Catalog queries on the real NAIP series and OSCD cities (the issue's "done when")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from georefscale.catalog import Catalog, ingest, parse_aoi
from georefscale.errors import InputError, NoCandidateError

# An AOI well inside the NAIP quarter-quad, in its UTM zone 14N (EPSG:26914) metres.
NAIP_AOI_UTM = shapely.box(487000, 5206500, 489000, 5208500)


def _to(crs: int, geom: shapely.Geometry) -> shapely.Geometry:
    """``geom`` (EPSG:26914, densified) reprojected to ``crs``."""
    proj = Transformer.from_crs(26914, crs, always_xy=True)
    return shapely.transform(shapely.segmentize(geom, 100.0),
                             lambda xy: np.column_stack(proj.transform(xy[:, 0], xy[:, 1])))


@pytest.fixture(scope="module")
def catalog(naip_dir: Path, oscd_dir: Path) -> Catalog:
    return Catalog.from_records(ingest([naip_dir, oscd_dir]).records)


def test_naip_before_ranks_2019_first(catalog: Catalog) -> None:
    result = catalog.query(_to(4326, NAIP_AOI_UTM), before="2020-08-31")
    ids = [c.record.id for c in result.candidates]
    assert ids[0] == "m_4709963_se_14_1_20190904"
    assert "m_4709963_se_14_1_20200831" not in ids  # strictly before
    assert len(ids) == 9
    best = result.best
    assert best.overlap == pytest.approx(1.0)
    assert best.ranking["time_gap_days"] == 362
    assert best.ranking["score"] == pytest.approx(sum(best.ranking["terms"].values()))
    gaps = [c.ranking["time_gap_days"] for c in result.candidates]
    assert gaps == sorted(gaps)
    assert result.references == [best.record]


def test_same_answer_in_web_mercator_and_utm(catalog: Catalog) -> None:
    base = [c.record.id for c in catalog.query(_to(4326, NAIP_AOI_UTM),
                                               before="2020-08-31").candidates]
    mercator = catalog.query(_to(3857, NAIP_AOI_UTM).wkt, aoi_crs="EPSG:3857",
                             before="2020-08-31")
    utm = catalog.query(NAIP_AOI_UTM.bounds, aoi_crs=26914, before="2020-08-31")
    assert [c.record.id for c in mercator.candidates] == base
    assert [c.record.id for c in utm.candidates] == base


def test_each_oscd_city_finds_its_other_date(catalog: Catalog, oscd_dir: Path) -> None:
    files = sorted(oscd_dir.glob("*.tif"))
    cities: dict[str, list[Path]] = {}
    for f in files:
        cities.setdefault(f.stem.rsplit("_", 1)[0], []).append(f)
    assert len(cities) == 19
    for city, (first, second) in cities.items():
        for target, other in ((first, second), (second, first)):
            best = catalog.references_for(target).best
            assert best is not None and best.record.id == other.stem, city
            assert best.overlap > 0.95, city


def test_references_for_before_and_self_exclusion(catalog: Catalog, naip_dir: Path) -> None:
    target = naip_dir / "m_4709963_se_14_1_20200831.tif"
    result = catalog.references_for(target, time="before")
    assert result.best.record.id == "m_4709963_se_14_1_20190904"
    oldest = catalog.get("m_4709963_se_14_1_20090818")
    nearest = catalog.references_for(oldest)
    assert nearest.best.record.id == "m_4709963_se_14_1_20100629"
    with pytest.raises(NoCandidateError):
        catalog.references_for(oldest, time="before")


def test_aoi_elsewhere_has_no_candidate(catalog: Catalog) -> None:
    with pytest.raises(NoCandidateError, match="no reference for AOI"):
        catalog.query("10.0,10.0,10.1,10.1", before="2020-08-31")


def test_time_windows(catalog: Catalog) -> None:
    aoi = _to(4326, NAIP_AOI_UTM)
    recent = catalog.query(aoi, before="2020-08-31", max_age_days=800)
    assert [c.record.id[-8:] for c in recent.candidates] == ["20190904", "20180716"]
    near = catalog.query(aoi, at="2015-01-01", limit=2)
    assert [c.record.id[-8:] for c in near.candidates] == ["20140720", "20150926"]
    with pytest.raises(InputError, match="not both"):
        catalog.query(aoi, before="2020-01-01", at="2019-01-01")


def test_partial_overlap_and_min_overlap(catalog: Catalog) -> None:
    west, south, east, north = NAIP_AOI_UTM.bounds
    straddling = shapely.box(485899 - 1000, south, 485899 + 1000, north)  # half outside
    result = catalog.query(_to(4326, straddling), before="2020-08-31", min_overlap=0.3)
    assert result.best.overlap == pytest.approx(0.5, abs=0.01)
    assert result.mosaic is None  # nothing covers the western half
    with pytest.raises(NoCandidateError, match="none covers >= 60%"):
        catalog.query(_to(4326, straddling), before="2020-08-31", min_overlap=0.6)


def test_mosaic_across_saclay_tiles(catalog: Catalog) -> None:
    east = catalog.get("saclay_e_20170829").footprint
    seam = east.bounds[0]
    aoi = shapely.box(seam - 0.02, 48.69, seam + 0.02, 48.71)
    result = catalog.query(aoi, before="2018-01-01")
    assert all(c.overlap < 0.6 for c in result.candidates)
    assert sorted(c.record.id for c in result.mosaic) == ["saclay_e_20170829",
                                                          "saclay_w_20170829"]
    assert {r.id for r in result.references} == {"saclay_e_20170829", "saclay_w_20170829"}


def test_filters(catalog: Catalog) -> None:
    world = shapely.box(-179, -80, 179, 80)
    sentinel = catalog.query(world, sensor="sentinel", limit=100)
    assert len(sentinel.candidates) == 38
    assert all(c.record.platform.startswith("Sentinel-2") for c in sentinel.candidates)
    coarse = catalog.query(world, gsd=10, gsd_tolerance=0.3, limit=100)
    assert all(c.record.gsd > 7 for c in coarse.candidates)
    assert len(catalog.query(world, band_count=4, limit=100).candidates) == 48
    with pytest.raises(NoCandidateError):
        catalog.query(world, band_count=3)


@pytest.mark.parametrize(("aoi", "crs", "message"), [
    ("POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))", None, "invalid"),
    ("POLYGON EMPTY", None, "empty"),
    ("POINT (1 1)", None, "polygon"),
    ("0,0,1,1", "EPSG:999999", "unknown AOI CRS"),
    ("487000,5206500,489000,5208500", None, "outside longitude/latitude"),
    ("not an aoi", None, "is not WKT"),
])
def test_bad_aoi(aoi: str, crs: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_aoi(aoi, crs)


def test_index_built_once_and_rebuilt_after_add(catalog: Catalog, naip_dir: Path) -> None:
    index = catalog.index
    catalog.query(_to(4326, NAIP_AOI_UTM))
    assert catalog.index is index
    copy = Catalog.from_records(list(catalog))
    first = copy.index
    copy.add([copy.get("paris_20161130")])
    assert copy.index is not first and len(copy) == 48
