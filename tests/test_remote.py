"""Remote rasters: targets and references read over HTTP (range requests) from a real server on
127.0.0.1 that serves the sample files; the products must be byte-identical to reading the same
files locally, and a bad server or URL a clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner

from georefscale.api import ground, onboard
from georefscale.cli import main
from georefscale.errors import InputError, ReferenceMismatchError
from georefscale.options import OnboardOptions
from georefscale.references import identity_of
from georefscale.sample_stac import serve

FAST = OnboardOptions(model="refscale-s2-x4")  # one tile: few range requests


@pytest.fixture(scope="module")
def http_data(oscd_dir):
    server, url = serve(oscd_dir, ranges=True)
    before = os.environ.get("GDAL_DISABLE_READDIR_ON_OPEN")
    os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] = "EMPTY_DIR"  # no directory listing requests
    yield url
    server.shutdown()
    if before is None:
        os.environ.pop("GDAL_DISABLE_READDIR_ON_OPEN")
    else:
        os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] = before


def test_remote_target_and_reference_give_the_local_products(oscd_dir, http_data, tmp_path):
    target, ref = "rio_20171011.tif", "rio_20160424.tif"
    local = onboard(oscd_dir / target, oscd_dir / ref, out=tmp_path / "local.tif", options=FAST)
    remote = onboard(f"{http_data}/{target}", f"{http_data}/{ref}", out=tmp_path / "remote.tif",
                     options=FAST)
    assert remote.read_bytes() == local.read_bytes()
    assert identity_of(f"{http_data}/{ref}") == identity_of(oscd_dir / ref)
    hr_local = ground(local, oscd_dir / ref, out=tmp_path / "hr_local.tif")
    hr_remote = ground(remote, f"{http_data}/{ref}", out=tmp_path / "hr_remote.tif")
    with rasterio.open(hr_local) as a, rasterio.open(hr_remote) as b:
        assert (a.read() == b.read()).all()
    res = CliRunner().invoke(main, ["roundtrip", f"{http_data}/{target}", "-r",
                                    f"{http_data}/{ref}", "-m", "bicubic", "-o",
                                    str(tmp_path / "rt"), "-q"])
    assert res.exit_code == 0, res.output


def test_bad_urls_and_servers(oscd_dir, http_data, tmp_path):
    with pytest.raises(InputError, match="missing.tif: target cannot be read over the network"):
        onboard(f"{http_data}/missing.tif", None, out=tmp_path / "lr.tif", options=FAST)
    with pytest.raises(InputError, match="cannot be read over the network"):
        onboard("http://127.0.0.1:9/rio_20171011.tif", None, out=tmp_path / "lr.tif",
                options=FAST)
    server, url = serve(oscd_dir, ranges=False)
    try:
        with pytest.raises(InputError, match="rio_20171011.tif"):
            onboard(f"{url}/rio_20171011.tif", f"{url}/rio_20160424.tif",
                    out=tmp_path / "lr.tif", options=FAST)
    finally:
        server.shutdown()
    assert not (tmp_path / "lr.tif").exists()


# -- STAC Items with one asset per band ------------------------------------------------------

BANDS = [("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir")]


def _item(src: Path, folder: Path, *, keys=("B02", "B03", "B04", "B08"), shift: int = 0) -> Path:
    """A STAC Item for ``src`` with its bands as single-band COG assets (relative hrefs), in
    a shuffled order, named by asset-level ``eo:bands``."""
    import rasterio.shutil

    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    with rasterio.open(src) as ds:
        profile = {**ds.profile, "count": 1, "driver": "GTiff"}
        if shift:
            profile["transform"] = ds.transform * rasterio.Affine.translation(shift, 0)
        for i, (name, common) in enumerate(BANDS, start=1):
            if name not in keys:
                continue
            tif = folder / f"{src.stem}_{name}.tif"
            with rasterio.open(tif, "w", **profile) as out:
                out.write(ds.read(i), 1)
            rasterio.shutil.copy(tif, tif.with_suffix(".cog.tif"), driver="COG")
            tif.unlink()
            assets[f"band-{common}"] = {
                "href": tif.with_suffix(".cog.tif").name, "type": "image/tiff",
                "eo:bands": [{"name": name, "common_name": common}]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": src.stem, "geometry": None,
            "properties": {"datetime": "2017-10-11T00:00:00Z"},
            "assets": dict(reversed(list(assets.items()))), "links": []}
    path = folder / f"{src.stem}.json"
    path.write_text(json.dumps(item))
    return path


def test_stac_items_with_band_assets_over_http(oscd_dir, tmp_path):
    root = tmp_path / "stac"
    _item(oscd_dir / "rio_20171011.tif", root / "target")
    _item(oscd_dir / "rio_20160424.tif", root / "reference")
    server, url = serve(root, ranges=True)
    try:
        target, ref = f"{url}/target/rio_20171011.json", f"{url}/reference/rio_20160424.json"
        lr = onboard(target, ref, out=tmp_path / "lr.tif", options=FAST)
        local = onboard(oscd_dir / "rio_20171011.tif", oscd_dir / "rio_20160424.tif",
                        out=tmp_path / "local.tif", options=FAST)
        with rasterio.open(lr) as a, rasterio.open(local) as b:
            assert (a.read() == b.read()).all()
            assert a.tags()["GEOREFSCALE_REFERENCE_ID"] == "rio_20160424"
        hr = ground(lr, ref, out=tmp_path / "hr.tif")
        assert hr.is_file()
        with pytest.raises(ReferenceMismatchError):  # the local file is the same content...
            ground(lr, f"{url}/target/rio_20171011.json", out=tmp_path / "hr2.tif")
    finally:
        server.shutdown()


def test_stac_items_that_cannot_serve(oscd_dir, tmp_path):
    missing = _item(oscd_dir / "rio_20171011.tif", tmp_path / "a", keys=("B02", "B03", "B04"))
    with pytest.raises(InputError, match="no asset provides band 'B08 nir'"):
        onboard(missing, None, out=tmp_path / "lr.tif",
                options=OnboardOptions(model="noref-s2-x4"))
    odd = _item(oscd_dir / "rio_20171011.tif", tmp_path / "b")
    data = json.loads(odd.read_text())
    moved = _item(oscd_dir / "rio_20171011.tif", tmp_path / "c", keys=("B08",), shift=3)
    data["assets"]["band-nir"]["href"] = str(moved.parent / "rio_20171011_B08.cog.tif")
    odd.write_text(json.dumps(data))
    with pytest.raises(InputError, match="not on the grid of the item's other band assets"):
        onboard(odd, None, out=tmp_path / "lr.tif", options=OnboardOptions(model="noref-s2-x4"))
    (tmp_path / "notes.json").write_text('{"type": "FeatureCollection"}')
    with pytest.raises(InputError, match="not a STAC Item"):
        onboard(tmp_path / "notes.json", None, out=tmp_path / "lr.tif",
                options=OnboardOptions(model="noref-s2-x4"))
    assert not (tmp_path / "lr.tif").exists()
