"""The two-layer downlink product on real scenes: the guarantees of every rate target, the
ground's checks, and the bad requests."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale.api import ground, onboard
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.layers import enhancement_path
from georefscale.options import CodecChoice, GroundOptions, OnboardOptions, RateTarget
from georefscale.raster.grid import Grid
from georefscale.raster.io import write_geotiff

MODEL = "noref-s2-x4"


@pytest.fixture(scope="module")
def scene(oscd_dir, tmp_path_factory):
    """An odd-sized crop of Rio (301 x 257) with a nodata hole whose edge cuts 4 x 4 blocks."""
    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        win = rasterio.windows.Window(17, 23, 257, 301)
        a, grid = ds.read(window=win), Grid.from_dataset(ds).window_grid(win)
    yy, xx = np.mgrid[: a.shape[1], : a.shape[2]]
    a[:, (yy - 120) ** 2 + (xx - 90) ** 2 < 33**2] = 0
    path = write_geotiff(tmp_path_factory.mktemp("scene") / "rio_crop.tif", a, grid, nodata=0)
    return path, a


def _layered(scene, tmp_path, rate, name="lr.jp2"):
    path, a = scene
    lr = onboard(path, None, out=tmp_path / name, options=OnboardOptions(model=MODEL,
                                                                           rate=rate))
    hr = ground(lr, None, out=tmp_path / f"{name}.hr.tif")
    with rasterio.open(hr) as ds:
        h = ds.read()
    total = lr.stat().st_size + enhancement_path(lr).stat().st_size
    return lr, h, total


def _psnr(a, h):
    valid = a != 0
    d = a[valid].astype(float) - h[valid]
    return 10 * np.log10(1e8 / np.mean(d * d))


@pytest.mark.parametrize("e", [0, 3, 25])
def test_max_error_is_never_violated(scene, tmp_path, e):
    _, a = scene
    lr, h, _ = _layered(scene, tmp_path, RateTarget(max_error=e))
    valid = a != 0
    np.testing.assert_array_equal(h == 0, ~valid)  # the nodata mask is exact
    assert np.abs(h[valid].astype(int) - a[valid]).max() <= e


def test_target_psnr_is_reached_without_much_overshoot(scene, tmp_path):
    _, a = scene
    for goal in (36.0, 44.0):
        _, h, _ = _layered(scene, tmp_path, RateTarget(target_psnr=goal), f"p{goal:g}.jp2")
        assert goal <= _psnr(a, h) <= goal + 0.3


def test_max_bytes_is_never_exceeded_and_used(scene, tmp_path):
    for budget in (9_000, 30_000):
        _, _, total = _layered(scene, tmp_path, RateTarget(max_bytes=budget), f"b{budget}.jp2")
        assert 0.95 * budget <= total <= budget


def test_more_bytes_more_quality_and_beyond_the_base_ceiling(scene, tmp_path):
    _, a = scene
    base = onboard(scene[0], None, out=tmp_path / "plain.tif",
                   options=OnboardOptions(model=MODEL))
    ceiling = _psnr(a, rasterio.open(ground(base, None, out=tmp_path / "plain_hr.tif")).read())
    _, h, _ = _layered(scene, tmp_path, RateTarget(max_bytes=120_000))
    assert _psnr(a, h) > ceiling + 3


def test_ground_checks_the_enhancement_layer(scene, tmp_path):
    lr, _, _ = _layered(scene, tmp_path, RateTarget(max_error=5), "a.jp2")
    other, _, _ = _layered(scene, tmp_path, RateTarget(max_bytes=6_000), "b.jp2")
    assert other.read_bytes() != lr.read_bytes()  # another base layer
    enh = enhancement_path(lr)
    enh.rename(tmp_path / "kept.enh.jp2")
    with pytest.raises(InputError, match="a.jp2: the product has an enhancement layer"):
        ground(lr, None, out=tmp_path / "hr.tif")
    with pytest.raises(InputError, match="belongs to another base layer"):
        ground(lr, None, out=tmp_path / "hr.tif", enhancement=enhancement_path(other))
    assert not (tmp_path / "hr.tif").exists()
    hr = ground(lr, None, out=tmp_path / "hr.tif", options=GroundOptions(base_only=True))
    assert hr.is_file()
    shutil.copy(scene[0], tmp_path / "not_enh.tif")
    with pytest.raises(InputError, match="not a georefscale enhancement layer"):
        ground(lr, None, out=tmp_path / "hr2.tif", enhancement=tmp_path / "not_enh.tif")
    res = CliRunner().invoke(main, ["ground", str(lr), "--enhancement",
                                    str(tmp_path / "kept.enh.jp2"), "-o",
                                    str(tmp_path / "hr3.tif"), "--json"])
    assert res.exit_code == 0 and '"max_error_dn": 5' in res.output, res.output


@pytest.mark.parametrize("make, match", [
    (lambda: RateTarget(max_error=-1), "max_error must be a non-negative integer"),
    (lambda: RateTarget(max_error=2.5), "max_error must be a non-negative integer"),
    (lambda: RateTarget(max_error=1, max_bytes=10), "exactly one"),
    (lambda: RateTarget(target_psnr=250), "target_psnr"),
    (lambda: OnboardOptions(rate=RateTarget(max_error=0), codec=CodecChoice("jpeg2000", 10)),
     "contradicts codec 'jpeg2000' at quality 10"),
    (lambda: OnboardOptions(rate=RateTarget(max_error=0), codec=CodecChoice("webp")),
     "contradicts codec 'webp'"),
])
def test_contradictory_requests(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_budget_too_small(scene, tmp_path):
    with pytest.raises(InputError, match="byte budget of 500 is too small"):
        onboard(scene[0], None, out=tmp_path / "lr.jp2",
                options=OnboardOptions(model=MODEL, rate=RateTarget(max_bytes=500)))
    assert list(tmp_path.iterdir()) == []


def test_cli_target_psnr(scene, tmp_path):
    res = CliRunner().invoke(main, ["roundtrip", str(scene[0]), "-m", MODEL, "--target-psnr",
                                    "40", "-o", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert '"layers": 2' in res.output


def test_archive_makes_two_layer_products(oscd_dir, tmp_path):
    from georefscale.archive import process_archive
    from georefscale.catalog import Catalog, ingest
    from georefscale.options import ClusterOptions, TilingOptions

    cat = Catalog.from_records(ingest([oscd_dir / "norcia_20150711.tif",
                                       oscd_dir / "norcia_20171018.tif"]).records)
    options = OnboardOptions(model=MODEL, tiling=TilingOptions(128, 16),
                             rate=RateTarget(max_error=10))
    result = process_archive(cat, tmp_path / "out", onboard=options, ground=GroundOptions(),
                             cluster=ClusterOptions(workers=0), progress=False)
    assert not result.failed, result.failed
    folder = tmp_path / "out" / "norcia_20171018"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "norcia_20171018_hr.tif", "norcia_20171018_lr.enh.jp2",
        "norcia_20171018_lr.jp2"]
    with rasterio.open(oscd_dir / "norcia_20171018.tif") as t, \
            rasterio.open(folder / "norcia_20171018_hr.tif") as h:
        assert np.abs(t.read().astype(int) - h.read()).max() <= 10
