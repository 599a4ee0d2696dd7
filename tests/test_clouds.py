"""The spectral cloud / shadow test on real scenes (Sentinel-2 dates with real overcast, the OSCD
cities, the NAIP dates) and on a cloud and shadow drawn into a real reference; clouds in the
reference are filled on both sides and left out of co-registration; the catalog ranks by the
same test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from georefscale.api import ground, onboard, roundtrip
from georefscale.catalog.records import record_from_raster
from georefscale.product import LRInfo
from georefscale.raster.clouds import (
    clear_reference,
    cloud_bands,
    cloud_cover,
    cloud_kind,
    cloud_mask,
)
from georefscale.raster.io import georefscale_tags

CLOUD_DN = np.array([5600.0, 5400.0, 5300.0, 5900.0])[:, None, None]
#: dark, vegetated-shadow DN (B02 B03 B04 B08)
SHADOW_DN = np.array([450.0, 420.0, 300.0, 900.0])[:, None, None]


def _blob(h, w, fraction, centre=(0.45, 0.5)):
    """Opacity of a round blob over ``fraction`` of the image, 12-pixel soft edge."""
    rows, cols = np.mgrid[0:h, 0:w]
    r = np.hypot(cols - centre[0] * w, rows - centre[1] * h)
    return np.clip((math.sqrt(fraction * h * w / math.pi) + 12 - r) / 12, 0, 1)


def _clouded(src, out, fraction=1 / 3, shadow=False):
    """``src`` with a textured cloud over ``fraction`` of it (and a shadow beside it)."""
    with rasterio.open(src) as ds:
        profile, arr = ds.profile, ds.read().astype(np.float64)
        desc = ds.descriptions
    h, w = arr.shape[1:]
    alpha = _blob(h, w, fraction)
    if shadow:
        dark = _blob(h, w, 0.02, centre=(0.83, 0.5)) >= 1
        arr = np.where(dark, SHADOW_DN, arr)
    texture = 1 + 2 * ndimage.gaussian_filter(np.random.default_rng(1).standard_normal((h, w)), 6)
    arr = (1 - alpha) * arr + alpha * CLOUD_DN * texture
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(arr.round().astype(profile["dtype"]))
        dst.descriptions = desc
    return out, alpha


@pytest.mark.parametrize(("date", "low", "high"), [
    ("20150711", 0, 0.1), ("20150731", 0, 0.1), ("20150820", 50, 80), ("20150830", 0, 0.1),
    ("20150909", 0, 0.1)])
def test_real_overcast_is_cloudy_and_clear_dates_are_not(data_dir, date, low, high):
    """Slovenia, 13 Sentinel-2 bands: the overcast date (s2cloudless 97 %) is mostly cloud, the
    clear and the hazy dates are not; the catalog records the same percentage."""
    path = data_dir / "sentinel2-l1c-13band" / f"slovenia_{date}.tif"
    with rasterio.open(path) as ds:
        found = cloud_bands(ds.descriptions)
        assert found == ("s2", (2, 3, 4, 8))
        cover = cloud_cover(ds, "s2", 10000.0, bands=found[1])
    assert low <= cover <= high
    assert record_from_raster(path).cloud_cover == pytest.approx(cover, abs=1e-3)


def test_clear_scenes_have_almost_no_false_clouds(oscd_dir, naip_dir):
    """Bright roofs, desert and surf are not clouds: at most 0.5 % of any OSCD scene, 0.1 % of
    any NAIP date."""
    for path in sorted(oscd_dir.glob("*.tif")):
        with rasterio.open(path) as ds:
            assert cloud_kind(ds.descriptions) == "s2"
            assert cloud_mask(ds.read().astype(np.float32), "s2", 10000.0).mean() < 0.005, path
    for path in sorted(naip_dir.glob("*.tif")):
        with rasterio.open(path) as ds:
            arr = ds.read().astype(np.float32)
        arr[arr == 0] = np.nan
        assert cloud_mask(arr, "naip", 255.0).mean() < 0.001, path


def test_drawn_cloud_and_its_shadow_are_masked_and_filled(oscd_dir, tmp_path):
    path, alpha = _clouded(oscd_dir / "montpellier_20150812.tif", tmp_path / "c.tif",
                           shadow=True)
    with rasterio.open(path) as ds:
        ref = ds.read().astype(np.float32)
    mask = cloud_mask(ref, "s2", 10000.0)
    h, w = alpha.shape
    shadow = _blob(h, w, 0.02, centre=(0.83, 0.5)) >= 1
    assert mask[alpha >= 1].mean() > 0.97 and mask[shadow].mean() > 0.9
    assert mask[(alpha == 0) & ~shadow].mean() < 0.01
    filled = clear_reference(ref, "s2", 10000.0)
    np.testing.assert_array_equal(filled[:, ~mask], ref[:, ~mask])
    assert filled[2][alpha >= 1].mean() < 0.5 * ref[2][alpha >= 1].mean()  # no cloud left
    assert clear_reference(ref, None, 10000.0) is ref
    # the same dark patch far from any cloud is dark land or water, not a shadow
    with rasterio.open(oscd_dir / "montpellier_20150812.tif") as ds:
        plain = ds.read().astype(np.float32)
    plain[:, shadow] = SHADOW_DN[:, :, 0]
    assert not cloud_mask(plain, "s2", 10000.0)[shadow].any()


def test_ground_fills_the_clouds_as_on_board(oscd_dir, tmp_path, crop):
    """A 256 px crop of Rio with a cloud over a third of its reference: the product records the
    test (FORMAT 2), the round trip beats the no-reference model, and a second ground (which
    fills the reference's clouds itself) gives the same HR bit for bit."""
    from georefscale.options import GroundOptions, OnboardOptions, TilingOptions

    target, ref = (crop(oscd_dir / name, tmp_path / name, 256)
                   for name in ("rio_20171011.tif", "rio_20160424.tif"))
    cloudy, _ = _clouded(ref, tmp_path / "cloudy.tif")
    with rasterio.open(cloudy) as ds:
        assert cloud_mask(ds.read().astype(np.float32), "s2", 10000.0).mean() > 0.2
    options = (OnboardOptions(tiling=TilingOptions(tile=128, halo=16)), GroundOptions())
    res = roundtrip(target, cloudy, lr_out=tmp_path / "lr.tif", hr_out=tmp_path / "hr.tif",
                    options=options)
    noref = roundtrip(target, None, lr_out=tmp_path / "n_lr.tif", hr_out=tmp_path / "n_hr.tif",
                      options=(OnboardOptions(model="noref-s2-x4"), GroundOptions()))
    assert res["psnr_db"] > noref["psnr_db"]
    with rasterio.open(res["lr"]) as ds:
        assert LRInfo.from_dataset(ds, res["lr"]).reference_clouds == "s2"
        assert georefscale_tags(ds)["FORMAT"] == "2"
    again = ground(res["lr"], cloudy, out=tmp_path / "again.tif")
    with rasterio.open(again) as x, rasterio.open(res["hr"]) as y:
        np.testing.assert_array_equal(x.read(), y.read())


@pytest.mark.slow  # three whole-scene round trips (the goal, also in benchmarks/coregistration.py)
def test_cloudy_reference_roundtrip(oscd_dir, tmp_path):
    """Rio with a cloud over a third of the reference (refscale-s2-x4): outside the cloud
    within 0.3 dB of the clean reference's result, and on the whole scene better than the
    no-reference model (the tags and the ground's fill: the crop test above)."""
    target = oscd_dir / "rio_20171011.tif"
    ref = oscd_dir / "rio_20160424.tif"
    cloudy, alpha = _clouded(ref, tmp_path / "cloudy.tif")
    clean = roundtrip(target, ref, lr_out=tmp_path / "a_lr.tif", hr_out=tmp_path / "a_hr.tif")
    res = roundtrip(target, cloudy, lr_out=tmp_path / "c_lr.tif", hr_out=tmp_path / "c_hr.tif")
    noref = roundtrip(target, None, lr_out=tmp_path / "n_lr.tif", hr_out=tmp_path / "n_hr.tif",
                      model="noref-s2-x4")
    with rasterio.open(target) as t, rasterio.open(res["hr"]) as a, \
            rasterio.open(clean["hr"]) as b:
        tgt = t.read().astype(np.float64)
        outside = alpha == 0

        def psnr(hr):
            return 20 * math.log10(1e4 / math.sqrt(((tgt - hr)[:, outside] ** 2).mean()))

        assert psnr(a.read()) > psnr(b.read()) - 0.3
    assert res["psnr_db"] > noref["psnr_db"]


def test_clouds_are_left_out_of_coregistration(oscd_dir, tmp_path):
    """Montpellier under a cloud: on board, the windows touched by the cloud are used once
    the cloud is masked (more windows than without), and the shift stays the clean one's."""
    from georefscale.raster.coreg import coregister
    from georefscale.raster.grid import Grid

    target = oscd_dir / "montpellier_20171030.tif"
    ref = oscd_dir / "montpellier_20150812.tif"
    cloudy, _ = _clouded(ref, tmp_path / "cloudy.tif")
    lr = onboard(target, cloudy, out=tmp_path / "lr.tif", model="bicubic", factor=4)
    with rasterio.open(lr) as ds:
        masked = LRInfo.from_dataset(ds, lr).coreg
    with rasterio.open(target) as t, rasterio.open(cloudy) as r, rasterio.open(ref) as c:
        plain = coregister(t, [r], Grid.from_dataset(t))
        clean = coregister(t, [c], Grid.from_dataset(t))
        w, h = t.width, t.height
    assert masked.windows > plain.windows
    assert max(math.dist(masked.warp @ q, clean.warp @ q)
               for q in [(0, 0), (w, 0), (0, h), (w, h)]) < 0.2


def test_a_reference_mask_is_missing_data(oscd_dir, tmp_path):
    """A reference's GDAL mask (an internal mask over a block, e.g. a provider's cloud mask) is
    honoured by the warp: the block is missing (NaN), and co-registration leaves it out."""
    from georefscale.raster.align import align
    from georefscale.raster.coreg import coregister
    from georefscale.raster.grid import Grid

    target, ref = oscd_dir / "rio_20171011.tif", oscd_dir / "rio_20160424.tif"
    with rasterio.open(ref) as ds:
        arr, profile = ds.read(), ds.profile
    mask = np.full(arr.shape[1:], 255, np.uint8)
    mask[:, :200] = 0
    masked = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w", **profile) as out:
        out.write(arr)
        out.write_mask(mask)
    with rasterio.open(target) as t, rasterio.open(masked) as r, rasterio.open(ref) as c:
        grid = Grid.from_dataset(t)
        warped = align([r], grid)
        assert np.isnan(warped[:, :, 5:195]).all() and not np.isnan(warped[:, :, 205:]).any()
        fit, clean = coregister(t, [r], grid), coregister(t, [c], grid)
    assert fit.windows < clean.windows and fit.rejected > clean.rejected
    w, h = grid.width, grid.height
    assert max(math.dist(fit.warp @ q, clean.warp @ q)
               for q in [(0, 0), (w, 0), (0, h), (w, h)]) < 0.3
