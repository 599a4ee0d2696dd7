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
    """RMSE and PSNR of ``hr`` against ``target`` over the target's valid samples, pooled and per
    band, and the mean spectral angle, computed block by block.

    Args:
        target: the target GeoTIFF.
        hr: the HR reconstruction on the same grid.
        scale: the peak (DN per 1.0 of the model, e.g. 10000 for Sentinel-2 uint16).

    Returns:
        ``rmse_dn`` (DN) and ``psnr_db`` (dB, ``inf`` for an exact reconstruction) pooled over
        all bands; ``bands``: per band ``rmse_dn`` and ``psnr_db``; ``spectral_angle_deg``: the
        mean angle between target and HR band vectors over pixels valid in every band (degrees;
        None with one band).
    """
    with open_raster(target, "target") as t, open_raster(hr, "HR product") as h:
        sq, n = np.zeros(t.count), np.zeros(t.count)
        pooled_sq, pooled_n = 0.0, 0
        angle_sum, angle_n = 0.0, 0
        for _, win in t.block_windows(1):
            a = t.read(window=win).astype(np.float64)
            b = h.read(window=win).astype(np.float64)
            valid = ~nodata_mask(a, t.nodata)
            pooled_sq += float(((a - b)[valid] ** 2).sum())
            pooled_n += int(valid.sum())
            d = np.where(valid, a - b, 0.0)
            sq += (d * d).sum(axis=(1, 2))
            n += valid.sum(axis=(1, 2))
            if t.count > 1:
                pix = valid.all(axis=0)
                dot = (a * b).sum(axis=0)[pix]
                norms = (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))[pix]
                ok = norms > 0
                angle_sum += float(np.arccos(np.clip(dot[ok] / norms[ok], -1, 1)).sum())
                angle_n += int(ok.sum())

    def scores(sq_sum: float, count: float) -> dict:
        rmse = math.sqrt(sq_sum / max(count, 1))
        return {"rmse_dn": rmse,
                "psnr_db": 20 * math.log10(scale / rmse) if rmse > 0 else math.inf}

    out = scores(pooled_sq, pooled_n)
    out["bands"] = [scores(float(s), float(c)) for s, c in zip(sq, n, strict=True)]
    out["spectral_angle_deg"] = (math.degrees(angle_sum / angle_n) if angle_n else None)
    return out
