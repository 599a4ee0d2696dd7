"""Cloud and shadow masks given for references: the rules, reading a mask onto the reference's
grid, the mask as the reference's GDAL mask, and a mask's cloud cover.

A mask comes from a catalog record or STAC Item asset (a Sentinel-2 L2A scene classification
``scl`` / ``SCL``, or an asset with role ``cloud``, ``cloud-shadow`` or ``data-mask``) or from a
file given for the reference. Its values mean, by rule (:data:`~georefscale.options.MASK_RULES`):

* ``"scl"``: Sentinel-2 scene classes 0..11; :data:`SCL_CLOUDY` (3 cloud shadow, 8 cloud medium
  probability, 9 cloud high probability, 10 thin cirrus) are cloudy, :data:`SCL_NODATA` (0) is
  missing, every other class clear; a value outside 0..11 is refused.
* ``"nonzero"``: any value other than 0 is masked (cloud, shadow or bad data alike), 0 clear.

Under both rules a pixel that the mask file itself marks invalid (its nodata, its GDAL mask) is
masked. The mask is read window by window, resampled nearest onto the reference's grid; it must
share the reference's CRS and cover its bounds (a 20 m SCL over 10 m bands is fine). The masked
pixels become the reference's own GDAL mask (:func:`masked_raster`): GDAL's warp then treats them
as missing like nodata, so they are left out of co-registration and uncovered in the tiles, and
their values never reach a resampled pixel. A mask is identified by the pixels it masks on the
reference's grid (:func:`resolve_mask`, ``"mk1:"`` + SHA-256), which the product records and the
ground checks.

Masks and hrefs come from catalogs, Items and users: untrusted. A mask is only ever read as a
raster; nothing is built from its values but the bits above.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window

from georefscale.errors import InputError
from georefscale.options import MASK_RULES
from georefscale.raster.clouds import COVER_SIDE
from georefscale.raster.io import gdal_path, is_url, open_raster, read_masked

__all__ = ["MASK_SOURCES", "SCL_CLOUDY", "MaskRecord", "MaskSource", "mask_cover",
           "masked_raster", "resolve_mask"]

#: Sentinel-2 L2A scene classes that are cloudy (cloud shadow, cloud medium / high
#: probability, thin cirrus)
SCL_CLOUDY = (3, 8, 9, 10)
#: the scene class "no data": missing
SCL_NODATA = 0
#: the largest scene class (11 snow); larger values are not scene classes
SCL_MAX = 11
#: where a recorded mask came from: a catalog record's / Item's asset, or a file given for the
#: reference
MASK_SOURCES = ("asset", "file")
#: prefix of a mask identity
IDENTITY_PREFIX = "mk1:"
#: reference rows resolved at a time
STRIP_ROWS = 256


@dataclass(frozen=True)
class MaskSource:
    """Where a reference's mask is read from.

    Attributes:
        href: the mask raster (local file or URL).
        rule: one of :data:`~georefscale.options.MASK_RULES`.
        source: one of :data:`MASK_SOURCES`.
        label: how messages name it (the file, or the asset and its record).
    """

    href: str
    rule: str
    source: str
    label: str


@dataclass(frozen=True)
class MaskRecord:
    """How a reference was masked, as the LR product records it (tag ``REFERENCE_MASKS``).

    Attributes:
        source: one of :data:`MASK_SOURCES`.
        rule: one of :data:`~georefscale.options.MASK_RULES`.
        identity: the mask's identity on the reference's grid (:func:`resolve_mask`).
    """

    source: str
    rule: str
    identity: str

    def __post_init__(self) -> None:
        if self.source not in MASK_SOURCES or self.rule not in MASK_RULES:
            raise ValueError(f"mask source {self.source!r} / rule {self.rule!r}: expected one "
                             f"of {', '.join(MASK_SOURCES)} / {', '.join(MASK_RULES)}")
        if not (isinstance(self.identity, str) and self.identity.startswith(IDENTITY_PREFIX)
                and len(self.identity) == len(IDENTITY_PREFIX) + 64
                and all(c in "0123456789abcdef" for c in self.identity[len(IDENTITY_PREFIX):])):
            raise ValueError(f"mask identity {str(self.identity)[:80]!r} is not mk1: + 64 hex")

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "rule": self.rule, "identity": self.identity}

    @classmethod
    def from_dict(cls, obj: object) -> MaskRecord:
        """Parse one entry of ``REFERENCE_MASKS`` (untrusted).

        Raises:
            ValueError: not an object with exactly ``source``, ``rule`` and ``identity``.
        """
        if not isinstance(obj, dict) or set(obj) != {"source", "rule", "identity"}:
            raise ValueError("a REFERENCE_MASKS entry must be null or an object with source, "
                             "rule and identity")
        return cls(obj["source"], obj["rule"], obj["identity"])


def _masked(values: np.ndarray, invalid: np.ndarray, rule: str, name: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """(cloudy, missing) bool arrays of mask ``values`` under ``rule``.

    Raises:
        InputError: an SCL mask holds a value that is not a scene class (0..11).
    """
    if rule == "scl":
        bad = ~invalid & ((values < 0) | (values > SCL_MAX) | (values != np.floor(values)))
        if bad.any():
            found = np.unique(values[bad])[:5]
            raise InputError(f"{name}: values {', '.join(f'{v:g}' for v in found)} are not "
                             f"Sentinel-2 scene classes (0..{SCL_MAX})")
        return ~invalid & np.isin(values, SCL_CLOUDY), invalid | (values == SCL_NODATA)
    with np.errstate(invalid="ignore"):
        cloudy = ~invalid & (values != 0) & np.isfinite(values)
    return cloudy, invalid | ~np.isfinite(values)


def _check_grid(mask: DatasetReader, crs, transform: Affine, width: int, height: int,
                name: str, what: str) -> None:
    """The mask must be north-up in the reference's CRS and cover the reference's bounds.

    Raises:
        InputError: naming the mask file ``name``.
    """
    if mask.count != 1:
        raise InputError(f"{name}: a mask has one band, this one {mask.count}")
    if mask.crs != crs:
        raise InputError(f"{name}: mask CRS {mask.crs} is not the CRS of {what} ({crs})")
    if mask.transform.b or mask.transform.d or transform.b or transform.d:
        raise InputError(f"{name}: mask and {what} must be north-up (no rotation)")
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    ml, mb, mr, mt = mask.bounds
    tol = 0.5 * max(abs(mask.transform.a), abs(mask.transform.e))
    if (min(left, right) < ml - tol or max(left, right) > mr + tol
            or min(top, bottom) < mb - tol or max(top, bottom) > mt + tol):
        raise InputError(f"{name}: mask bounds {tuple(round(v, 6) for v in mask.bounds)} do not "
                         f"cover {what} ({left:.6f}, {bottom:.6f}, {right:.6f}, {top:.6f})")


def _read_onto(mask: DatasetReader, transform: Affine, window: Window, width: int,
               height: int) -> tuple[np.ndarray, np.ndarray]:
    """The mask's values and invalid pixels on ``window`` of a grid (``transform``),
    resampled nearest to ``height`` x ``width``."""
    left, top = transform @ (window.col_off, window.row_off)
    right, bottom = transform @ (window.col_off + window.width, window.row_off + window.height)
    win = mask.window(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    shape = (height, width)
    values = mask.read(1, window=win, out_shape=shape, resampling=Resampling.nearest)
    valid = mask.read_masks(1, window=win, out_shape=shape, resampling=Resampling.nearest)
    return values.astype(np.float64), valid == 0


def resolve_mask(href: str | os.PathLike, rule: str, reference: DatasetReader, out: Path,
                 name: str, what: str = "the reference") -> str:
    """Read a mask onto the reference's grid and write it as a GDAL mask file.

    Args:
        href: the mask raster (local file or URL), single band.
        rule: one of :data:`~georefscale.options.MASK_RULES`.
        reference: the open reference (as the model reads it).
        out: the GeoTIFF to write: uint8 on the reference's grid, 255 where the reference is
            valid and unmasked, 0 where it is masked or its own pixels are invalid.
        name: the mask, for messages.
        what: the reference, for messages.

    Returns:
        The mask's identity: ``"mk1:"`` + SHA-256 of the reference grid and the masked pixels
        (packed bits, row-major), the reference's own validity left out.

    Raises:
        InputError: naming ``name``: unreadable, not one band, another CRS, not covering the
            reference, or SCL values that are not scene classes.
    """
    if rule not in MASK_RULES:
        raise InputError(f"{name}: mask rule {rule!r} is not one of {', '.join(MASK_RULES)}")
    t, w, h = reference.transform, reference.width, reference.height
    digest = hashlib.sha256(json.dumps({"crs": reference.crs.to_wkt(), "transform": list(t[:6]),
                                        "width": w, "height": h}, sort_keys=True).encode())
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "uint8",
               "crs": reference.crs, "transform": t, "compress": "deflate", "tiled": True}
    with open_raster(href, f"mask {name}") as mask:
        _check_grid(mask, reference.crs, t, w, h, name, what)
        with rasterio.open(out, "w", **profile) as dst:
            for r0 in range(0, h, STRIP_ROWS):
                win = Window(0, r0, w, min(STRIP_ROWS, h - r0))
                values, invalid = _read_onto(mask, t, win, w, win.height)
                cloudy, missing = _masked(values, invalid, rule, name)
                masked = cloudy | missing
                digest.update(np.packbits(masked).tobytes())
                bad = masked | read_masked(reference, win)[1].any(axis=0)
                dst.write(np.where(bad, 0, 255).astype(np.uint8), 1, window=win)
    return IDENTITY_PREFIX + digest.hexdigest()


def masked_raster(read: str | os.PathLike, mask_file: Path, out: Path) -> Path:
    """Write a VRT at ``out``: the raster ``read`` (every band, its nodata, scales, offsets,
    descriptions and tags) with ``mask_file`` (:func:`resolve_mask`) as its per-dataset mask.

    Args:
        read: the reference as the model reads it (file, URL or VRT).
        mask_file: the resolved mask on its grid.
        out: the VRT to write (a temporary file).

    Returns:
        ``out``.
    """
    src = str(read) if is_url(read) else os.path.abspath(read)
    with open_raster(src, "reference") as ds:
        t, w, h = ds.transform, ds.width, ds.height
        parts = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">',
                 f"<SRS>{escape(ds.crs.to_wkt())}</SRS>",
                 "<GeoTransform>" + ", ".join(repr(v) for v in t.to_gdal()) + "</GeoTransform>",
                 _metadata(ds.tags())]
        for i in range(1, ds.count + 1):
            vrt_type = _vrt_type(ds.dtypes[i - 1])
            parts.append(f'<VRTRasterBand dataType="{vrt_type}" band="{i}">')
            parts.append(_metadata(ds.tags(i)))
            if ds.descriptions[i - 1]:
                parts.append(f"<Description>{escape(ds.descriptions[i - 1])}</Description>")
            if ds.nodata is not None:
                parts.append(f"<NoDataValue>{float(ds.nodata)!r}</NoDataValue>")
            parts.append(f"<Scale>{float(ds.scales[i - 1])!r}</Scale>"
                         f"<Offset>{float(ds.offsets[i - 1])!r}</Offset>")
            parts.append(_source(gdal_path(src), i, w, h) + "</VRTRasterBand>")
    parts.append('<MaskBand><VRTRasterBand dataType="Byte">'
                 + _source(str(Path(mask_file).absolute()), 1, w, h)
                 + "</VRTRasterBand></MaskBand></VRTDataset>")
    out.write_text("\n".join(parts))
    return out


def _source(path: str, band: int, width: int, height: int) -> str:
    return (f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
            f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></SimpleSource>')


def _metadata(tags: dict[str, str]) -> str:
    items = "".join(f'<MDI key="{escape(k, {chr(34): "&quot;"})}">{escape(v)}</MDI>'
                    for k, v in tags.items())
    return f"<Metadata>{items}</Metadata>" if items else ""


def _vrt_type(dtype: str) -> str:
    return {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
            "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
            "float64": "Float64"}[dtype]


def mask_cover(href: str, rule: str, grid: tuple[str | None, tuple[float, ...] | None,
                                                  tuple[int, int] | None], name: str) -> float:
    """The cloud cover of a mask over a record's grid: the percentage of its valid pixels that
    are cloudy under ``rule`` (SCL: classes :data:`SCL_CLOUDY` among those not 0; nonzero: the
    nonzero ones), on a nearest read of at most
    :data:`~georefscale.raster.clouds.COVER_SIDE` pixels a side (as the spectral test's cover).

    Args:
        href: the mask raster.
        rule: one of :data:`~georefscale.options.MASK_RULES`.
        grid: the record's ``(crs, transform, (height, width))``; None parts: the mask's own.
        name: the mask, for messages.

    Returns:
        0..100 (0 when no pixel is valid).

    Raises:
        InputError: naming ``name``, as :func:`resolve_mask`.
    """
    from rasterio.crs import CRS

    crs_text, transform, shape = grid
    with open_raster(href, f"mask {name}") as mask:
        if transform is None or shape is None:
            t, (h, w), crs = mask.transform, (mask.height, mask.width), mask.crs
        else:
            t, (h, w) = Affine(*transform[:6]), shape
            try:
                crs = CRS.from_user_input(crs_text) if crs_text else mask.crs
            except (rasterio.errors.CRSError, ValueError) as exc:
                raise InputError(f"{name}: the record's CRS {str(crs_text)[:80]!r} is not a "
                                 f"CRS ({exc})") from None
        _check_grid(mask, crs, t, w, h, name, "the record's grid")
        step = max(1, math.ceil(max(w, h) / COVER_SIDE))
        values, invalid = _read_onto(mask, t, Window(0, 0, w, h), max(1, w // step),
                                     max(1, h // step))
    cloudy, missing = _masked(values, invalid, rule, name)
    valid = ~missing
    return round(100.0 * float(cloudy.sum()) / valid.sum(), 3) if valid.any() else 0.0
