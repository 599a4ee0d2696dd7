"""Catalogs queried out of core (issue 25, point 6): the GeoParquet file is read through its
bbox covering and row-group statistics, with the same answers as the catalog in memory, on the
sample catalogs (NAIP, OSCD) and on a generated one; older files and bad files."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from georefscale.catalog import Catalog, CatalogWarning, Record
from georefscale.catalog import core as catalog_core
from georefscale.catalog.store import ROW_GROUP_ROWS, hilbert_key
from georefscale.errors import InputError, NoCandidateError

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CATALOGS = [REPO / "catalogs" / "naip.parquet", REPO / "catalogs" / "oscd.parquet"]
NAIP_AOI = "-99.17,47.01,-99.14,47.03"


def _answer(cat: Catalog, aoi: object, **kwargs: object) -> object:
    """Everything a query returns, as plain values (or the error message)."""
    try:
        res = cat.query(aoi, **kwargs)
    except NoCandidateError as exc:
        return str(exc).split(": ", 1)[1]
    return ([c.to_dict() for c in res.candidates],
            [c.record.id for c in res.mosaic] if res.mosaic else None, res.stats)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[Path]:
    """The sample catalogs re-saved by this version (with covering columns)."""
    out = []
    for old in SAMPLE_CATALOGS:
        path = tmp_path_factory.mktemp("cat") / old.name
        Catalog.load(old).save(path, archive=data_dir)
        out.append(path)
    return out


def test_old_sample_catalogs_load_whole_and_rebuild_to_out_of_core(rebuilt: list[Path]) -> None:
    for old, new in zip(SAMPLE_CATALOGS, rebuilt, strict=True):
        assert not Catalog.load(old).out_of_core  # written before covering columns
        with pytest.raises(InputError, match=f"{old.name}: written without bbox covering.*"
                                             "rebuild"):
            Catalog.load(old, out_of_core=True)
        cat = Catalog.load(new)
        assert cat.out_of_core and len(cat) == len(Catalog.load(old))
        geo = json.loads(pq.read_schema(new).metadata[b"geo"])
        assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]


def test_large_old_file_warns_to_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_core, "REBUILD_HINT_RECORDS", 11)
    with pytest.warns(CatalogWarning, match="oscd.parquet: written without bbox covering"):
        Catalog.load(SAMPLE_CATALOGS[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Catalog.load(SAMPLE_CATALOGS[0])  # 10 records: below the hint


def test_sample_catalogs_same_answers_out_of_core(rebuilt: list[Path], oscd_dir: Path) -> None:
    naip_file, oscd_file = rebuilt
    for path in rebuilt:
        lazy, whole = Catalog.load(path), Catalog.load(path, out_of_core=False)
        assert lazy.out_of_core and not whole.out_of_core
        world = shapely.box(-179, -80, 179, 80)
        for aoi, kwargs in [
            (NAIP_AOI, {"before": "2020-08-31"}),
            (NAIP_AOI, {"at": "2015-01-01", "limit": 2}),
            (NAIP_AOI, {"before": "2020-08-31", "max_age_days": 800}),
            ("-99.20,47.01,-99.17,47.03", {"before": "2020-08-31"}),  # partly outside NAIP
            (world, {"sensor": "sentinel", "limit": 100, "at": "2017-01-01"}),
            (world, {"gsd": 10, "gsd_tolerance": 0.3, "limit": 100, "at": "2017-01-01"}),
            (world, {"band_count": 3, "at": "2017-01-01"}),
            ("10.0,10.0,10.1,10.1", {"before": "2020-08-31"}),
        ]:
            assert _answer(lazy, aoi, **kwargs) == _answer(whole, aoi, **kwargs), (path, aoi)
        assert lazy.out_of_core  # queries did not load it
    oscd, whole = Catalog.load(oscd_file), Catalog.load(oscd_file, out_of_core=False)
    for target in sorted(oscd_dir.glob("*.tif"))[::9]:  # 5 cities of 19: each is read
        got = oscd.references_for(target)
        want = whole.references_for(target)
        assert [c.to_dict() for c in got.candidates] == [c.to_dict() for c in want.candidates]
    seam = oscd.get("saclay_e_20170829").footprint.bounds[0]
    mosaic = oscd.query(shapely.box(seam - 0.02, 48.69, seam + 0.02, 48.71), before="2018-01-01")
    assert sorted(c.record.id for c in mosaic.mosaic) == ["saclay_e_20170829",
                                                          "saclay_w_20170829"]
    assert "paris_20161130" in oscd and "nowhere" not in oscd
    with pytest.raises(InputError, match="no record with id 'nowhere'"):
        oscd.get("nowhere")
    assert oscd.out_of_core


def _generated(n: int, seed: int) -> Catalog:
    """``n`` records: boxes of 0.05-2 degrees over the globe (some cut at the antimeridian),
    times over 2005-2025, random cloud cover."""
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-180, 178, n), rng.uniform(-70, 68, n)
    size = rng.uniform(0.05, 2.0, n)
    stamps = rng.uniform(1.1e9, 1.73e9, n)
    from datetime import datetime, timezone

    records = [Record(id=f"g{i:06d}", href=f"https://archive.example/{i}.tif",
                      datetime=datetime.fromtimestamp(stamps[i], timezone.utc),
                      footprint=shapely.box(lon[i], lat[i], min(lon[i] + size[i], 180.0),
                                            lat[i] + size[i]),
                      cloud_cover=float(rng.uniform(0, 100)), gsd=float(rng.choice([10, 30])))
               for i in range(n)]
    return Catalog.from_records(records)


def test_generated_catalog_same_ranking_reading_few_row_groups(tmp_path: Path) -> None:
    whole = _generated(12_000, seed=1)
    path = tmp_path / "generated.parquet"
    whole.save(path)
    groups = pq.ParquetFile(path).metadata.num_row_groups
    assert groups == -(-12_000 // ROW_GROUP_ROWS)
    lazy = Catalog.load(path)
    rng = np.random.default_rng(2)
    read = []
    for _ in range(40):
        x, y = rng.uniform(-179, 179), rng.uniform(-69, 69)
        aoi = f"{x},{y},{x + 0.5},{y + 0.3}"
        kwargs = {"before": f"{rng.integers(2006, 2025)}-06-01", "limit": 5}
        assert _answer(lazy, aoi, **kwargs) == _answer(whole, aoi, **kwargs)
        read.append(lazy._source.last_read["near"])
    assert np.median(read) <= 3 < groups  # Hilbert-ordered row groups are compact
    antimeridian = shapely.MultiPolygon([shapely.box(179.5, 10, 180, 20),
                                         shapely.box(-180, 10, -179.5, 20)])
    near = {"at": "2015-01-01", "limit": 50}  # a fixed time: "now" moves between queries
    assert _answer(lazy, antimeridian, **near) == _answer(whole, antimeridian, **near)
    world = shapely.box(-180, -90, 180, 90)
    few = {"at": "2015-01-01", "max_cloud": 1, "limit": 1000}
    assert _answer(lazy, world, **few) == _answer(whole, world, **few)
    assert lazy.out_of_core
    lazy.add([whole.get("g000007")])  # changes load it whole, then save as before
    assert not lazy.out_of_core and len(lazy) == 12_000


def test_hilbert_key_keeps_neighbours_close() -> None:
    step = 360 / 2**16
    xs = np.arange(64) * step * 16 - 180 + step / 2
    centres = np.array([[x, y, x, y] for y in xs[:64] / 2 for x in xs])
    keys = hilbert_key(centres)
    assert len(np.unique(keys)) == len(keys)  # one cell each
    order = centres[np.argsort(keys)]
    jumps = np.hypot(*np.diff(order[:, :2], axis=0).T)
    assert jumps.max() <= 16 * step * 1.01  # consecutive cells are adjacent


def test_truncated_and_malformed_files(rebuilt: list[Path], tmp_path: Path) -> None:
    data = rebuilt[1].read_bytes()
    cut = tmp_path / "truncated.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.parquet: not a catalog \\(not a Parquet"):
        Catalog.load(cut)
    table = pq.read_table(rebuilt[1])
    meta = dict(table.schema.metadata)
    geo = json.loads(meta[b"geo"])
    geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] = ["bbox", "west"]
    bad = tmp_path / "bad_covering.parquet"
    pq.write_table(table.replace_schema_metadata({**meta, b"geo": json.dumps(geo).encode()}),
                   bad)
    with pytest.raises(InputError, match="bad_covering.parquet: .*covering column bbox.west"):
        Catalog.load(bad)
    ids_only = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": ["a"]}), ids_only)
    with pytest.raises(InputError, match="ids.parquet: not a catalog \\(missing columns"):
        Catalog.load(ids_only)
    shutil.copy(rebuilt[1], tmp_path / "ok.parquet")
    assert Catalog.load(tmp_path / "ok.parquet").out_of_core
