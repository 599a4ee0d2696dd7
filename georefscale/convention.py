"""The model's data convention, shared by both sides: DN scale, normalised reference tiles and
the LR nodata rule.

A model works in a normalised range, ``(DN + offset) / scale`` (the card's ``scale``; the dtype's
default, :func:`~georefscale.raster.io.default_scale`, for models without one; 1.0 for float32
reflectance; the offset a Sentinel-2 L2A declares, see :func:`dn_convention`). On board and on the
ground must read tiles the same way, so the rules live here once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window

from georefscale.errors import InputError
from georefscale.raster.align import align_window
from georefscale.raster.clouds import clear_reference
from georefscale.raster.field import ShiftField
from georefscale.raster.grid import Grid
from georefscale.raster.io import DEFAULT_SCALES, default_scale

__all__ = ["REBUILD_ALPHA", "REBUILD_SEED", "block_all", "convention_problems", "dn_convention",
           "fill_nodata", "normalise", "reference_dn", "reference_scale", "reference_tile",
           "takes"]

#: The latent rule of every rebuild made on board (alpha 0: the mean reconstruction, which the
#: seed does not change): the base of a two-layer product and the per-tile mode measurement.
REBUILD_ALPHA, REBUILD_SEED = 0.0, 0


#: Integer data types that share a DN convention (Sentinel-2 L2A is also delivered as int16).
_SAME_DN = ({"uint16", "int16"},)
#: The first Sentinel-2 processing baseline whose L2A (and L1C) DN carry an offset of -1000.
OFFSET_BASELINE = (4, 0)


def takes(model, dtype: str) -> bool:
    """Whether ``model`` takes data of ``dtype``: its own dtype (``uint16`` and ``int16`` alike),
    or float32 reflectance (0-1); any dtype with a default scale for models without a dtype.

    Args:
        model: a rescaler (its ``dtype``).
        dtype: the data's dtype name.
    """
    if dtype not in DEFAULT_SCALES:
        return False
    return (model.dtype is None or dtype == model.dtype or np.dtype(dtype).kind == "f"
            or any({dtype, model.dtype} <= same for same in _SAME_DN))


def convention_problems(model, dtype: str, scale: float) -> list[str]:
    """How a product's recorded convention (``dtype``, ``scale``) does not fit ``model``.

    Args:
        model: a rescaler.
        dtype: the product's source dtype.
        scale: its DN per 1.0.

    Returns:
        The problems, for messages (empty when it fits).
    """
    if not takes(model, dtype):
        return [f"data type {model.dtype}, not {dtype}"]
    if model.scale is not None and np.dtype(dtype).kind != "f" and float(model.scale) != scale:
        return [f"scale {model.scale:g}, not {scale:g}"]
    return []


def dn_convention(ds: DatasetReader, model, name: str,
                  bands: Sequence[int] | None = None) -> tuple[float, float]:
    """How the data of ``ds`` map onto the model's normalised range: ``(DN + offset) / scale``.

    ``scale`` is DN per reflectance 1.0: the model's (its card) for integer data of its dtype
    (``uint16`` and ``int16`` alike), 1.0 for float32 reflectance (0-1), or what the bands
    declare as GDAL scale (``value = DN * s + o``: ``scale = 1 / s``). ``offset`` (DN) is what
    they declare as GDAL offset (``o / s``; STAC ``raster:bands`` offsets arrive that way) or as
    ``BOA_ADD_OFFSET`` tag (Sentinel-2 L2A from processing baseline 04.00: -1000); 0 without.
    Files that declare nothing keep today's convention: ``(model scale, 0)``.

    Args:
        ds: the open input.
        model: a rescaler (its ``name``, ``dtype``, ``scale``, ``bands`` and ``factor``).
        name: the input, for messages.
        bands: the 1-based bands used (default: all).

    Returns:
        ``(scale, offset)``: DN per 1.0 (positive) and the DN added before dividing.

    Raises:
        InputError: a dtype the model cannot take (naming the shipped models that fit), bands
            that declare different scales or offsets, a scale the model was not trained for,
            two disagreeing offsets, or a Sentinel-2 L2A of baseline 04.00 or later that
            declares no offset.
    """
    from georefscale.engine.cards import models_for

    idx = list(bands) if bands is not None else list(range(1, ds.count + 1))
    dtype = ds.dtypes[idx[0] - 1]
    kind = np.dtype(dtype).kind
    if not takes(model, dtype):
        others = models_for(len(idx), dtype, model.factor)
        raise InputError(
            f"{name}: data type {dtype}, model {model.name} expects {model.dtype or 'one of '}"
            f"{'' if model.dtype else ', '.join(DEFAULT_SCALES)} (or float32 reflectance 0-1);"
            f" shipped models for {len(idx)} bands of {dtype} at x{model.factor}: "
            + (", ".join(others) or "none"))
    base = (float(model.scale) if model.scale is not None and kind != "f"
            else default_scale(dtype))
    declared = {(float(ds.scales[i - 1]), float(ds.offsets[i - 1])) for i in idx}
    if len(declared) > 1:
        raise InputError(f"{name}: bands {', '.join(map(str, idx))} declare different scales / "
                         f"offsets {sorted(declared)}; one convention for all bands is needed")
    s, o = declared.pop()
    if not (math.isfinite(s) and s > 0 and math.isfinite(o)):
        raise InputError(f"{name}: band scale {s} / offset {o} must be finite, scale positive")
    scale, offset = base, 0.0
    if s != 1.0:
        scale = base if math.isclose(s * base, 1.0, rel_tol=1e-6) else 1.0 / s
        offset = round(o / s, 6)
    elif o != 0.0:
        offset = o
    boa = _boa_offset(ds, idx, name)
    if boa is not None:
        if kind == "f":
            raise InputError(f"{name}: float data with a BOA_ADD_OFFSET tag: give reflectance "
                             "(0-1) without it, or the DN (uint16) it applies to")
        if (s, o) != (1.0, 0.0) and offset != boa:
            raise InputError(f"{name}: the band offset ({offset:g} DN) and BOA_ADD_OFFSET "
                             f"({boa:g} DN) disagree")
        offset = boa
    elif offset == 0.0 and _needs_offset(ds):
        raise InputError(
            f"{name}: Sentinel-2 L2A of processing baseline 04.00 or later (tags "
            "PROCESSING_BASELINE / PROCESSING_LEVEL) declares no offset; its DN carry -1000: "
            "declare it as BOA_ADD_OFFSET=-1000 tag or band offset (gdal_edit.py -offset "
            "-1000), or STAC raster:bands offset")
    if model.scale is not None and kind != "f" and scale != float(model.scale):
        raise InputError(f"{name}: {scale:g} DN per reflectance 1.0 (band scale {s:g}), model "
                         f"{model.name} was trained on {float(model.scale):g}")
    return scale, offset


def _boa_offset(ds: DatasetReader, idx: Sequence[int], name: str) -> float | None:
    """The ``BOA_ADD_OFFSET`` tag of the bands (band tags first, else the dataset's)."""
    found = {ds.tags(i).get("BOA_ADD_OFFSET", ds.tags().get("BOA_ADD_OFFSET")) for i in idx}
    if found == {None}:
        return None
    try:
        values = {float(v) for v in found if v is not None}
    except ValueError as exc:
        raise InputError(f"{name}: BOA_ADD_OFFSET {sorted(map(str, found))} is not a number"
                         ) from exc
    if len(values) > 1 or None in found or not all(map(math.isfinite, values)):
        raise InputError(f"{name}: bands declare different BOA_ADD_OFFSET {sorted(values)}")
    return values.pop()


def _needs_offset(ds: DatasetReader) -> bool:
    """Whether the tags say Sentinel-2 L2A of a baseline that carries the -1000 DN offset."""
    tags = {k.upper(): v for k, v in ds.tags().items()}
    level = " ".join(tags.get(k, "") for k in ("PROCESSING_LEVEL", "PRODUCT_TYPE")).upper()
    if "2A" not in level:
        return False
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", tags.get("PROCESSING_BASELINE", ""))
    return m is not None and (int(m.group(1)), int(m.group(2))) >= OFFSET_BASELINE


def reference_scale(model, dtype: str) -> float:
    """DN per 1.0 of the references as both sides read them: the model's DN convention (no
    offset), whatever the target's, since a reference in another convention is converted to it
    when opened (:func:`~georefscale.bandmap.adapt`).

    Args:
        model: a rescaler (its ``scale``).
        dtype: the target's dtype name (for models without a scale).
    """
    return float(model.scale) if model.scale is not None else default_scale(dtype)


def normalise(ref: np.ndarray, model, dtype: str) -> np.ndarray:
    """A reference block in DN -> the model's normalised range, NaN (uncovered) -> 0."""
    return np.nan_to_num(ref / np.float32(reference_scale(model, dtype)), nan=0.0)


def reference_dn(references: Sequence[DatasetReader], grid: Grid, window: Window,
                 warp: Affine, model, dtype: str, clouds: str | None = None,
                 field: ShiftField | None = None) -> np.ndarray:
    """References warped onto the tile ``window`` (with the scene's ``warp`` and shift
    ``field``, see :func:`~georefscale.raster.align.align_window`), clouds filled
    (:func:`~georefscale.raster.clouds.clear_reference` with the recorded test ``clouds``, in
    the references' convention :func:`reference_scale`; None: as they are), in DN, NaN where
    uncovered."""
    raw = align_window(references, grid, window, warp, field)
    return clear_reference(raw, clouds, reference_scale(model, dtype))


def reference_tile(references: Sequence[DatasetReader], grid: Grid, window: Window,
                   warp: Affine, model, dtype: str, clouds: str | None = None,
                   field: ShiftField | None = None) -> np.ndarray:
    """:func:`reference_dn`, normalised, NaN -> 0."""
    return normalise(reference_dn(references, grid, window, warp, model, dtype, clouds, field),
                     model, dtype)


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
