"""The LR product on the link: coding it with a codec of :mod:`georefscale.codecs` and
reading it back with exactly the nodata pixels, or the internal mask, it was made with."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import rasterio

from georefscale.errors import InputError
from georefscale.options import CodecChoice
from georefscale.raster.grid import Grid
from georefscale.raster.io import has_dataset_mask, open_raster, prefixed, write_geotiff

__all__ = ["codec_spec", "encode_lr", "exact_lr", "probe_codec"]

PathLike = str | os.PathLike


def codec_spec(choice: CodecChoice):
    """The codec (None without one); InputError for unknown / unavailable codecs."""
    if choice.name is None:
        return None
    import georefscale.codecs as codecs

    spec = codecs.get_codec(choice.name)
    if choice.name not in codecs.available_codecs():
        raise InputError(f"codec {choice.name!r} is not provided by this GDAL build")
    return spec


def probe_codec(spec, quality: float | None, count: int, dtype: str, name: str) -> None:
    """Fail before the tiles, not after, when ``spec`` cannot code this band count / dtype at
    ``quality``: code a small blank image the same way."""
    import georefscale.codecs as codecs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            codecs.encode(np.zeros((count, 16, 16), dtype), spec.name, quality)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from exc


def encode_lr(lr: PathLike, out: PathLike, codec: CodecChoice) -> int:
    """Write the LR GeoTIFF ``lr`` through ``codec`` to ``out``.

    The tags are kept, plus ``GEOREFSCALE_CODEC`` / ``_QUALITY``; so are the nodata value or
    the internal mask (as tags: see :mod:`georefscale.codecs`).

    Returns:
        The coded size in bytes.
    """
    import georefscale.codecs as codecs

    quality = codec.quality
    with open_raster(lr, "LR product") as ds:
        arr, profile, desc = ds.read(), ds.profile, ds.descriptions
        mask = ds.read_masks(1) == 0 if has_dataset_mask(ds) else None
        tags = {**ds.tags(), **prefixed({"CODEC": codec.name, "QUALITY": "" if quality is None
                                         else f"{quality:g}"})}
    return codecs.write_compressed(out, arr, profile, tags, codec.name, quality,
                                   descriptions=desc, mask=mask)


def exact_lr(path: Path, scratch: Path) -> Path:
    """A coded LR product that records its nodata or internal mask (the container may have no
    nodata field and has no mask, a lossy codec moves the nodata pixels) decoded into a temporary
    GeoTIFF with exactly the nodata pixels or internal mask it was made with (``scratch``); any
    other product as it is. Holds the whole LR image in memory once."""
    import georefscale.codecs as codecs

    with open_raster(path, "LR product") as ds:
        if not {codecs.NODATA_TAG, codecs.INTERNAL_MASK_TAG} & set(ds.tags()):
            return path
        grid = Grid.from_dataset(ds)
    lr = codecs.read_compressed(path)
    return write_geotiff(scratch, lr.array, grid, nodata=lr.nodata, mask=lr.mask,
                         descriptions=lr.descriptions, tags=lr.tags)
