"""What products hold and how good they are: :func:`describe_lr` and :func:`reconstruction_error`.

One rule for a valid pixel everywhere: a target pixel is valid unless it equals the target's
nodata value (NaN-aware, :func:`~georefscale.raster.io.nodata_mask`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from georefscale.product import LRInfo
from georefscale.raster.io import georefscale_tags, nodata_mask, open_raster

__all__ = ["describe_lr", "reconstruction_error"]

PathLike = str | os.PathLike


def describe_lr(lr: PathLike) -> dict:
    """What an LR product file holds (for summaries and ``--json``).

    Args:
        lr: the LR product (GeoTIFF or coded file).

    Returns:
        ``lr``, ``bytes``, ``bits_per_pixel`` (per HR pixel, all bands together), ``codec``,
        ``quality``, ``model``, ``factor``, ``scale`` (DN per 1.0), ``references`` (ids),
        ``shift_px``, ``tiles``, ``fallback_model``, ``fallback_tiles`` (count); for the base of
        a two-layer product also ``layers``, ``base_bytes``, ``enhancement``,
        ``enhancement_bytes`` (``bytes`` counts both files).

    Raises:
        InputError: not a georefscale product.
    """
    import georefscale.codecs as codecs

    path = Path(lr)
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
        "references": list(info.reference_ids),
        "shift_px": list(info.shift),
        "tiles": len(info.tiling()),
        "fallback_model": info.fallback_model,
        "fallback_tiles": len(info.fallback_tiles),
        **layers,
    }


def reconstruction_error(target: PathLike, hr: PathLike, scale: float) -> dict:
    """RMSE and PSNR of ``hr`` against ``target`` over the target's valid pixels, block by block.

    Args:
        target: the target GeoTIFF.
        hr: the HR reconstruction on the same grid.
        scale: the peak (DN per 1.0 of the model, e.g. 10000 for Sentinel-2 uint16).

    Returns:
        ``rmse_dn`` (DN) and ``psnr_db`` (dB, ``inf`` for an exact reconstruction).
    """
    with open_raster(target, "target") as t, open_raster(hr, "HR product") as h:
        sq, n = 0.0, 0
        for _, win in t.block_windows(1):
            a = t.read(window=win).astype(np.float64)
            b = h.read(window=win).astype(np.float64)
            valid = ~nodata_mask(a, t.nodata)
            sq += float(((a - b)[valid] ** 2).sum())
            n += int(valid.sum())
    rmse = math.sqrt(sq / max(n, 1))
    psnr = 20 * math.log10(scale / rmse) if rmse > 0 else math.inf
    return {"rmse_dn": rmse, "psnr_db": psnr}
