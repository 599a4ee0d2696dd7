"""Rate-distortion of the two-layer product (``georefscale rd --layered``).

On each site, as :mod:`georefscale.evaluation.ratedistortion` does for the other methods (whole
target scene, reference aligned and shift-corrected, LR quantised to the source dtype), with the
RefScale model:

* **layered**: the LR coded with JPEG 2000 at each base rate, rebuilt as the ground does for the
  two-layer product (alpha 0, seed 0), the residual to the target coded as the product codes
  it (in decorrelated bands, :class:`~georefscale.bandcoding.BandTransform`) with JPEG 2000 at each
  enhancement rate; the curve is the upper envelope (best PSNR at each total rate) of all the
  (base, enhancement) pairs, up to the lossless residual.
* **near-lossless** for each E: the fewest bytes over the base rates of base + the residual
  quantised with step ``2E + 1`` coded losslessly as the product codes it (in predicted bands,
  :class:`~georefscale.bandcoding.BandPrediction`), against two direct baselines: the HR coded
  with lossless JPEG 2000 (which meets every E), and the HR quantised the same way and coded
  losslessly.
* **savings** against direct JPEG 2000 at fixed PSNRs (bits interpolated in ``ln(rate)``
  between measured points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rasterio import Affine

from georefscale import codecs
from georefscale.bandcoding import BandTransform, fits_int16, predicted_bands
from georefscale.convention import REBUILD_ALPHA, REBUILD_SEED
from georefscale.layers import psnr, quantise

__all__ = ["BD_RANGE", "FIXED_PSNR", "MAX_ERRORS", "envelope", "layered_site", "savings_at"]

#: Base-layer rates swept (JPEG 2000 coded size in % of the raw LR); the lowest put the base layer
#: alone below 30 dB on the test cities, so the curve covers :data:`BD_RANGE`; denser at 1-4 %,
#: where the rate search's choices for 36-44 dB fall.
BASE_RATES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 8.0, 16.0, 32.0, 64.0)
#: Enhancement-layer rates swept (% of the raw 16-bit residual): 25 rates from 0.2 to 40 %, 1.25x
#: apart, to 3 significant digits (a grid 1.7-2x apart, interpolated between, dipped below direct
#: coding where the product does not).
ENH_RATES = tuple(float(f"{0.2 * 200 ** (k / 24):.3g}") for k in range(25))
#: PSNRs (dB) at which the bit savings against direct coding are reported.
FIXED_PSNR = (36.0, 40.0, 44.0)
#: The PSNR range (dB) the product is held to: a BD-rate is also reported over it alone.
BD_RANGE = (30.0, 44.0)
#: Bounds (DN) of the near-lossless comparison.
MAX_ERRORS = (0, 5, 10, 25, 50)


def envelope(points: Sequence[Sequence[float]]) -> list[list[float]]:
    """The upper envelope of ``[bpp, psnr]`` points: sorted by rate, each better than all
    cheaper ones."""
    out: list[list[float]] = []
    for r, p in sorted(points):
        if not out or p > out[-1][1]:
            out.append([r, p])
    return out


def savings_at(direct: Sequence[Sequence[float]], test: Sequence[Sequence[float]],
               psnr_db: float) -> float | None:
    """``1 - bits(test) / bits(direct)`` at ``psnr_db`` (rates interpolated in ``ln(rate)`` on
    each envelope); None when either curve does not reach it."""
    def bits(curve: Sequence[Sequence[float]]) -> float | None:
        env = envelope(curve)
        for (r0, p0), (r1, p1) in zip(env, env[1:], strict=False):
            if p0 <= psnr_db <= p1:
                t = (psnr_db - p0) / (p1 - p0)
                return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
        return None

    a, b = bits(direct), bits(test)
    return None if a is None or b is None else 1 - b / a


def layered_site(model, target: np.ndarray, valid: np.ndarray, ref: np.ndarray | None,
                 peak: float, profile: dict) -> dict | None:
    """The layered curve, near-lossless table and its baselines for one site.

    Args:
        model: the RefScale rescaler.
        target: the target scene, DN ``(bands, rows, cols)`` (cropped to the factor).
        valid: its valid pixels ``(rows, cols)``.
        ref: the aligned reference (float32 DN) or None.
        peak: the PSNR peak.
        profile: ``crs`` / ``transform`` of the target.

    Returns:
        ``{"layered": [[bpp, psnr], ...], "points": all pairs, "near_lossless": {E: {...}}}``,
        or None where the product cannot code the scene: at every base rate the residual leaves
        the 16 bits of the enhancement layer (the product refuses such a scene too).
    """
    from georefscale.engine.run import downscale, upscale

    dtype = str(target.dtype)
    info = np.iinfo(dtype)
    scale = float(model.scale or peak)
    mask = np.broadcast_to(valid, target.shape)
    r = None if not model.uses_reference else np.nan_to_num(ref, nan=0.0) / np.float32(scale)
    y = downscale(model, target.astype(np.float32) / np.float32(scale), r)
    lr = np.clip(np.rint(y * np.float32(scale)), info.min, info.max).astype(dtype)
    lr_profile = {**profile, "transform": profile["transform"] @ Affine.scale(model.factor)}

    def bpp(nbytes: int) -> float:
        return codecs.bits_per_pixel(nbytes, target.shape)

    points, near = [], {e: None for e in MAX_ERRORS}
    for q1 in BASE_RATES:
        base = codecs.encode(lr, "jpeg2000", q1, profile=lr_profile)
        decoded = codecs.decode(base).astype(np.float32) / np.float32(scale)
        hr = upscale(model, decoded, r, REBUILD_ALPHA, REBUILD_SEED)
        rebuild = np.clip(np.rint(hr.astype(np.float64) * scale), info.min, info.max)
        residual = np.where(mask, target.astype(np.int64) - rebuild.astype(np.int64), 0)
        if not fits_int16(residual):
            continue
        points.append([bpp(len(base)), psnr(target, rebuild, mask, peak)])
        transform = BandTransform.fit(residual, mask) if target.shape[0] > 1 else None
        coded = (residual if transform is None else transform.forward(residual))
        # the product refuses a lossy enhancement layer outside 16 bits; near-lossless below
        # codes the residual untransformed, so its points are still measured
        for q2 in ENH_RATES if fits_int16(coded) else ():  # coded as the product codes it
            enh = codecs.encode(coded.astype(np.int16), "jpeg2000", q2, profile=profile,
                                colour_transform=transform is None)
            decoded = codecs.decode(enh)
            got = rebuild + (decoded if transform is None else transform.inverse(decoded))
            points.append([bpp(len(base) + len(enh)), psnr(target, got, mask, peak)])
        for e in MAX_ERRORS:
            # within 16 bits: |quantised| <= |residual|, checked above; predicted_bands keeps it
            bands, prediction = predicted_bands(quantise(residual, 2 * e + 1), mask)
            n = len(base) + len(codecs.encode(bands.astype(np.int16), "jpeg2000-lossless",
                                              profile=profile,
                                              colour_transform=prediction is None))
            if near[e] is None or n < near[e]["layered_bytes"]:
                near[e] = {"layered_bytes": n, "base_rate": q1}
    if not points:
        return None
    lossless = len(codecs.encode(target, "jpeg2000-lossless", profile=profile))
    for e, row in near.items():
        step = 2 * e + 1
        quantised = np.rint(target / step).astype(dtype) if e else target
        direct_q = len(codecs.encode(quantised, "jpeg2000-lossless", profile=profile))
        row.update(direct_lossless_bytes=lossless, direct_quantised_bytes=direct_q,
                   layered_bpp=bpp(row["layered_bytes"]),
                   saving_vs_lossless=1 - row["layered_bytes"] / lossless,
                   saving_vs_quantised=1 - row["layered_bytes"] / direct_q)
    return {"layered": envelope(points), "points": points,
            "near_lossless": {str(e): v for e, v in near.items()}}
