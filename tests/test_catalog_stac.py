"""`catalog build` from STAC (issue 25, point 2): Items and ItemCollections whose bands are
separate single-band assets, and static catalogs served over HTTP, made from the sample
Sentinel-2 cities; the records keep remote hrefs and are picked as references; bad items are
skipped with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale.catalog import Catalog, IngestWarning, ingest
from georefscale.cli import main
from georefscale.sample_stac import BANDS, serve, write_catalog
from georefscale.stac import item_raster

MODEL_BANDS = ["B02 blue", "B03 green", "B04 red", "B08 nir"]
CITIES = ["rio_20160424", "rio_20171011", "pisa_20150704"]


@pytest.fixture(scope="module")
def stac_root(oscd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static catalog (catalog.json -> collection.json -> items/<id>.json) and the same
    items as an ItemCollection (search.json, what ``stac-client search --save`` writes); pisa's
    bands are named only by their asset keys."""
    root = tmp_path_factory.mktemp("stac")
    write_catalog([oscd_dir / f"{c}.tif" for c in CITIES], root, key_named=["pisa_20150704"])
    return root


def _check_bands(cat: Catalog, prefix: str) -> None:
    for city in CITIES:
        rec = cat.get(city)
        if city.startswith("pisa"):  # named by asset keys blue, green, red, B08
            assert [(b.name, b.common_name) for b in rec.bands] == [
                ("blue", "blue"), ("green", "green"), ("red", "red"), ("B08", "nir")]
        else:
            assert [(b.name, b.common_name) for b in rec.bands] == BANDS, city  # no 20 m B05
        files = dict((common, name) for name, common in BANDS)
        assert all(b.href.startswith(prefix)
                   and b.href.endswith(f"{city}_{files[b.common_name]}.tif") for b in rec.bands)
        assert rec.href == rec.bands[0].href and rec.crs == "EPSG:4326"


