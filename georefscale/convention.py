"""The model's data convention, shared by both sides: DN scale, normalised reference tiles and
the LR nodata rule.

A model works in a normalised range, ``DN / scale`` (the card's ``scale``; the dtype's default,
:func:`~georefscale.raster.io.default_scale`, for models without one). On board and on the ground
must read tiles the same way, so the rules live here once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window

from georefscale.errors import InputError
from georefscale.raster.align import align_window
from georefscale.raster.grid import Grid
from georefscale.raster.io import default_scale

__all__ = ["block_all", "dn_scale", "fill_nodata", "normalise", "reference_tile"]


def dn_scale(model, dtype: str, name: str) -> float:
    """DN per 1.0 of ``model`` for data of ``dtype``.

    Args:
        model: a rescaler (its ``dtype`` and ``scale``).
        dtype: the data's dtype name.
        name: the file, for messages.

    Raises:
        InputError: the model expects another dtype, or the dtype has no default scale.
    """
    if model.dtype is not None and model.dtype != dtype:
        raise InputError(f"{name}: data type {dtype}, model {model.name} expects {model.dtype}")
    try:
        return float(model.scale) if model.scale is not None else default_scale(dtype)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from exc


def normalise(ref: np.ndarray, model, dtype: str) -> np.ndarray:
    """A reference block in DN -> the model's normalised range, NaN (uncovered) -> 0."""
    scale = float(model.scale) if model.scale is not None else default_scale(dtype)
    return np.nan_to_num(ref / np.float32(scale), nan=0.0)


def reference_tile(references: Sequence[DatasetReader], grid: Grid, window: Window,
                   warp: Affine, model, dtype: str) -> np.ndarray:
    """References warped onto the tile ``window`` (with the scene's ``warp``, see
    :func:`~georefscale.raster.align.align_window`), normalised, NaN -> 0."""
    return normalise(align_window(references, grid, window, warp), model, dtype)


def block_all(mask: np.ndarray, f: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, H/f, W/f)``: True where all f x f pixels are True."""
    c, h, w = mask.shape
    return mask.reshape(c, h // f, f, w // f, f).all(axis=(2, 4))


def fill_nodata(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill the masked samples of a tile with the nearest valid sample of the same band.

    The network sees no hard 0-valued holes, so a hole's edge does not ring into the valid
    pixels around it; the masked samples are set back to nodata on output.

    Args:
        x: float32 ``(bands, rows, cols)``.
        mask: True where ``x`` is nodata (same shape).

    Returns:
        ``x`` filled (a new array when anything was filled; bands with no valid sample keep
        their values).
    """
    if not mask.any():
        return x
    from scipy.ndimage import distance_transform_edt

    out = x.copy()
    for b in range(x.shape[0]):
        m = mask[b]
        if m.any() and not m.all():
            idx = distance_transform_edt(m, return_distances=False, return_indices=True)
            out[b] = x[b][idx[0], idx[1]]
    return out
