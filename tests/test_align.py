"""Reference alignment on the real archive: UTM NAIP dates with offset grids, EPSG:4326 OSCD
pairs of different sizes, mosaics, and residual sub-pixel shift estimation."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds

from georefscale.raster.align import align, align_to_target, estimate_shift, overlaps
from georefscale.raster.grid import Grid
from georefscale.raster.io import open_raster

NAIP = "m_4709963_se_14_1_{}.tif"


def _memfile(arr: np.ndarray, grid: Grid, nodata=None) -> MemoryFile:
    mf = MemoryFile()
    with mf.open(driver="GTiff", width=grid.width, height=grid.height, count=arr.shape[0],
                 dtype=arr.dtype, crs=grid.crs, transform=grid.transform, nodata=nodata) as ds:
        ds.write(arr)
    return mf


def _corr(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    return float(np.corrcoef(a[valid], b[valid])[0, 1])


def test_naip_dates_align_onto_target_grid(naip_dir):
    with open_raster(naip_dir / NAIP.format("20200831")) as t, open_raster(
        naip_dir / NAIP.format("20170827")
    ) as r:
        grid = Grid.from_dataset(t)
        assert (r.transform.c - t.transform.c, r.transform.f - t.transform.f) == (3.0, 2.0)
        ref = align([r], grid)
        tgt = t.read().astype(np.float32)
    assert ref.shape == tgt.shape and ref.dtype == np.float32
    valid = ~np.isnan(ref) & (tgt != 0)
    assert valid.mean() > 0.9
    # the grids are correctly georeferenced: no residual shift beyond phase-correlation noise
    dx, dy, _ = estimate_shift(tgt, ref, target_mask=tgt == 0)
    assert abs(dx) < 0.5 and abs(dy) < 0.5
    assert _corr(ref, tgt, valid) > 0.75


@pytest.mark.parametrize("shift", [(1.5, -0.8), (-2.3, 0.4)])
def test_residual_shift_is_recovered_and_corrected(naip_dir, shift):
    """A reference whose georeferencing is off by a known sub-pixel amount (a real NAIP date with
    its transform moved): the shift is estimated and correcting it restores the match."""
    with open_raster(naip_dir / NAIP.format("20200831")) as t, open_raster(
        naip_dir / NAIP.format("20190904")
    ) as r:
        grid = Grid.from_dataset(t)
        tgt = t.read().astype(np.float32)
        bad = Grid(r.crs, r.transform @ Affine.translation(*shift), r.width, r.height)
        with _memfile(r.read(), bad, nodata=r.nodata) as mf, mf.open() as moved:
            before = align([moved], grid)
            dx, dy, err = estimate_shift(tgt, before, target_mask=tgt == 0)
            after = align([moved], grid, warp=Affine.translation(dx, dy))
    assert dx == pytest.approx(shift[0], abs=0.3) and dy == pytest.approx(shift[1], abs=0.3)
    assert 0 <= err < 1
    valid = ~np.isnan(before) & ~np.isnan(after) & (tgt != 0)
    assert _corr(after, tgt, valid) > _corr(before, tgt, valid) + 0.01


def test_oscd_pair_with_different_pixel_grid(oscd_dir):
    """abudhabi 2018 has 795 x 782 pixels over the same bounds as 2016's 799 x 785."""
    with open_raster(oscd_dir / "abudhabi_20160120.tif") as t, open_raster(
        oscd_dir / "abudhabi_20180328.tif"
    ) as r:
        assert (t.width, t.height) != (r.width, r.height)
        ref = align([r], Grid.from_dataset(t))
    assert ref.shape == (4, 799, 785) and not np.isnan(ref).any()


@pytest.mark.parametrize(
    ("city", "expected"),
    [("abudhabi", (-0.55, -1.25)), ("beihai", (-0.8, -0.8)), ("pisa", (0.15, 0.95))],
)
def test_real_oscd_misregistration_is_estimated_and_corrected(oscd_dir, city, expected):
    """OSCD date pairs are misregistered by up to ~1 pixel: correcting the estimated shift makes
    the older date match the newer one better (values measured once on this archive)."""
    old, new = sorted(oscd_dir.glob(f"{city}_2*.tif"))
    with open_raster(new) as t, open_raster(old) as r:
        grid = Grid.from_dataset(t)
        tgt = t.read().astype(np.float32)
        before = align([r], grid)
        dx, dy, _ = estimate_shift(tgt, before)
        after = align([r], grid, warp=Affine.translation(dx, dy))
    assert (dx, dy) == pytest.approx(expected, abs=0.2)
    valid = ~np.isnan(before) & ~np.isnan(after)
    assert _corr(after, tgt, valid) > _corr(before, tgt, valid) + 0.01


