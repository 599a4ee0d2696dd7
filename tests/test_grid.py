"""Grid: scaling, window <-> bounds, window grids, on real rasters."""

from __future__ import annotations

import math

import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from georefscale.raster.grid import Grid


@pytest.fixture(scope="module")
def oscd_grid(oscd_dir):
    with rasterio.open(oscd_dir / "abudhabi_20160120.tif") as ds:
        return Grid.from_dataset(ds), ds.bounds, ds.window_transform(Window(10, 20, 30, 40))


def test_from_dataset_matches_rasterio(oscd_grid):
    grid, bounds, _ = oscd_grid
    assert grid.crs == CRS.from_epsg(4326)
    assert grid.shape == (799, 785)
    assert tuple(grid.bounds) == pytest.approx(tuple(bounds))


@pytest.mark.parametrize("factor", [2, 4])
def test_scaled_keeps_origin_and_crs(oscd_grid, factor):
    grid = oscd_grid[0]
    lr = grid.scaled(factor)
    assert lr.crs == grid.crs
    assert (lr.transform.c, lr.transform.f) == (grid.transform.c, grid.transform.f)
    assert lr.transform.a == pytest.approx(grid.transform.a * factor)
    assert lr.transform.e == pytest.approx(grid.transform.e * factor)
    assert lr.width == math.ceil(785 / factor) and lr.height == math.ceil(799 / factor)
    # the LR grid covers the HR grid and overshoots by less than one LR pixel
    assert lr.bounds.right >= grid.bounds.right
    assert lr.bounds.right - grid.bounds.right < lr.res[0]


def test_scaled_rejects_bad_factor(oscd_grid):
    with pytest.raises(ValueError):
        oscd_grid[0].scaled(0)


def test_window_bounds_round_trip(oscd_grid):
    grid = oscd_grid[0]
    win = Window(13, 7, 100, 50)
    back = grid.bounds_window(grid.window_bounds(win))
    assert (back.col_off, back.row_off, back.width, back.height) == pytest.approx((13, 7, 100, 50))


def test_window_grid_matches_rasterio(oscd_grid):
    grid, _, expected = oscd_grid
    sub = grid.window_grid(Window(10, 20, 30, 40))
    assert sub.transform.almost_equals(expected)
    assert sub.shape == (40, 30) and sub.crs == grid.crs


def test_window_grid_outside_the_raster():
    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4000000), 100, 100)
    sub = grid.window_grid(Window(-8, -8, 16, 16))
    assert (sub.transform.c, sub.transform.f) == (499920, 4000080)


def test_shifted_and_dict_round_trip():
    grid = Grid(CRS.from_epsg(26914), Affine(5, 0, 485900, 0, -5, 5209247), 934, 724)
    moved = grid.shifted(0.5, -1.0)
    assert (moved.transform.c, moved.transform.f) == (485902.5, 5209252.0)
    assert Grid.from_dict(grid.to_dict()) == grid
