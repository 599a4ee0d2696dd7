"""The archive over inputs as users have them (issue 25): catalog records whose bands are
separate files (STAC band assets, local and over HTTP) and band selections (``--bands``), for
targets and references alike; the products are those of ``onboard`` on the same scene and
reference, and a resumed run reuses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

import georefscale
from georefscale.archive import process_archive
from georefscale.catalog import Catalog, ingest
from georefscale.cli import main
from georefscale.options import ClusterOptions, GroundOptions, OnboardOptions, TilingOptions
from georefscale.sample_stac import serve, write_catalog

CROP = 128
CITIES = ["rio_20160424", "rio_20171011", "montpellier_20150812", "montpellier_20171030"]
TARGETS = {"rio_20171011": "rio_20160424", "montpellier_20171030": "montpellier_20150812"}
FAST = ["--tile", "128", "--halo", "16"]
TILING = TilingOptions(tile=128, halo=16)
SERIAL = ClusterOptions(workers=0)
RIO = {"after": "2017-10-11", "before": "2017-10-12"}  # the rio target only


@pytest.fixture(scope="module")
def stac_root(oscd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Band-asset Items of two cities, both dates, cropped; montpellier's bands are named only
    by their asset keys."""
    root = tmp_path_factory.mktemp("stac")
    write_catalog([oscd_dir / f"{c}.tif" for c in CITIES], root, crop=CROP,
                  key_named=["montpellier_20150812", "montpellier_20171030"])
    return root


