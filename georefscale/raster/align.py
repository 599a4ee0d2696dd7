"""Put reference rasters on a target grid: GDAL warping/mosaicking, overlap checks and the
estimation of the residual sub-pixel shift between a reference and the target.

Aligned references are float32 ``(bands, rows, cols)`` in the reference's DN, NaN where no
reference covers the target. A shift ``(dx, dy)`` is in target pixels (columns, rows): the
reference is sampled at ``target pixel + (dx, dy)``, i.e. on ``grid.shifted(dx, dy)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import rasterio
import rasterio.windows
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from skimage.filters import window as taper
from skimage.registration import phase_cross_correlation

from georefscale.raster.grid import Grid
from georefscale.raster.io import reflect_window

#: side (pixels) of the central window on which the residual reference shift is estimated
SHIFT_WINDOW = 1024


def corner_bounds(transform, width: int, height: int) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a grid from its four corners: right for north-up,
    south-up, west-left and rotated geotransforms alike."""
    xs, ys = zip(*(transform * (c, r) for c in (0, width) for r in (0, height)), strict=True)
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
    shift: tuple[float, float] = (0.0, 0.0),
    bands: Sequence[int] | None = None,
    resampling: Resampling | None = None,
) -> np.ndarray:
    """Warp open rasterio datasets onto ``grid`` (moved by ``shift`` target pixels) with GDAL.

    Several references are mosaicked: the first one that covers a pixel wins. Returns float32
    ``(bands, grid.height, grid.width)`` in DN, NaN where nothing (or only nodata) covers.
    """
    dst_grid = grid.shifted(*shift) if shift != (0.0, 0.0) else grid
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
    hann = taper("hann", t.shape)
    shift, error, _ = phase_cross_correlation(
        t * hann, r * hann, upsample_factor=upsample, normalization=None
    )
    dy, dx = (0.0 - float(s) for s in shift)
    return dx, dy, float(error)


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


def scene_shift(
    target: DatasetReader, references: Sequence[DatasetReader], grid: Grid
) -> tuple[tuple[float, float], float | None]:
    """Residual shift (dx, dy) in target pixels of the open ``references`` against the open
    ``target`` (on ``grid``), by phase correlation on a central window of at most
    ``SHIFT_WINDOW`` pixels, and the correlation error; ((0, 0), None) when the references cover
    less than half of that window. Used by the on-board side and by training pairs."""
    h, w = min(grid.height, SHIFT_WINDOW), min(grid.width, SHIFT_WINDOW)
    win = rasterio.windows.Window((grid.width - w) // 2, (grid.height - h) // 2, w, h)
    ref = align(references, grid.window_grid(win))
    if np.isnan(ref).mean() > 0.5 or min(h, w) < 16:
        return (0.0, 0.0), None
    tgt = target.read(window=win).astype(np.float32)
    mask = tgt == target.nodata if target.nodata is not None else None
    dx, dy, err = estimate_shift(tgt, ref, target_mask=mask)
    return (dx, dy), err


def align_to_target(
    target: DatasetReader, references: Sequence[DatasetReader], grid: Grid | None = None
) -> np.ndarray:
    """``references`` (open datasets) warped onto ``grid`` (default: the open ``target``'s grid;
    a window of it works too), moved by the residual shift :func:`scene_shift` measures against
    ``target`` over its whole grid: the reference exactly as the on-board side and training see
    it. Float32 DN ``(bands, rows, cols)``, NaN where nothing covers."""
    full = Grid.from_dataset(target)
    shift, _ = scene_shift(target, references, full)
    return align(references, grid or full, shift=shift)


def align_window(
    references: Sequence[DatasetReader], grid: Grid, window: Window, shift: tuple[float, float]
) -> np.ndarray:
    """References warped onto a tile ``window`` of ``grid`` (moved by ``shift``), in DN.

    Where the window leaves the target raster, the reference is mirrored exactly like the target
    (:func:`~georefscale.raster.io.read_window`), so the network never sees a reflected scene
    beside an empty reference at the scene's edges.

    Args:
        references: open reference datasets (mosaicked, first wins).
        grid: the target grid.
        window: the tile window on ``grid`` (may leave it).
        shift: ``(dx, dy)`` in target pixels.

    Returns:
        float32 ``(bands, window rows, window cols)`` in DN, NaN where uncovered.
    """
    inner, rows, cols = reflect_window(window, grid.height, grid.width)
    block = align(references, grid.window_grid(inner), shift=tuple(shift))
    return block[:, rows[:, None], cols[None, :]]