def test_item_collection_builds_records_picked_as_references(stac_root: Path, oscd_dir: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "stac.parquet"
    res = CliRunner().invoke(main, ["catalog", "build", str(stac_root / "search.json"),
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 records (3 added" in res.output
    cat = Catalog.load(out)
    _check_bands(cat, str(stac_root / "items"))
    found = cat.references_for(oscd_dir / "rio_20171011.tif", time="before", band_count=4)
    assert found.best.record.id == "rio_20160424" and found.best.overlap > 0.99


def test_static_catalog_over_http_keeps_remote_hrefs(stac_root: Path, oscd_dir: Path,
                                                     tmp_path: Path) -> None:
    server, url = serve(stac_root, ranges=True)
    try:
        out = tmp_path / "remote.parquet"
        res = CliRunner().invoke(main, ["catalog", "build", f"{url}/catalog.json", "-o",
                                        str(out)])
        assert res.exit_code == 0, res.output
        cat = Catalog.load(out)
        _check_bands(cat, f"{url}/items/")
        rec = cat.references_for(oscd_dir / "rio_20171011.tif", time="before",
                                 band_count=4).best.record
        assert rec.id == "rio_20160424"
        vrt = item_raster(rec.to_item().to_dict(), MODEL_BANDS, tmp_path / "ref.vrt")
        with rasterio.open(vrt) as got, rasterio.open(oscd_dir / "rio_20160424.tif") as want:
            assert np.array_equal(got.read(), want.read())
            assert got.transform == want.transform
    finally:
        server.shutdown()


def test_bad_items_are_skipped_with_a_reason(stac_root: Path, tmp_path: Path) -> None:
    good = json.loads((stac_root / "items" / "rio_20160424.json").read_text())

    def variant(name: str, change) -> dict:
        item = json.loads(json.dumps(good))
        item["id"] = name
        change(item)
        for asset in item["assets"].values():
            asset["href"] = str(stac_root / "items" / asset["href"])
        return item

    def no_bands(item: dict) -> None:
        item["assets"] = {f"data{i}": {k: v for k, v in a.items() if k != "eo:bands"}
                          for i, a in enumerate(item["assets"].values())}

    def shifted(item: dict) -> None:
        item["assets"]["nir"]["proj:transform"][2] += 0.001

    def remote_to_local(item: dict) -> None:
        pass

    bad = [variant("nobands", no_bands), variant("shifted", shifted),
           variant("bad\nid", remote_to_local),
           {"type": "Feature", "id": "nogeometry", "properties": {"datetime": "2016-04-24"},
            "assets": {}}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": bad}))
    with pytest.warns(IngestWarning):
        result = ingest([path])
    reasons = dict(result.skipped)
    assert result.records == []
    assert "no bands recorded" in reasons[f"{path}#nobands"]
    assert "band assets 'blue' and 'nir' disagree in grid" in reasons[f"{path}#shifted"]
    assert "printable characters" in reasons[f"{path}#bad\nid"]
    assert "no usable geometry" in reasons[f"{path}#nogeometry"]
    out = tmp_path / "bad.parquet"
    res = CliRunner().invoke(main, ["catalog", "build", str(path), "-o", str(out)])
    assert res.exit_code != 0 and "not written" in res.output and not out.exists()


def test_remote_catalog_cannot_reach_local_files(stac_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    item = json.loads((stac_root / "items" / "rio_20160424.json").read_text())
    item["assets"]["blue"]["href"] = "file:///etc/passwd"
    (root / "item.json").write_text(json.dumps(item))
    (root / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "id": "c", "stac_version": "1.0.0", "description": "d",
        "links": [{"rel": "item", "href": "item.json"},
                  {"rel": "child", "href": str(stac_root / "catalog.json")},
                  {"rel": "child", "href": "file:///etc/catalog.json"}]}))
    server, url = serve(root, ranges=True)
    try:
        with pytest.warns(IngestWarning):
            result = ingest([f"{url}/catalog.json"])
    finally:
        server.shutdown()
    assert result.records == []
    reasons = " | ".join(f"{s}: {r}" for s, r in result.skipped)
    assert "unsupported scheme" in reasons
    assert "file:///etc/catalog.json" in reasons and "only link to http(s)" in reasons
    # a local absolute path in a remote catalog is a path on that server, not a local file
    assert f"{url}{stac_root}/catalog.json" in reasons


def test_band_asset_record_is_used_on_board_and_found_on_the_ground(
        stac_root: Path, oscd_dir: Path, tmp_path: Path) -> None:
    """A picked record whose bands are separate files is read by stacking them: the LR and HR
    are those of the same reference given as one file (same content identity), and the ground
    finds it again by id in the catalog."""
    import georefscale
    from georefscale.options import GroundOptions, OnboardOptions, TilingOptions

    cat_file = tmp_path / "stac.parquet"
    res = CliRunner().invoke(main, ["catalog", "build", str(stac_root / "search.json"),
                                    "-o", str(cat_file)])
    assert res.exit_code == 0, res.output
    target = oscd_dir / "rio_20171011.tif"
    options = OnboardOptions(tiling=TilingOptions(tile=256, halo=16))
    via_catalog = georefscale.onboard(target, catalog=cat_file, out=tmp_path / "a.tif",
                                      options=options)
    direct = georefscale.onboard(target, oscd_dir / "rio_20160424.tif", out=tmp_path / "b.tif",
                                 options=options)
    with rasterio.open(via_catalog) as a, rasterio.open(direct) as b:
        assert np.array_equal(a.read(), b.read())
        ta, tb = a.tags(), b.tags()
        assert ta["GEOREFSCALE_REFERENCE_ID"] == "rio_20160424"
        assert ta["GEOREFSCALE_REFERENCE_IDENTITY"] == tb["GEOREFSCALE_REFERENCE_IDENTITY"]
    hr = georefscale.ground(via_catalog, catalog=cat_file, out=tmp_path / "hr.tif",
                            options=GroundOptions(alpha=0.0))
    hr_direct = georefscale.ground(direct, oscd_dir / "rio_20160424.tif",
                                   out=tmp_path / "hr_b.tif", options=GroundOptions(alpha=0.0))
    with rasterio.open(hr) as a, rasterio.open(hr_direct) as b:
        assert np.array_equal(a.read(), b.read())