def _catalog(source: str, out: Path) -> Path:
    res = CliRunner().invoke(main, ["catalog", "build", source, "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_archive_stacks_band_asset_records_like_onboard(stac_root: Path, tmp_path: Path) -> None:
    """CLI and API archives of band-asset records: the LR pixels and reference identity are
    onboard's for the same Items, both archives have the same bytes, a rerun resumes."""
    cat = _catalog(str(stac_root / "search.json"), tmp_path / "cat.parquet")
    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["archive", str(cat), "-o", str(out), "--workers", "0",
                                    "--ground", "--alpha", "0", "--no-progress", *FAST])
    assert res.exit_code == 0, res.output
    assert "2 processed" in res.output and "2 skipped" in res.output
    api = process_archive(Catalog.load(cat), tmp_path / "api",
                          onboard=OnboardOptions(tiling=TILING),
                          ground=GroundOptions(alpha=0.0), cluster=SERIAL, progress=False)
    assert not api.failed
    items = stac_root / "items"
    for target, ref in TARGETS.items():
        scene = _manifest(out / target)
        assert scene["references"][0]["id"] == ref
        assert [b["name"] for b in scene["target"]["bands"]][3] in ("B08", "nir")
        assert scene["products"] == _manifest(tmp_path / "api" / target)["products"]
        assert scene["metrics"]["psnr_db"] > 30
        assert sorted(p.name for p in (out / target).iterdir()) == [
            "manifest.json", f"{target}_hr.tif", f"{target}_lr.tif"]  # no staged VRTs
        lr = georefscale.onboard(items / f"{target}.json", items / f"{ref}.json",
                                 out=tmp_path / f"{target}_onboard.tif",
                                 options=OnboardOptions(tiling=TILING))
        archived = out / target / f"{target}_lr.tif"
        assert np.array_equal(_read(archived), _read(lr))
        with rasterio.open(archived) as a, rasterio.open(lr) as b:
            assert a.tags()["GEOREFSCALE_REFERENCE_IDENTITY"] == b.tags()[
                "GEOREFSCALE_REFERENCE_IDENTITY"]
        # the ground finds the band-asset reference again by id in the catalog
        hr = georefscale.ground(archived, catalog=cat, out=tmp_path / f"{target}_hr.tif",
                                options=GroundOptions(alpha=0.0))
        assert np.array_equal(_read(hr), _read(out / target / f"{target}_hr.tif"))
    res = CliRunner().invoke(main, ["archive", str(cat), "-o", str(out), "--workers", "0",
                                    "--ground", "--alpha", "0", "--no-progress", *FAST])
    assert res.exit_code == 0 and "2 already done" in res.output, res.output


def test_band_selection_applies_to_band_asset_records(stac_root: Path,
                                                      tmp_path: Path) -> None:
    """``--bands`` picks a record's band files by index (the record's band order) or by name;
    the same bands give the same product as without."""
    cat = _catalog(str(stac_root / "search.json"), tmp_path / "cat.parquet")
    lrs = []
    for how, bands in (("default", None), ("index", "1,2,3,4")):
        result = process_archive(Catalog.load(cat), tmp_path / how,
                                 selection={"after": "2017-01-01"},
                                 onboard=OnboardOptions(tiling=TILING, bands=bands),
                                 cluster=SERIAL, progress=False)
        assert result.count("done") == 2, result.scenes
        lrs.append(_read(tmp_path / how / "rio_20171011" / "rio_20171011_lr.tif"))
    assert np.array_equal(*lrs)
    assert _manifest(tmp_path / "index" / "rio_20171011")["options"]["bands"] == [1, 2, 3, 4]
    # an index beyond a record's band files names the record
    bad = process_archive(Catalog.load(cat), tmp_path / "beyond",
                          selection={"after": "2017-01-01"},
                          onboard=OnboardOptions(tiling=TILING, bands="1,2,3,5"),
                          cluster=SERIAL, progress=False)
    errors = {s["id"]: s["error"] for s in bad.failed}
    assert "has 4 band files, --bands asks for band 5" in errors["rio_20171011"]


def test_band_files_that_do_not_fit_fail_their_scene_naming_the_record(
        stac_root: Path, oscd_dir: Path, tmp_path: Path) -> None:
    """A record whose band files miss a band the model needs, or disagree in grid, fails its
    scene with an error naming the record and the problem; the other scenes go on."""
    cat = Catalog.load(_catalog(str(stac_root / "search.json"), tmp_path / "cat.parquet"))
    rio = cat.get("rio_20171011")
    nir = next(b for b in rio.bands if b.href.endswith("_B08.tif"))
    shifted = tmp_path / "shifted" / "rio_20171011_B08.tif"  # one pixel off the others' grid
    shifted.parent.mkdir()
    with rasterio.open(nir.href) as ds:
        profile = {**ds.profile, "transform": ds.window_transform(Window(1, 0, CROP, CROP))}
        with rasterio.open(shifted, "w", **profile) as o:
            o.write(ds.read())
    from dataclasses import replace

    bands = tuple(replace(b, href=str(shifted)) if b is nir else b for b in rio.bands)
    mont = cat.get("montpellier_20171030")
    renamed = tuple(replace(b, name="B8A", common_name=None) if b.name == "B08" else b
                    for b in mont.bands)
    records = [replace(rio, bands=bands), replace(mont, bands=renamed),
               *(r for r in cat if r.id not in TARGETS)]
    result = process_archive(Catalog.from_records(records), tmp_path / "out",
                             onboard=OnboardOptions(tiling=TILING), cluster=SERIAL,
                             progress=False)
    errors = {s["id"]: s["error"] for s in result.failed}
    assert "asset B08 of rio_20171011 is not on the grid" in errors["rio_20171011"]
    assert "montpellier_20171030: no asset provides band 'B08 nir'" in errors[
        "montpellier_20171030"]
    assert not (tmp_path / "out" / "rio_20171011").exists()


def test_archive_reads_band_asset_records_over_http(stac_root: Path, tmp_path: Path) -> None:
    """A catalog of remote band-asset Items: the scene is read over HTTP and its LR pixels are
    those of the local archive's."""
    local = process_archive(Catalog.load(_catalog(str(stac_root / "search.json"),
                                                  tmp_path / "local.parquet")),
                            tmp_path / "local", selection=RIO,
                            onboard=OnboardOptions(tiling=TILING), cluster=SERIAL,
                            progress=False)
    assert local.count("done") == 1
    server, url = serve(stac_root, ranges=True)
    try:
        cat = Catalog.load(_catalog(f"{url}/catalog.json", tmp_path / "remote.parquet"))
        assert cat.get("rio_20171011").href.startswith(url)
        result = process_archive(cat, tmp_path / "remote", selection=RIO,
                                 onboard=OnboardOptions(tiling=TILING), cluster=SERIAL,
                                 progress=False)
    finally:
        server.shutdown()
    assert result.count("done") == 1, result.scenes
    name = "rio_20171011/rio_20171011_lr.tif"
    assert np.array_equal(_read(tmp_path / "remote" / name), _read(tmp_path / "local" / name))
    assert _manifest(tmp_path / "remote" / "rio_20171011")["metrics"]["target_bytes"] is None


def test_archive_applies_a_band_selection_like_onboard(data_dir: Path, crop,
                                                       tmp_path: Path) -> None:
    """13-band stacks whose bands carry no names: without ``--bands`` the scene fails saying
    how to give them; with ``--bands 2,3,4,8`` target and reference are read as ``onboard
    --bands`` reads them (same LR pixels)."""
    files = sorted((data_dir / "sentinel2-l1c-13band").glob("slovenia_*.tif"))[-2:]
    (tmp_path / "in").mkdir()
    stacks = []
    for f in files:
        out = crop(f, tmp_path / "in" / f.name, CROP)
        with rasterio.open(out, "r+") as ds:
            for i in range(1, ds.count + 1):
                ds.set_band_description(i, "")
        stacks.append(out)
    cat = tmp_path / "cat.parquet"
    Catalog.from_records(ingest(stacks).records).save(cat)
    res = CliRunner().invoke(main, ["archive", str(cat), "-o", str(tmp_path / "plain"),
                                    "--workers", "0", "--no-progress", *FAST])
    assert res.exit_code == 1 and "give the input's band for each model band" in res.output
    res = CliRunner().invoke(main, ["archive", str(cat), "-o", str(tmp_path / "out"),
                                    "--workers", "0", "--no-progress", "--bands", "2,3,4,8",
                                    *FAST])
    assert res.exit_code == 0, res.output
    target = stacks[-1].stem
    lr = georefscale.onboard(stacks[-1], stacks[0], out=tmp_path / "onboard.tif",
                             options=OnboardOptions(tiling=TILING, bands="2,3,4,8"))
    archived = tmp_path / "out" / target / f"{target}_lr.tif"
    assert np.array_equal(_read(archived), _read(lr)) and _read(lr).shape[0] == 4
