"""Quality metrics and the Bjontegaard delta rate, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from georefscale import metrics
from georefscale.errors import InputError


def test_psnr_hand_value_and_identity():
    a = np.zeros((2, 8, 8), np.uint16)
    b = np.full((2, 8, 8), 10, np.uint16)
    assert metrics.psnr(a, b, peak=100) == pytest.approx(20.0)  # MSE 100, peak^2 1e4
    assert metrics.psnr(a, b, peak=10000) == pytest.approx(60.0)
    assert metrics.psnr(b, b, 255) == math.inf


def test_psnr_pools_bands():
    a = np.zeros((2, 4, 4))
    b = a.copy()
    b[1] = 2.0  # band 0 exact, band 1 off by 2: pooled MSE 2
    assert metrics.psnr(a, b, 1.0) == pytest.approx(10 * math.log10(1 / 2))


def test_psnr_rejects_bad_input():
    with pytest.raises(InputError, match="same"):
        metrics.psnr(np.zeros((3, 4)), np.zeros((4, 3)), 1)
    with pytest.raises(InputError, match="peak"):
        metrics.psnr(np.zeros((3, 4)), np.zeros((3, 4)), 0)


def test_ssim_is_the_mean_of_band_ssims():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 10000, (2, 32, 32)).astype(np.uint16)
    b = a.copy()
    assert metrics.ssim(a, b, 10000) == pytest.approx(1.0)
    b[1] = rng.integers(0, 10000, (32, 32))
    from skimage.metrics import structural_similarity

    one = structural_similarity(a[1].astype(float), b[1].astype(float), data_range=10000)
    assert metrics.ssim(a, b, 10000) == pytest.approx((1 + one) / 2)
    with pytest.raises(InputError, match="7x7"):
        metrics.ssim(a[:, :5, :5], b[:, :5, :5], 10000)


def test_spectral_angle_in_degrees():
    a = np.zeros((2, 1, 2))
    b = np.zeros((2, 1, 2))
    a[:, 0, 0], b[:, 0, 0] = (1, 0), (0, 1)  # 90 degrees
    a[:, 0, 1], b[:, 0, 1] = (1, 1), (3, 3)  # same direction: 0
    assert metrics.spectral_angle(a, b) == pytest.approx(45.0)
    with pytest.raises(InputError, match="all zero"):
        metrics.spectral_angle(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


ANCHOR_PSNR = np.array([30.0, 32.5, 35.0, 37.5, 40.0])


def _curve(psnr, log_rate):
    return [[math.exp(lr), p] for p, lr in zip(psnr, log_rate, strict=True)]


@pytest.mark.parametrize("factor", [0.3, 0.5, 1.0, 2.0])
def test_bd_rate_of_a_constant_rate_factor_is_that_factor_minus_one(factor):
    anchor = _curve(ANCHOR_PSNR, 0.02 * ANCHOR_PSNR**2 - ANCHOR_PSNR + 20)
    test = [[r * factor, p] for r, p in anchor]
    assert metrics.bd_rate(anchor, test) == pytest.approx(factor - 1, abs=1e-9)


def test_bd_rate_hand_computed_with_different_slopes_and_ranges():
    # anchor ln r = 0.1 p on [25, 40]; test ln r = 0.2 p - 6 on [30, 45]; common range [30, 40]
    pa = np.linspace(25, 40, 6)
    pt = np.linspace(30, 45, 6)
    anchor = _curve(pa, 0.1 * pa)
    test = _curve(pt, 0.2 * pt - 6)
    # mean over [30, 40] of (0.2 p - 6) - 0.1 p = 0.1 * 35 - 6 = -2.5
    assert metrics.bd_rate(anchor, test) == pytest.approx(math.exp(-2.5) - 1, abs=1e-9)


def test_bd_rate_within_a_psnr_range_ignores_the_curve_outside_it():
    """Test saves 60 % up to 44 dB and nothing above: over [30, 44] the windowed BD-rate says
    -60 %; over the whole common range the saving is diluted."""
    p = np.arange(28.0, 62.0, 2.0)
    anchor = _curve(p, 0.15 * p - 5)
    test = [[r * (0.4 if q <= 44 else 1.0), q] for r, q in anchor]
    assert metrics.bd_rate(anchor, test, within=(30.0, 44.0)) == pytest.approx(-0.6, abs=0.02)
    assert metrics.bd_rate(anchor, test) > -0.45
    assert math.isnan(metrics.bd_rate(anchor, test, within=(70.0, 80.0)))


def test_bd_rate_without_common_psnr_range_is_nan():
    anchor = _curve(ANCHOR_PSNR, ANCHOR_PSNR / 10)
    test = _curve(ANCHOR_PSNR + 20, ANCHOR_PSNR / 10)
    assert math.isnan(metrics.bd_rate(anchor, test))


def test_bd_rate_needs_four_distinct_points():
    good = _curve(ANCHOR_PSNR, ANCHOR_PSNR / 10)
    with pytest.raises(InputError, match="4"):
        metrics.bd_rate(good, good[:3])
    with pytest.raises(InputError, match="distinct"):
        metrics.bd_rate(good, [[1, 30], [2, 30], [3, 31], [4, 31]])
    with pytest.raises(InputError, match="non-positive"):
        metrics.bd_rate(good, [[0, 30], [2, 31], [3, 32], [4, 33]])


@settings(max_examples=40, deadline=None)
@given(
    factor=st.floats(0.05, 20),
    coeffs=st.tuples(st.floats(-0.01, 0.01), st.floats(0.05, 0.5), st.floats(-5, 5)),
)
def test_bd_rate_constant_factor_property(factor, coeffs):
    a, b, c = coeffs
    anchor = _curve(ANCHOR_PSNR, a * ANCHOR_PSNR**2 + b * ANCHOR_PSNR + c)
    test = [[r * factor, p] for r, p in anchor]
    assert metrics.bd_rate(anchor, test) == pytest.approx(factor - 1, rel=1e-6, abs=1e-9)


def test_detail_agreement_separates_the_right_reference_from_wrong_ones(oscd_dir):
    import rasterio

    from georefscale.metrics import detail_agreement

    with rasterio.open(oscd_dir / "paris_20171107.tif") as t, \
            rasterio.open(oscd_dir / "paris_20161130.tif") as r:
        target, ref = t.read().astype(float), r.read().astype(float)
    assert detail_agreement(target, target * 3 + 7, 4) == pytest.approx(1.0)
    right = detail_agreement(target, ref, 4)
    assert right > 0.3
    for wrong in (ref[:, ::-1, ::-1], np.roll(ref, 20, axis=2), np.zeros_like(ref)):
        assert abs(detail_agreement(target, wrong, 4)) < 0.1
    holes = ref.copy()
    holes[:, :100] = np.nan  # only blocks valid in both count
    assert detail_agreement(target, holes, 4) == pytest.approx(
        detail_agreement(target[:, 100:], ref[:, 100:], 4), abs=1e-12)


@pytest.mark.parametrize("strip_pixels", [426, 426 * 40, 1 << 20])
def test_strip_ssim_equals_whole_image_ssim_on_a_real_scene(oscd_dir, tmp_path, monkeypatch,
                                                             strip_pixels):
    """``reconstruction_error``'s SSIM, read in strips of 1 row, 40 rows or the whole scene
    (the window's 3 rows read beyond each strip), is skimage's whole-image ``ssim_bands`` on
    the same arrays (nodata samples count as equal in both) to 1e-12."""
    import rasterio

    from georefscale import report
    from georefscale.raster.io import read_masked

    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        a = ds.read()
        profile = {**ds.profile, "nodata": 0}
    a[:, 100:140, 50:90] = 0  # a nodata patch
    target = tmp_path / "target.tif"
    with rasterio.open(target, "w", **profile) as out:
        out.write(a)
    monkeypatch.setattr(report, "STRIP_PIXELS", strip_pixels)
    got = report.reconstruction_error(target, oscd_dir / "rio_20160424.tif", 10000.0)
    with rasterio.open(target) as t, rasterio.open(oscd_dir / "rio_20160424.tif") as h:
        x, invalid = read_masked(t)
        y = np.where(invalid, x, h.read()).astype(np.float64)
    want = metrics.ssim_bands(x.astype(np.float64), y, 10000.0)
    assert np.allclose([b["ssim"] for b in got["bands"]], want, rtol=0, atol=1e-12)
    assert got["ssim"] == pytest.approx(np.mean(want), abs=1e-12)
