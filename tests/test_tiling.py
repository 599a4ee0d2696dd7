"""Tiler and stitcher: alignment to the factor, exact identity round trip, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from georefscale.errors import InputError
from georefscale.raster.io import reflect_index
from georefscale.tiling import Stitcher, Tiling, blend_weights, tile_seed


def _tile_view(x: np.ndarray, tile) -> np.ndarray:
    """What a reflect-padded read of ``tile.window`` returns for the in-memory raster ``x``."""
    w = tile.window
    rows = reflect_index(np.arange(w.row_off, w.row_off + w.height), x.shape[1])
    cols = reflect_index(np.arange(w.col_off, w.col_off + w.width), x.shape[2])
    return x[:, rows[:, None], cols[None, :]]


def _stitch(tiling: Tiling, bands: int, level: str, fn) -> tuple[np.ndarray, list[int]]:
    h, w = tiling.shape(level)
    out = np.full((bands, h, w), np.nan, dtype=np.float32)
    starts: list[int] = []

    def sink(rows: np.ndarray, r0: int) -> None:
        assert not starts or r0 > starts[-1]
        starts.append(r0)
        out[:, r0 : r0 + rows.shape[1]] = rows

    stitcher = Stitcher(tiling, bands, sink, level=level)
    for t in tiling.tiles(level):
        stitcher.add(t, fn(t))
    stitcher.close()
    return out, starts


sizes = st.integers(1, 90)
factors = st.sampled_from([2, 4])


@settings(max_examples=150, deadline=None)
@given(h=sizes, w=sizes, factor=factors, tile_mult=st.integers(1, 12),
       halo_mult=st.integers(0, 6), level=st.sampled_from(["hr", "lr"]))
def test_identity_tile_stitch_is_exact(h, w, factor, tile_mult, halo_mult, level):
    tiling = Tiling(h, w, factor=factor, tile=tile_mult * factor, halo=halo_mult * factor)
    rng = np.random.default_rng(h * 1000 + w)
    x = rng.normal(size=(2, *tiling.shape(level))).astype(np.float32) * 1000
    out, _ = _stitch(tiling, 2, level, lambda t: _tile_view(x, t))
    np.testing.assert_array_equal(out, x)


@settings(max_examples=60, deadline=None)
@given(h=sizes, w=sizes, factor=factors, tile_mult=st.integers(1, 10),
       halo_mult=st.integers(0, 4))
def test_windows_are_aligned_and_cores_partition(h, w, factor, tile_mult, halo_mult):
    tiling = Tiling(h, w, factor=factor, tile=tile_mult * factor, halo=halo_mult * factor)
    covered = np.zeros((tiling.lr_height * factor, tiling.lr_width * factor), int)
    for t in tiling.tiles("hr"):
        for v in (t.core.col_off, t.core.row_off, t.core.width, t.core.height,
                  t.window.col_off, t.window.row_off, t.window.width, t.window.height):
            assert v % factor == 0
        lr = tiling.tile(t.row, t.col, "lr")
        assert lr.window.col_off * factor == t.window.col_off
        assert lr.window.width * factor == t.window.width
        r, c = int(t.core.row_off), int(t.core.col_off)
        covered[r : r + int(t.core.height), c : c + int(t.core.width)] += 1
    assert (covered == 1).all()  # cores partition the padded raster: nothing dropped or doubled
    assert covered.shape == (math.ceil(h / factor) * factor, math.ceil(w / factor) * factor)


def test_block_mean_through_tiles_equals_global():
    """An LR-producing op on aligned tiles matches the same op on the whole (padded) raster."""
    f, h, w = 4, 70, 53
    tiling = Tiling(h, w, factor=f, tile=16, halo=8)
    x = np.random.default_rng(3).random((3, h, w)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 2), (0, 3)), mode="reflect")
    expected = padded.reshape(3, 18, f, 14, f).mean(axis=(2, 4))

    def block_mean(t):
        v = _tile_view(x, tiling.tile(t.row, t.col, "hr"))
        return v.reshape(3, v.shape[1] // f, f, v.shape[2] // f, f).mean(axis=(2, 4))

    out, _ = _stitch(tiling, 3, "lr", block_mean)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_stitcher_streams_rows_of_tiles():
    """Rows are handed on as soon as a row of tiles is complete; the buffer never grows."""
    tiling = Tiling(1000, 300, factor=4, tile=64, halo=8)
    x = np.random.default_rng(0).random((1, 1000, 300)).astype(np.float32)
    out = np.full_like(x, np.nan)

    def sink(rows, r0):
        out[:, r0 : r0 + rows.shape[1]] = rows

    stitcher = Stitcher(tiling, 1, sink)
    shape = stitcher._acc.shape
    for t in tiling.tiles():
        stitcher.add(t, _tile_view(x, t))
        if t.col == tiling.n_cols - 1:
            done = min(int(t.core.row_off + t.core.height) - 8, 1000)
            if t.row == tiling.n_rows - 1:
                done = 1000
            assert not np.isnan(out[:, :done]).any() and np.isnan(out[:, done:]).all()
        assert stitcher._acc.shape == shape == (1, 64 + 2 * 8, 300 + 2 * 8)
    stitcher.close()
    np.testing.assert_array_equal(out, x)


def test_tiles_out_of_order_rejected():
    tiling = Tiling(20, 20, factor=2, tile=8, halo=2)
    stitcher = Stitcher(tiling, 1, lambda rows, r0: None)
    with pytest.raises(ValueError, match="row-major"):
        stitcher.add(tiling.tile(0, 1), np.zeros((1, 12, 12)))


def test_stitcher_close_checks_completeness():
    tiling = Tiling(20, 20, factor=2, tile=8, halo=2)
    stitcher = Stitcher(tiling, 1, lambda rows, r0: None)
    stitcher.add(tiling.tile(0, 0), np.zeros((1, 12, 12)))
    with pytest.raises(ValueError, match="closed early"):
        stitcher.close()


@pytest.mark.parametrize(("tile", "halo"), [(6, 2), (0, 0), (8, 3), (8, -4)])
def test_tile_and_halo_must_be_multiples(tile, halo):
    with pytest.raises(InputError):
        Tiling(100, 100, factor=4, tile=tile, halo=halo)


def test_blend_weights_partition_of_unity():
    w = blend_weights(40, 6)
    left, right = w[:12], w[-12:]
    np.testing.assert_allclose(left + right, 1.0)
    assert (w[:3] == 0).all() and (w[12:28] == 1).all()
    assert (blend_weights(40, 6, before=False)[:12] == 1).all()
    assert np.all(np.diff(left) >= 0)


def test_tile_seed_is_deterministic_and_distinct():
    assert tile_seed(0, 1, 2) == tile_seed(0, 1, 2)
    seeds = {tile_seed(s, r, c) for s in range(3) for r in range(10) for c in range(10)}
    assert len(seeds) == 300
    assert all(0 <= s < 2**63 for s in seeds)