def test_align_to_target_corrects_the_shift_also_on_a_window(naip_dir):
    """The reference as on board: a NAIP date moved by 1.5 px comes back onto the target's
    grid, and a window grid gets the matching part of the full-grid result (to float32
    rounding: an affine warp composed with the window's offset is the same map in other
    floating-point steps)."""
    from rasterio.windows import Window

    with open_raster(naip_dir / NAIP.format("20200831")) as t, open_raster(
        naip_dir / NAIP.format("20190904")
    ) as r:
        tgt = t.read().astype(np.float32)
        bad = Grid(r.crs, r.transform @ Affine.translation(1.5, 0.0), r.width, r.height)
        with _memfile(r.read(), bad, nodata=r.nodata) as mf, mf.open() as moved:
            plain = align([moved], Grid.from_dataset(t))
            full = align_to_target(t, [moved])
            win = Window(100, 50, 300, 200)
            part = align_to_target(t, [moved], Grid.from_dataset(t).window_grid(win))
    valid = ~np.isnan(plain) & ~np.isnan(full) & (tgt != 0)
    assert _corr(full, tgt, valid) > _corr(plain, tgt, valid) + 0.01
    np.testing.assert_allclose(part, full[:, 50:250, 100:400], rtol=1e-6)


def test_adjacent_references_mosaicked_onto_a_union_grid(oscd_dir):
    """saclay_w and saclay_e are side by side: a grid over both is covered only by the mosaic."""
    with open_raster(oscd_dir / "saclay_w_20160315.tif") as w16:
        g = Grid.from_dataset(w16)
    union = Grid(g.crs, g.transform, 2 * g.width, g.height)
    with open_raster(oscd_dir / "saclay_w_20170829.tif") as w, open_raster(
        oscd_dir / "saclay_e_20170829.tif"
    ) as e:
        both = align([w, e], union)
        west = align([w], union)
    assert not np.isnan(both[:, 1:-1, 1:-2]).any()
    assert np.isnan(west[:, :, g.width + 2 :]).all()
    assert not np.isnan(west[:, 1:-1, 1 : g.width - 2]).any()
    np.testing.assert_array_equal(both[:, :, : g.width - 2], west[:, :, : g.width - 2])


def test_geographic_reference_onto_utm_grid_round_trip(oscd_dir):
    """OSCD (EPSG:4326) warped onto a 10 m UTM grid and back matches the original inside."""
    with open_raster(oscd_dir / "paris_20161130.tif") as src:
        orig = src.read().astype(np.float32)
        g0 = Grid.from_dataset(src)
        utm = CRS.from_epsg(32631)
        left, bottom, right, top = transform_bounds(src.crs, utm, *src.bounds)
        ugrid = Grid(utm, Affine(10, 0, left, 0, -10, top), int((right - left) // 10),
                     int((top - bottom) // 10))
        warped = align([src], ugrid)
    assert np.isnan(warped).any() and (~np.isnan(warped)).mean() > 0.8  # rotated footprint
    with _memfile(np.nan_to_num(warped, nan=0), ugrid, nodata=0) as mf, mf.open() as ds:
        back = align([ds], g0)
    inner = np.s_[:, 20:-20, 20:-20]
    v = ~np.isnan(back[inner])
    assert v.mean() > 0.99
    rel = np.abs(back[inner][v] - orig[inner][v]).mean() / orig[inner].mean()
    assert rel < 0.06


def test_mosaic_of_two_halves_and_nodata_where_uncovered(oscd_dir):
    with open_raster(oscd_dir / "paris_20161130.tif") as src:
        arr, grid = src.read(), Grid.from_dataset(src)
        whole = align([src], grid)
    h = grid.height
    top = Grid(grid.crs, grid.transform, grid.width, h // 2 + 5)
    bottom = grid.window_grid(rasterio.windows.Window(0, h // 2 - 5, grid.width, h - h // 2 + 5))
    with _memfile(arr[:, : h // 2 + 5], top) as m1, _memfile(arr[:, h // 2 - 5 :], bottom) as m2:
        with m1.open() as a, m2.open() as b:
            both = align([a, b], grid)
            only_top = align([a], grid)
    assert not np.isnan(both).any()
    np.testing.assert_allclose(both[:, 10:-10, 10:-10], whole[:, 10:-10, 10:-10], rtol=1e-5)
    assert np.isnan(only_top[:, h // 2 + 6 :]).all()
    assert not np.isnan(only_top[:, : h // 2]).any()


def test_overlaps(oscd_dir, naip_dir):
    with open_raster(oscd_dir / "paris_20161130.tif") as p, open_raster(
        naip_dir / NAIP.format("20200831")
    ) as n, open_raster(oscd_dir / "paris_20171107.tif") as p2:
        assert not overlaps(n, Grid.from_dataset(p))
        assert overlaps(p2, Grid.from_dataset(p))
        assert not align([n], Grid.from_dataset(p)).any() or np.isnan(
            align([n], Grid.from_dataset(p))
        ).all()
