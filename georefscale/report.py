"""What products hold and how good they are: :func:`describe_lr` and :func:`reconstruction_error`.

One rule for a valid pixel everywhere: a target pixel is valid unless it equals the target's
nodata value or internal mask (:func:`~georefscale.raster.io.read_masked`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from georefscale.metrics import ErrorTally, SsimTally, strips
from georefscale.product import LRInfo
from georefscale.raster.io import georefscale_tags, open_raster, read_masked

__all__ = ["STRIP_PIXELS", "describe_lr", "reconstruction_error"]

#: Pixels per band of the strips :func:`reconstruction_error` reads (full-width rows).
STRIP_PIXELS = 1 << 20

PathLike = str | os.PathLike


def describe_lr(lr: PathLike) -> dict:
    """What an LR product file holds (for summaries and ``--json``).

    Args:
        lr: the LR product (GeoTIFF or coded file).

    Returns:
        ``lr``, ``bytes``, ``bits_per_pixel`` (per HR pixel, all bands together), ``codec``,
        ``quality``, ``model``, ``factor``, ``scale`` (DN per 1.0), ``offset`` (DN added before
        scaling), ``references`` (ids),
        ``shift_px``, ``coregistration`` (the reference warp: ``model`` none / translation /
        affine, ``matrix`` (6 numbers, target pixels; None for none), ``rms_px``, windows used
        and ``rejected``, ``field``: None, or the local shift field's ``spacing_px``,
        ``nodes`` (rows, cols), ``max_px``, ``rms_px`` and ``windows``), ``tiles``,
        ``fallback_model``, ``fallback_tiles`` (count),
        ``bicubic_tiles`` (count); when tiles were decided by measurement, ``reference_gain_db``
        (``median``, ``min``, ``max`` over the tiles where the reference was tried, dB); for the
        base of a two-layer product also ``layers``, ``base_bytes``, ``enhancement``,
        ``enhancement_bytes`` (``bytes`` counts both files). A directly coded product
        (:mod:`georefscale.direct`) gives ``product`` ``direct``, ``lr``, ``bytes``,
        ``bits_per_pixel``, ``codec``, ``quality``, ``max_error`` (DN, near-lossless only),
        ``scale``, ``offset``, ``model`` None, ``factor`` 1 and no references.

    Raises:
        InputError: not a georefscale product.
    """
    import georefscale.codecs as codecs
    from georefscale.direct import is_direct, read_direct

    path = Path(lr)
    if is_direct(path):
        d = read_direct(path)
        with open_raster(path, "product") as ds:
            shape = (ds.height, ds.width)
        nbytes = path.stat().st_size
        return {"lr": str(path), "product": "direct", "bytes": nbytes,
                "bits_per_pixel": codecs.bits_per_pixel(nbytes, shape),
                "codec": "jpeg2000" if d.quality is not None else "jpeg2000-lossless",
                "quality": d.quality, "max_error": d.max_error, "model": None, "factor": 1,
                "scale": d.scale, "offset": d.offset, "references": []}
    with open_raster(path, "LR product") as ds:
        info = LRInfo.from_dataset(ds, path)
        tags = georefscale_tags(ds)
    nbytes = path.stat().st_size
    layers = {}
    if info.layers == 2:
        from georefscale.layers import enhancement_path

        enh = enhancement_path(path)
        enh_bytes = enh.stat().st_size if enh.is_file() else 0
        layers = {"layers": 2, "base_bytes": nbytes, "enhancement": str(enh),
                  "enhancement_bytes": enh_bytes}
        nbytes += enh_bytes
    return {
        "lr": str(path),
        "bytes": nbytes,
        "bits_per_pixel": codecs.bits_per_pixel(
            nbytes, (info.target_grid.height, info.target_grid.width)
        ),
        "codec": tags.get("CODEC") or "geotiff",
        "quality": float(tags["QUALITY"]) if tags.get("QUALITY") else None,
        "model": info.model,
        "factor": info.factor,
        "scale": info.scale,
        "offset": info.offset,
        "references": list(info.reference_ids),
        "shift_px": list(info.shift),
        "coregistration": {"model": info.coreg.kind,
                           "matrix": list(info.coreg.matrix) if info.coreg.kind != "none"
                           else None,
                           "rms_px": info.coreg.rms, "windows": info.coreg.windows,
                           "rejected": info.coreg.rejected, "field": _field(info)},
        "tiles": len(info.tiling()),
        "fallback_model": info.fallback_model,
        "fallback_tiles": len(info.fallback_tiles),
        "bicubic_tiles": len(info.bicubic_tiles),
        **_gains(info),
        **layers,
    }


def _field(info: LRInfo) -> dict | None:
    """The shift field on top of the reference warp (:mod:`georefscale.raster.field`): node
    spacing and grid, the largest displacement, and the residual it leaves (target pixels)."""
    f = info.coreg.field
    if f is None:
        return None
    size = np.hypot(np.asarray(f.dx), np.asarray(f.dy))
    return {"spacing_px": f.spacing, "nodes": list(size.shape), "max_px": float(size.max()),
            "rms_px": f.rms, "windows": f.windows}


def _gains(info: LRInfo) -> dict:
    tried = [g for g in info.tile_gains_db if not math.isnan(g)]
    if not info.tile_gains_db:
        return {}
    if not tried:
        return {"reference_gain_db": None}
    return {"reference_gain_db": {"median": float(np.median(tried)), "min": min(tried),
                                  "max": max(tried), "tiles": len(tried)}}


def reconstruction_error(target: PathLike, hr: PathLike, scale: float,
                         offset: float = 0.0) -> dict:
    """RMSE, PSNR and SSIM of ``hr`` against ``target``, pooled and per band, and the mean
    spectral angle, computed strip by strip (:class:`~georefscale.metrics.ErrorTally`,
    :class:`~georefscale.metrics.SsimTally`; memory: a strip of about
    :data:`STRIP_PIXELS` pixels per band).

    Args:
        target: the target GeoTIFF.
        hr: the HR reconstruction on the same grid.
        scale: the peak (DN per 1.0 of the model, e.g. 10000 for Sentinel-2 uint16).
        offset: the DN offset of the data (``(DN + offset) / scale`` is reflectance), for the
            spectral angle.

    Returns:
        ``rmse_dn`` (DN) and ``psnr_db`` (dB, ``inf`` for an exact reconstruction) pooled over
        the target's valid samples of all bands; ``ssim``: the mean of the per-band SSIMs;
        ``bands``: per band ``rmse_dn``, ``psnr_db`` and ``ssim`` (skimage's 7x7 SSIM with data
        range ``scale``, as :func:`~georefscale.metrics.ssim_bands` gives for the whole images,
        where an invalid target sample counts as equal in both: the target's value, 0 for NaN;
        None for images under 7x7 pixels); ``spectral_angle_deg``: the mean angle between
        target and HR band vectors over pixels valid in every band (degrees; None with one
        band).
    """
    with open_raster(target, "target") as t, open_raster(hr, "HR product") as h:
        tally = ErrorTally(t.count)
        structure = SsimTally(t.count, t.height, scale)
        rows = max(STRIP_PIXELS // t.width, 1)
        for (start, end), (top, bottom) in strips(t.height, rows, SsimTally.HALO):
            win = Window(0, top, t.width, bottom - top)
            raw, invalid = read_masked(t, win)
            a, b = raw.astype(np.float64), h.read(window=win).astype(np.float64)
            own = slice(start - top, end - top)
            tally.add(a[:, own], b[:, own], ~invalid[:, own], offset)
            a = np.where(invalid & ~np.isfinite(a), 0.0, a)
            structure.add(a, np.where(invalid, a, b), top, (start, end))
    scores = tally.scores(scale)
    ssims = structure.scores() or [None] * len(scores["bands"])
    for band, value in zip(scores["bands"], ssims, strict=True):
        band["ssim"] = value
    pooled = float(np.mean(ssims)) if ssims[0] is not None else None
    return {"rmse_dn": scores["rmse_dn"], "psnr_db": scores["psnr_db"], "ssim": pooled,
            "bands": scores["bands"], "spectral_angle_deg": scores["spectral_angle_deg"]}
