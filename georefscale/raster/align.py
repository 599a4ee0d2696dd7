"""Put reference rasters on a target grid: GDAL warping/mosaicking, overlap checks and the
estimation of the residual sub-pixel shift between a reference and the target in one window.

Aligned references are float32 ``(bands, rows, cols)`` in the reference's DN, NaN where no
reference covers the target. A warp is an affine map of the target's pixel coordinates (columns,
rows): the reference is sampled at ``warp * (col, row)``, i.e. GDAL warps it onto the grid whose
transform is ``grid.transform * warp`` (one resampling). A shift ``(dx, dy)`` is the warp
``Affine.translation(dx, dy)``; :mod:`georefscale.raster.coreg` measures the warp. A shift field
(:class:`~georefscale.raster.field.ShiftField`) on top of it is applied block by block, each
block warped with its own affine, still in one resampling.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from skimage.filters import window as taper
from skimage.registration import phase_cross_correlation

from georefscale.raster.field import ShiftField
from georefscale.raster.grid import Grid
from georefscale.raster.io import reflect_window


def corner_bounds(transform, width: int, height: int) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a grid from its four corners: right for north-up,
    south-up, west-left and rotated geotransforms alike."""
    xs, ys = zip(*(transform @ (c, r) for c in (0, width) for r in (0, height)), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _bounds_in(ds: DatasetReader, crs) -> tuple[float, float, float, float]:
    return transform_bounds(ds.crs, crs, *corner_bounds(ds.transform, ds.width, ds.height),
                            densify_pts=21)


def overlaps(ds: DatasetReader, grid: Grid) -> bool:
    """Whether the open raster ``ds`` and ``grid`` share some area (compared in grid's CRS)."""
    left, bottom, right, top = _bounds_in(ds, grid.crs)
    gl, gb, gr, gt = corner_bounds(grid.transform, grid.width, grid.height)
    return left < gr and right > gl and bottom < gt and top > gb


def _resampling(ds: DatasetReader, grid: Grid) -> Resampling:
    """Average when the reference is much finer than the target, cubic otherwise."""
    left, bottom, right, top = _bounds_in(ds, grid.crs)
    ref_res = min((right - left) / ds.width, (top - bottom) / ds.height)
    return Resampling.average if ref_res < 0.5 * min(grid.res) else Resampling.cubic


def align(
    references: Sequence,
    grid: Grid,
    *,
    warp: Affine | None = None,
    bands: Sequence[int] | None = None,
    resampling: Resampling | None = None,
) -> np.ndarray:
    """Warp open rasterio datasets onto ``grid`` with GDAL, in one resampling.

    Several references are mosaicked: the first one that covers a pixel wins.

    Args:
        references: open datasets (any CRS).
        grid: the destination grid.
        warp: the reference is sampled at ``warp * (col, row)`` of ``grid``'s pixels (None: the
            identity).
        bands: 1-based band indexes (default: all).
        resampling: GDAL resampling (default: average for much finer references, else cubic).

    Returns:
        float32 ``(bands, grid.height, grid.width)`` in DN, NaN where nothing (or only nodata)
        covers.
    """
    dst_grid = grid if warp is None or warp.is_identity else Grid(
        grid.crs, grid.transform @ warp, grid.width, grid.height)
    n = len(bands) if bands is not None else references[0].count
    out = np.full((n, grid.height, grid.width), np.nan, dtype=np.float32)
    for ds in references:
        if not overlaps(ds, dst_grid):
            continue
        indexes = list(bands) if bands is not None else list(range(1, ds.count + 1))
        part = np.full_like(out, np.nan)
        with rasterio.Env(GDAL_NUM_THREADS=1):
            reproject(
                source=rasterio.band(ds, indexes),
                destination=part,
                src_nodata=ds.nodata,
                dst_transform=dst_grid.transform,
                dst_crs=dst_grid.crs,
                dst_nodata=np.nan,
                resampling=resampling or _resampling(ds, dst_grid),
            )
        empty = np.isnan(out)
        out[empty] = part[empty]
        if not np.isnan(out).any():
            break
    return out


def estimate_shift(
    target: np.ndarray,
    reference: np.ndarray,
    *,
    target_mask: np.ndarray | None = None,
    upsample: int = 20,
) -> tuple[float, float, float]:
    """Residual shift ``(dx, dy)`` in pixels to apply to ``reference`` (already aligned on the
    target's grid, NaN = uncovered) so that it matches ``target``, and the phase-correlation
    error (0 = perfect match, 1 = no correlation).

    Uses :func:`skimage.registration.phase_cross_correlation` with ``upsample`` x sub-pixel
    precision on the band-averaged, per-band standardised images under a Hann taper.
    """
    t = _standardise(target, target_mask)
    r = _standardise(reference, np.isnan(reference))
    if not (t.any() and r.any()):  # a flat or empty image: nothing to correlate
        return 0.0, 0.0, 1.0
    hann = _hann(t.shape)
    shift, error, _ = phase_cross_correlation(
        t * hann, r * hann, upsample_factor=upsample, normalization=None
    )
    dy, dx = (0.0 - float(s) for s in shift)
    return dx, dy, float(error)


@functools.lru_cache(maxsize=8)
def _hann(shape: tuple[int, int]) -> np.ndarray:
    """The (radial) Hann taper of ``shape``, made once per shape (read-only)."""
    w = taper("hann", shape)
    w.flags.writeable = False
    return w


def _standardise(img: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Mean over bands of each band standardised on its valid pixels; invalid pixels -> 0."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = img[None]
    bad = np.zeros(img.shape, dtype=bool) if mask is None else np.broadcast_to(mask, img.shape)
    bad = bad | ~np.isfinite(img)
    out = np.zeros(img.shape[1:])
    for band, b in zip(img, bad, strict=True):
        v = band[~b]
        if v.size < 2 or v.std() == 0:
            continue
        z = (band - v.mean()) / v.std()
        out += np.where(b, 0.0, z)
    return out / len(img)


def window_warp(warp: Affine, col_off: float, row_off: float) -> Affine:
    """``warp`` (target pixel coordinates) in the pixel coordinates of a window at
    ``(col_off, row_off)``: ``T(-off) * warp * T(off)``, computed so that a translation stays
    exactly the same numbers (the earlier versions' shifted window grid, bit for bit).

    Args:
        warp: the reference warp of the whole grid.
        col_off: the window's column offset (target pixels).
        row_off: its row offset.

    Returns:
        The warp of the window's grid.
    """
    a, b, c, d, e, f = warp[:6]
    return Affine(a, b, c + ((a - 1) * col_off + b * row_off),
                  d, e, f + (d * col_off + (e - 1) * row_off))


def align_to_target(
    target: DatasetReader, references: Sequence[DatasetReader], grid: Grid | None = None
) -> np.ndarray:
    """``references`` (open datasets) warped onto ``grid`` (default: the open ``target``'s grid;
    a window of it works too) with the warp :func:`~georefscale.raster.coreg.coregister`
    measures against ``target`` over its whole grid: the reference exactly as the on-board side
    and training see it. Float32 DN ``(bands, rows, cols)``, NaN where nothing covers."""
    from georefscale.raster.coreg import coregister

    full = Grid.from_dataset(target)
    coreg = coregister(target, references, full)
    if grid is None:
        grid, col, row = full, 0, 0
    else:
        col, row = (round(v) for v in ~full.transform @ (grid.transform.c, grid.transform.f))
    if coreg.field is not None:
        return align_field(references, full, Window(col, row, grid.width, grid.height),
                           coreg.warp, coreg.field)
    return align(references, grid, warp=window_warp(coreg.warp, col, row))


def align_field(references: Sequence[DatasetReader], grid: Grid, window: Window, warp: Affine,
                field: ShiftField) -> np.ndarray:
    """References warped onto ``window`` of ``grid`` with ``warp`` plus the shift ``field``: each
    :data:`~georefscale.raster.field.BLOCK` block of the target with its own affine
    (:meth:`~georefscale.raster.field.ShiftField.block_warps`), in one resampling.

    Args:
        references: open reference datasets (mosaicked, first wins).
        grid: the target grid.
        window: integer window inside ``grid`` (target pixels).
        warp: the scene's global warp (target pixel coordinates).
        field: the scene's shift field on top of it.

    Returns:
        float32 ``(bands, window rows, window cols)`` in DN, NaN where uncovered.
    """
    c0, r0 = int(window.col_off), int(window.row_off)
    out = np.full((references[0].count, int(window.height), int(window.width)), np.nan,
                  dtype=np.float32)
    for part, local in field.block_warps(warp, window):
        col, row = int(part.col_off), int(part.row_off)
        out[:, row - r0:row - r0 + int(part.height), col - c0:col - c0 + int(part.width)] = align(
            references, grid.window_grid(part), warp=window_warp(local, col, row))
    return out


def align_window(
    references: Sequence[DatasetReader], grid: Grid, window: Window, warp: Affine,
    field: ShiftField | None = None,
) -> np.ndarray:
    """References warped onto a tile ``window`` of ``grid`` (with the scene's ``warp``), in DN.

    Where the window leaves the target raster, the reference is mirrored exactly like the target
    (:func:`~georefscale.raster.io.read_window`), so the network never sees a reflected scene
    beside an empty reference at the scene's edges.

    Args:
        references: open reference datasets (mosaicked, first wins).
        grid: the target grid.
        window: the tile window on ``grid`` (may leave it).
        warp: the scene's reference warp in ``grid``'s pixel coordinates (see
            :mod:`georefscale.raster.coreg`); the same numbers give the same tile on both sides.
        field: the scene's shift field on top of ``warp`` (None: none; :func:`align_field`).

    Returns:
        float32 ``(bands, window rows, window cols)`` in DN, NaN where uncovered.
    """
    inner, rows, cols = reflect_window(window, grid.height, grid.width)
    if field is not None:
        block = align_field(references, grid, inner, warp, field)
    else:
        block = align(references, grid.window_grid(inner),
                      warp=window_warp(warp, inner.col_off, inner.row_off))
    return block[:, rows[:, None], cols[None, :]]
