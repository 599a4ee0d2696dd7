"""The directly coded product: the target scene coded with JPEG 2000 on its own grid.

A rate-targeted ``onboard`` (see :mod:`georefscale.layers`) also measures coding the target
directly, without a base layer, and writes it instead of the two layers when it answers the
request with fewer bytes (``target_psnr``, ``max_error``) or a better PSNR (``max_bytes``): on
scenes where the reference gains little, at very high qualities, or for budgets too small for a
useful base layer. The file is the product (``lr.jp2`` as asked, no ``.enh.jp2``); its
``GEOREFSCALE_*`` tags say so (``PRODUCT=direct``) and record what the ground needs to write the
HR exactly as the layered ground would: the quantisation step of a near-lossless product, the
target's nodata value or internal mask and its exact per-sample mask, band names and metadata.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from georefscale import codecs
from georefscale.errors import InputError
from georefscale.masks import MaskRows, check_mask
from georefscale.raster.grid import Grid
from georefscale.raster.io import TAG_PREFIX, BandMeta, open_raster, prefixed, write_geotiff

__all__ = ["DirectInfo", "ground_direct", "is_direct", "read_direct"]

#: The ``GEOREFSCALE_PRODUCT`` tag of a directly coded product.
PRODUCT = "direct"

PathLike = str | os.PathLike


@dataclass(frozen=True)
class DirectInfo:
    """What a directly coded product records (its ``GEOREFSCALE_*`` tags).

    Attributes:
        step: quantisation step of a near-lossless product (``2E + 1``; the file holds
            ``round(target / step)``), or 0 for a lossy one (the file holds the target's DN).
        quality: JPEG 2000 quality of a lossy product (None when lossless).
        source_dtype: the target's dtype (the HR's).
        nodata: the target's nodata value (None: none, or an internal mask).
        internal_mask: the target's invalid samples came from a GDAL internal mask.
        nodata_mask: the target's exact per-sample mask (:mod:`georefscale.masks`), None when
            every sample is valid.
        bands: band names of the target.
        meta: the target's scale / offset, units, band tags, colour interpretation.
        scale: DN per 1.0 of the target's convention (the PSNR peak, as for the LR products).
        offset: DN added before dividing by ``scale`` (see
            :func:`~georefscale.convention.dn_convention`).
    """

    step: int
    quality: float | None
    source_dtype: str
    nodata: float | None
    internal_mask: bool
    nodata_mask: str | None
    bands: tuple[str, ...]
    meta: BandMeta | None
    scale: float
    offset: float = 0.0

    @property
    def max_error(self) -> int | None:
        """The promised bound (DN) of a near-lossless product, else None."""
        return (self.step - 1) // 2 if self.step else None

    def to_tags(self) -> dict[str, str]:
        tags = {"PRODUCT": PRODUCT, "DIRECT_STEP": self.step,
                "DIRECT_QUALITY": "" if self.quality is None else self.quality,
                "SOURCE_DTYPE": self.source_dtype,
                "DIRECT_NODATA": "" if self.nodata is None else repr(float(self.nodata)),
                "DIRECT_INTERNAL_MASK": int(self.internal_mask),
                "BANDS": ";".join(self.bands), "SCALE": repr(self.scale),
                "OFFSET": repr(self.offset)}
        if self.nodata_mask is not None:
            tags["NODATA_MASK"] = self.nodata_mask
        if self.meta is not None:
            tags["META"] = self.meta.to_json()
        return prefixed(tags)

    @classmethod
    def from_tags(cls, tags: dict[str, str], path: PathLike, shape: tuple[int, int, int]
                  ) -> DirectInfo:
        """Parse and validate the tags of a directly coded product (untrusted input).

        Args:
            tags: the file's tags.
            path: the file, for messages.
            shape: its ``(bands, rows, cols)``.

        Raises:
            InputError: not a directly coded product, or malformed tags.
        """
        t = {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
        if t.get("PRODUCT") != PRODUCT:
            raise InputError(f"{path}: not a directly coded georefscale product")
        bands, rows, cols = shape
        try:
            step = int(t["DIRECT_STEP"])
            quality = float(t["DIRECT_QUALITY"]) if t.get("DIRECT_QUALITY") else None
            dtype = np.dtype(t["SOURCE_DTYPE"])
            nodata = float(t["DIRECT_NODATA"]) if t.get("DIRECT_NODATA") else None
            internal = {"0": False, "1": True}[t["DIRECT_INTERNAL_MASK"]]
            names = tuple(t["BANDS"].split(";")) if t.get("BANDS") else ()
            scale, offset = float(t["SCALE"]), float(t["OFFSET"])
            if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
                raise ValueError(f"bad scale {scale} or offset {offset}")
            if step < 0 or step > 2**15 or (step and step % 2 == 0):
                raise ValueError(f"bad step {step}")
            if (step == 0) == (quality is None):
                raise ValueError("a lossy product needs a quality, a quantised one none")
            if quality is not None and not (0 < quality <= 100):
                raise ValueError(f"bad quality {quality}")
            if dtype.kind not in "ui" or dtype.itemsize > 2:
                raise ValueError(f"unsupported dtype {dtype}")
            if nodata is not None and (internal or not math.isfinite(nodata)):
                raise ValueError("bad nodata")
            if names and len(names) != bands:
                raise ValueError("band names do not match the bands")
            mask = t.get("NODATA_MASK")
            if mask is not None:
                check_mask(mask, bands, cols, rows)
            if internal and mask is None:
                raise ValueError("an internal mask without the mask")
            meta = BandMeta.from_json(t["META"], bands) if t.get("META") else None
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: directly coded product tags are incomplete or invalid "
                             f"({exc})") from exc
        return cls(step, quality, str(dtype), nodata, internal, mask, names, meta, scale, offset)


def is_direct(path: PathLike) -> bool:
    """Whether ``path`` is a directly coded product (by its ``GEOREFSCALE_PRODUCT`` tag)."""
    with open_raster(path, "product") as ds:
        return ds.tags().get(f"{TAG_PREFIX}PRODUCT") == PRODUCT


def read_direct(path: PathLike) -> DirectInfo:
    """The record of a directly coded product (its tags, validated; pixels not read).

    Raises:
        InputError: not a directly coded product, or malformed.
    """
    with open_raster(path, "product") as ds:
        return DirectInfo.from_tags(ds.tags(), path, (ds.count, ds.height, ds.width))


def ground_direct(path: PathLike, out: PathLike, *, cog: bool = False) -> DirectInfo:
    """Write the HR of a directly coded product: the decoded target (times the step of a
    near-lossless one), its nodata samples restored exactly, band names and metadata kept.

    Args:
        path: the product (JPEG 2000).
        out: the HR GeoTIFF to write (atomically).
        cog: write a Cloud-Optimized GeoTIFF.

    Returns:
        The product's record (``max_error``: the bound the HR meets).

    Raises:
        InputError: not a directly coded product, or malformed.
    """
    from georefscale.layers import add_residual, finish_hr

    decoded = codecs.read_compressed(path)
    arr = decoded.array
    info = DirectInfo.from_tags(decoded.tags, path, arr.shape)
    if decoded.crs is None:
        raise InputError(f"{path}: directly coded product has no CRS")
    bands, rows, cols = arr.shape
    masked = (MaskRows(info.nodata_mask, bands, cols, rows).rows(0, rows)
              if info.nodata_mask else np.zeros(arr.shape, bool))
    hr = add_residual(np.zeros(arr.shape, info.source_dtype), arr, info.step, info.source_dtype)
    hr = finish_hr(hr, masked, info.nodata)
    grid = Grid(decoded.crs, decoded.transform, cols, rows)
    tags = prefixed({"PRODUCT": "HR", "LAYERS": 0, "SOURCE": Path(path).name,
                     "MAX_ERROR": "" if info.max_error is None else info.max_error})
    write_geotiff(out, hr, grid, nodata=info.nodata,
                  mask=masked if info.internal_mask else None,
                  descriptions=info.bands or None, tags=tags, meta=info.meta, cog=cog)
    return info
