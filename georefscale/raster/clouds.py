"""Clouds and their shadows in references: a per-pixel spectral test for 4-band Sentinel-2 and
NAIP, and the smooth fill that takes them out of the reference's detail.

(scipy is imported on first use: the tables here are light.)

A cloud is not detail of the scene under it: the network would copy its edges into the HR. So
reference pixels under clouds (and the dark pixels of their shadows) are treated as missing:
left out of co-registration (:func:`~georefscale.raster.coreg.coregister`) and, in the tiles,
replaced by a smooth fill of the clear pixels around them (:func:`clear_reference`), which has no
detail for the network to take. Filling with 0, as uncovered pixels are, costs 2-6 dB on clear
scenes (the network reads the hole's edges as detail), the smooth fill nothing.

The test (kind ``"s2"``: bands B02 B03 B04 B08, reflectance = DN / scale, Sentinel-2 L1C or L2A
x 10000; kind ``"naip"``: red green blue nir, brightness = DN / scale, 0..1), per pixel with
``b, g, r, n`` the four bands and ``vis = (b + g + r) / 3``:

* **cloud**: bright (``b >= BRIGHT`` and ``vis >= 0.9 * BRIGHT``: 0.25 for Sentinel-2 TOA
  reflectance, 0.7 for NAIP brightness), white (every visible band within :data:`WHITENESS`
  (15 %) of ``vis``) and not vegetation (``n < 1.5 r``); then an opening by a square of side
  ``2 * OPEN_RADIUS + 1`` (9 pixels), on the window mirrored at its edges: clouds are wider than
  that, bright roofs, roads and surf rarely are.
* **shadow**: dark (``n < SHADOW_NIR`` and ``vis < SHADOW_VIS``: 0.12 and 0.06 for Sentinel-2,
  0.2 and 0.15 for NAIP), not water (``n >= 0.75 vis``), within :data:`SHADOW_PX` (60) pixels
  of a cloud pixel of the same window (a shadow falls beside its cloud; dark land far from
  clouds stays).

Measured on the sample data: the Slovenia Sentinel-2 dates flag 0 % (clear 2015-07-11, -08-30,
-09-09; hazy 2015-07-31, whose thin haze is not a cloud to this test) and 64.5 % of the overcast
2015-08-20 (s2cloudless: 97 %); the 38 OSCD scenes 0-0.38 % (bright roofs in Paris); the ten NAIP
dates 0-0.02 %. The catalog's cloud cover of a record without a cloud tag is this test's
percentage (:func:`cloud_cover`), so ranking and masking mean the same by "cloudy".

The mask is a function of the window's warped pixels only, so on board and on the ground the
same tile gets the same mask and the same fill.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.enums import Resampling
from rasterio.io import DatasetReader

__all__ = ["KINDS", "clear_reference", "cloud_bands", "cloud_cover", "cloud_kind", "cloud_mask"]

#: the spectral tests: band names in order (first word of a band description, lower case)
KINDS = {"s2": ("b02", "b03", "b04", "b08"), "naip": ("red", "green", "blue", "nir")}
#: smallest blue and mean visible reflectance (brightness for NAIP) of a cloud
BRIGHT = {"s2": 0.25, "naip": 0.7}
#: largest relative difference of a visible band from the visible mean for a cloud (white)
WHITENESS = 0.15
#: a cloud's near infrared is below this times its red (vegetation is far above)
NIR_RED = 1.5
#: the opening's radius (pixels): clouds narrower than 2 * OPEN_RADIUS + 1 are not clouds
OPEN_RADIUS = 4
#: shadows: near infrared and visible mean below these (reflectance / brightness) ...
SHADOW_NIR = {"s2": 0.12, "naip": 0.2}
SHADOW_VIS = {"s2": 0.06, "naip": 0.15}
#: ... with a near infrared of at least this times the visible mean (water's is far below) ...
WATER_NIR = 0.75
#: ... within this many pixels of a cloud pixel
SHADOW_PX = 60
#: scale (pixels) of the Gaussian of the smooth fill
FILL_SIGMA = 16.0
#: weight of the window's clear mean in the fill (against the Gaussian weight of the clear
#: pixels around, 0..1): the fill goes over to that mean where no clear pixel is near
FILL_PRIOR = 1e-3
#: largest side read to estimate a cloud cover
COVER_SIDE = 512


def cloud_kind(names: Sequence[str | None]) -> str | None:
    """The spectral test for bands named ``names`` (descriptions or model band names; the first
    word counts, case-insensitive), or None when they are not the four bands of a kind, in its
    order."""
    found = cloud_bands(names)
    return found[0] if found is not None and found[1] == (1, 2, 3, 4) else None


def cloud_bands(names: Sequence[str | None]) -> tuple[str, tuple[int, ...]] | None:
    """The spectral test whose four bands are among ``names`` (e.g. 13 Sentinel-2 bands), and
    their 1-based indexes in the kind's order; None when no kind's bands are all there."""
    words = [(n or "").split()[0].lower() if (n or "").split() else "" for n in names]
    for kind, bands in KINDS.items():
        if all(b in words for b in bands):
            return kind, tuple(words.index(b) + 1 for b in bands)
    return None


def cloud_mask(ref: np.ndarray, kind: str, scale: float, offset: float = 0.0) -> np.ndarray:
    """Clouds and their shadows in a reference window.

    Args:
        ref: float32 ``(4, rows, cols)`` in DN, bands in the order of :data:`KINDS` ``[kind]``,
            NaN where uncovered (never cloudy).
        kind: ``"s2"`` or ``"naip"``.
        scale: DN per reflectance (brightness) 1.0.
        offset: DN added before dividing by ``scale`` (Sentinel-2 L2A: -1000).

    Returns:
        bool ``(rows, cols)``: True on clouds and their shadows.
    """
    from scipy import ndimage

    a = (np.asarray(ref, np.float32) + np.float32(offset)) / np.float32(scale)
    first, second, third, n = a
    b, g, r = (first, second, third) if kind == "s2" else (third, second, first)
    vis = (b + g + r) / 3
    with np.errstate(invalid="ignore", divide="ignore"):
        white = np.max(np.abs(np.stack([b, g, r]) - vis), axis=0) < WHITENESS * vis
        cloud = (b >= BRIGHT[kind]) & (vis >= 0.9 * BRIGHT[kind]) & white & (n < NIR_RED * r)
    if not cloud.any():
        return cloud
    k = OPEN_RADIUS
    padded = np.pad(cloud, k, mode="reflect") if min(cloud.shape) > k else np.pad(cloud, k)
    cloud = ndimage.binary_opening(padded, np.ones((2 * k + 1, 2 * k + 1), bool))[k:-k, k:-k]
    if not cloud.any():
        return cloud
    near = ndimage.distance_transform_edt(~cloud) <= SHADOW_PX
    with np.errstate(invalid="ignore"):
        shadow = (near & (n < SHADOW_NIR[kind]) & (vis < SHADOW_VIS[kind])
                  & (n >= WATER_NIR * vis))
    return cloud | shadow


def clear_reference(ref: np.ndarray, kind: str | None, scale: float,
                    offset: float = 0.0) -> np.ndarray:
    """``ref`` with its clouds and shadows (:func:`cloud_mask`) replaced by a smooth fill: the
    Gaussian (:data:`FILL_SIGMA`) average of the clear, covered pixels around them, going over
    to the mean of the window's clear pixels far from any (:data:`FILL_PRIOR`); NaN when the
    window has no clear pixel (and where ``ref`` is NaN).

    Args:
        ref: float32 ``(bands, rows, cols)`` in DN, NaN where uncovered.
        kind: the spectral test, or None (``ref`` returned as it is).
        scale: DN per reflectance 1.0.
        offset: DN added before dividing by ``scale``.

    Returns:
        float32 ``(bands, rows, cols)`` in DN (``ref`` itself when nothing is cloudy).
    """
    from scipy import ndimage

    if kind is None or ref.shape[0] != 4:
        return ref
    mask = cloud_mask(ref, kind, scale, offset)
    if not mask.any():
        return ref
    clear = ~mask & np.isfinite(ref).all(axis=0)
    out = ref.copy()
    if not clear.any():
        out[:, mask] = np.nan
        return out
    weight = ndimage.gaussian_filter(clear.astype(np.float64), FILL_SIGMA, mode="reflect")
    for band in range(ref.shape[0]):
        values = np.where(clear, ref[band], 0.0).astype(np.float64)
        total = ndimage.gaussian_filter(values, FILL_SIGMA, mode="reflect")
        prior = values[clear].mean()
        fill = (total + FILL_PRIOR * prior) / (weight + FILL_PRIOR)
        out[band][mask] = fill[mask]
    return out


def cloud_cover(ds: DatasetReader, kind: str, scale: float, offset: float = 0.0,
                bands: Sequence[int] = (1, 2, 3, 4)) -> float:
    """Percentage of the valid pixels of ``ds`` that :func:`cloud_mask` calls cloud or shadow,
    on a read decimated to at most :data:`COVER_SIDE` pixels a side (average resampling).

    Args:
        ds: the open raster.
        kind: the spectral test.
        scale: DN per reflectance 1.0.
        offset: DN added before dividing by ``scale``.
        bands: its 1-based bands in the order of the kind.

    Returns:
        0..100.
    """
    step = max(1, -(-max(ds.width, ds.height) // COVER_SIDE))
    shape = (len(bands), max(1, ds.height // step), max(1, ds.width // step))
    arr = ds.read(list(bands), out_shape=shape, resampling=Resampling.average,
                  masked=True).astype(np.float32)
    valid = ~np.ma.getmaskarray(arr).any(axis=0)
    if not valid.any():
        return 0.0
    mask = cloud_mask(np.ma.filled(arr, np.nan), kind, scale, offset)
    return float(100.0 * (mask & valid).sum() / valid.sum())
