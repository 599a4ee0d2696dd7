"""Downlink codecs through GDAL drivers (rasterio ``MemoryFile``): bytes that would be sent.

Every codec produces one complete file that GDAL opens (JPEG 2000 with a GeoJP2 box, or a GeoTIFF
whose tiles/strips are JPEG, WebP, DEFLATE, ZSTD or LERC coded), so ``len(encode(...))`` is the real
size of the downlinked product, header and georeferencing included.

Codecs (``available_codecs()`` lists those the installed GDAL provides):

========================  ==========================  ===========  ===========================
name                      container / driver          dtypes       ``quality``
========================  ==========================  ===========  ===========================
``jpeg2000``              .jp2, JP2OpenJPEG (9/7)     u8 u16 i16   target size, % of raw (0-100]
``jpeg2000-lossless``     .jp2, JP2OpenJPEG (5/3)     u8 u16 i16   none
``jpeg``                  GeoTIFF, JPEG per band      u8           JPEG quality 1-100
``webp``                  GeoTIFF, WebP (3|4 bands)   u8           WebP level 1-100
``deflate`` ``zstd``      GeoTIFF, predictor 2        any          none
``lerc``                  GeoTIFF, LERC max error 0   any          none
========================  ==========================  ===========  ===========================

8-bit-only codecs take 16-bit data only through an explicit :class:`ByteMapping` (a per-band linear
stretch ``DN = byte * scale + offset``, recorded in the file's tags so :func:`decode` inverts it).
"""

from __future__ import annotations

import base64
import functools
import math
import os
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile

from georefscale.atomic import atomic_output
from georefscale.errors import InputError
from georefscale.raster.io import nodata_mask

#: Strip height of the GeoTIFF-contained codecs (full-width strips: no padded tile edges to code).
STRIP_ROWS = 256
#: GDAL JP2OpenJPEG default tile size (BLOCKXSIZE/BLOCKYSIZE).
JP2_TILE = 1024

_MAP_TAGS = ("CODEC_MAPPING_OFFSET", "CODEC_MAPPING_SCALE", "CODEC_SOURCE_DTYPE")
_BAND_DESC_TAG = "BAND_DESCRIPTIONS"
#: The nodata value travels as a tag (JPEG 2000 files have no nodata field), and with a lossy
#: codec, which moves pixel values (the nodata value included), so does the exact nodata mask
#: (packed bits, zlib, base64); decoding puts both back.
NODATA_TAG = "CODEC_NODATA"
_NODATA_MASK_TAG = "CODEC_NODATA_MASK"
#: A GDAL internal (per-dataset) mask travels as a tag too (no codec's container keeps one):
#: one bit per pixel, True where masked, packed as the exact nodata mask is.
INTERNAL_MASK_TAG = "CODEC_INTERNAL_MASK"


@dataclass(frozen=True)
class Codec:
    """One downlink codec: GDAL driver and creation options, accepted dtypes, quality range."""

    name: str
    driver: str
    ext: str
    lossless: bool
    dtypes: tuple[str, ...] | None  # None: any numeric dtype
    quality_range: tuple[float, float] | None  # None: takes no quality
    default_quality: float | None
    bands: tuple[int, ...] | None = None  # None: any band count
    description: str = ""

    def creation_options(self, quality: float | None, shape: tuple[int, int, int],
                         colour_transform: bool = True) -> dict:
        """GDAL creation options for an array of ``shape`` (bands, rows, cols) at ``quality``;
        ``colour_transform`` False turns JPEG 2000's transform of the first three bands (GDAL
        ``YCC``) off, for bands already decorrelated."""
        strips = {"BLOCKYSIZE": str(min(STRIP_ROWS, shape[1]))}
        jp2 = {"GMLJP2": "NO", "WRITE_METADATA": "YES",
               "RESOLUTIONS": str(jp2_resolutions(shape[1], shape[2])),
               **({} if colour_transform else {"YCC": "NO"})}
        if self.name == "jpeg2000":
            return {"QUALITY": f"{quality:g}", "REVERSIBLE": "NO", **jp2}
        if self.name == "jpeg2000-lossless":
            return {"QUALITY": "100", "REVERSIBLE": "YES", **jp2}
        if self.name == "jpeg":
            return {"COMPRESS": "JPEG", "JPEG_QUALITY": str(int(quality)), "INTERLEAVE": "BAND",
                    "PHOTOMETRIC": "MINISBLACK", **strips}
        if self.name == "webp":
            return {"COMPRESS": "WEBP", "WEBP_LEVEL": str(int(quality)), "INTERLEAVE": "PIXEL",
                    **strips}
        if self.name in ("deflate", "zstd"):
            return {"COMPRESS": self.name.upper(), "PREDICTOR": "2", **strips}
        if self.name == "lerc":
            return {"COMPRESS": "LERC", "MAX_Z_ERROR": "0", **strips}
        raise InputError(f"codec {self.name!r}: no creation options defined")


def jp2_resolutions(rows: int, cols: int, tile: int = JP2_TILE) -> int:
    """JPEG 2000 resolution levels so the coarsest one is 8-16 pixels on its short side.

    GDAL's default stops at 128 pixels; on 16-bit scenes of a few hundred pixels that costs up to
    15 dB at 0.1 bit per pixel (measured on OSCD brasilia), so both direct and LR coding use this.
    """
    side = max(1, min(rows, cols, tile))
    return int(max(1, min(33, math.floor(math.log2(side)) - 2)))


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec("jpeg2000", "JP2OpenJPEG", ".jp2", False, ("uint8", "uint16", "int16"), (0.0, 100.0),
              25.0, description="JPEG 2000 irreversible 9/7; quality = coded size in % of raw"),
        Codec("jpeg2000-lossless", "JP2OpenJPEG", ".jp2", True, ("uint8", "uint16", "int16"),
              None, None, description="JPEG 2000 reversible 5/3"),
        Codec("jpeg", "GTiff", ".tif", False, ("uint8",), (1, 100), 75,
              description="baseline JPEG, one grayscale stream per band, in a GeoTIFF"),
        Codec("webp", "GTiff", ".tif", False, ("uint8",), (1, 100), 75, bands=(3, 4),
              description="lossy WebP in a GeoTIFF; a 4th band is WebP alpha (coded losslessly)"),
        Codec("deflate", "GTiff", ".tif", True, None, None, None,
              description="GeoTIFF DEFLATE, horizontal predictor"),
        Codec("zstd", "GTiff", ".tif", True, None, None, None,
              description="GeoTIFF ZSTD, horizontal predictor"),
        Codec("lerc", "GTiff", ".tif", True, None, None, None,
              description="GeoTIFF LERC, max error 0"),
    )
}


@functools.cache
def available_codecs() -> tuple[str, ...]:
    """Names of the codecs whose GDAL driver (and compression method) this GDAL build provides."""
    with rasterio.Env() as env:
        drivers = env.drivers()
    return tuple(c.name for c in CODECS.values() if c.driver in drivers and _method_ok(c))


def _method_ok(codec: Codec) -> bool:
    if codec.driver != "GTiff":
        return True
    probe = np.zeros((codec.bands[0] if codec.bands else 1, 8, 8), "uint8")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            encode(probe, codec.name)
    except Exception:  # a compression method missing from this GDAL build
        return False
    return True


def get_codec(name: str) -> Codec:
    """The codec called ``name``; InputError listing the available ones if there is none."""
    codec = CODECS.get(name)
    if codec is None:
        raise InputError(f"unknown codec {name!r}; available: {', '.join(available_codecs())}")
    return codec


@dataclass(frozen=True)
class ByteMapping:
    """Per-band linear map between source DN and the bytes of an 8-bit codec.

    ``DN = byte * scale + offset``; the forward map rounds and clips to 0..255, so values outside
    ``[offset, offset + 255 * scale]`` are clipped and each byte step is ``scale`` DN wide (a
    uniform quantiser: RMSE ``scale / sqrt(12)`` DN before any coding loss).
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def linear(cls, low: float, high: float, bands: int) -> ByteMapping:
        """The same stretch ``low..high`` (DN) for every band, e.g. ``0..10000`` for S2 L1C."""
        if not high > low:
            raise InputError(f"byte mapping: high ({high}) must exceed low ({low})")
        return cls((float(low),) * bands, ((high - low) / 255.0,) * bands)

    @classmethod
    def percentile(cls, array: np.ndarray, low: float = 0.5, high: float = 99.5) -> ByteMapping:
        """Per-band stretch between the ``low`` and ``high`` percentiles of ``array`` (C, H, W)."""
        arr = _as_chw(array, "byte mapping")
        lo = np.percentile(arr.reshape(arr.shape[0], -1), low, axis=1)
        hi = np.percentile(arr.reshape(arr.shape[0], -1), high, axis=1)
        hi = np.maximum(hi, lo + 1.0)
        return cls(tuple(float(v) for v in lo), tuple(float(v) for v in (hi - lo) / 255.0))

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Source DN (C, H, W) -> uint8 codes."""
        off, sc = self._vectors(array.shape[0])
        return np.clip(np.rint((array.astype(np.float64) - off) / sc), 0, 255).astype(np.uint8)

    def inverse(self, codes: np.ndarray, dtype: str) -> np.ndarray:
        """uint8 codes (C, H, W) -> DN in ``dtype`` (rounded and clipped for integer dtypes)."""
        off, sc = self._vectors(codes.shape[0])
        dn = codes.astype(np.float64) * sc + off
        if np.issubdtype(np.dtype(dtype), np.integer):
            info = np.iinfo(dtype)
            dn = np.clip(np.rint(dn), info.min, info.max)
        return dn.astype(dtype)

    def to_tags(self, dtype: str) -> dict[str, str]:
        return {"CODEC_MAPPING_OFFSET": ",".join(f"{v:.17g}" for v in self.offset),
                "CODEC_MAPPING_SCALE": ",".join(f"{v:.17g}" for v in self.scale),
                "CODEC_SOURCE_DTYPE": str(dtype)}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> tuple[ByteMapping, str] | None:
        if not all(k in tags for k in _MAP_TAGS):
            return None
        offset = tuple(float(v) for v in tags["CODEC_MAPPING_OFFSET"].split(","))
        scale = tuple(float(v) for v in tags["CODEC_MAPPING_SCALE"].split(","))
        return cls(offset, scale), tags["CODEC_SOURCE_DTYPE"]

    def _vectors(self, bands: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.offset) != bands or len(self.scale) != bands:
            raise InputError(f"byte mapping has {len(self.offset)} bands, data has {bands}")
        return (np.asarray(self.offset)[:, None, None], np.asarray(self.scale)[:, None, None])


@dataclass(frozen=True)
class Decoded:
    """A decoded product: pixels (C, H, W), georeferencing and tags as stored in the file, and
    the internal mask it was coded with (bool (H, W), True where masked; None without one)."""

    array: np.ndarray
    crs: rasterio.crs.CRS | None
    transform: rasterio.Affine
    nodata: float | None
    tags: dict[str, str]
    descriptions: tuple[str | None, ...]
    mask: np.ndarray | None = None


def _as_chw(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) == 0:
        raise InputError(f"{what}: expected a (bands, rows, cols) array, got shape {arr.shape}")
    return arr


def _check_quality(codec: Codec, quality: float | None) -> float | None:
    if codec.quality_range is None:
        if quality is not None:
            raise InputError(f"codec {codec.name!r} is lossless and takes no quality "
                             f"(got {quality})")
        return None
    if quality is None:
        return codec.default_quality
    lo, hi = codec.quality_range
    low_ok = quality > lo if codec.name == "jpeg2000" else quality >= lo
    if not (low_ok and quality <= hi) or not np.isfinite(quality):
        bracket = "(" if codec.name == "jpeg2000" else "["
        raise InputError(f"codec {codec.name!r}: quality {quality} out of range "
                         f"{bracket}{lo:g}, {hi:g}]")
    if codec.name != "jpeg2000" and quality != int(quality):
        raise InputError(f"codec {codec.name!r}: quality must be an integer, got {quality}")
    return quality


def encode(
    array: np.ndarray,
    codec: str,
    quality: float | None = None,
    *,
    profile: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
    descriptions: Sequence[str | None] | None = None,
    mapping: ByteMapping | None = None,
    mask: np.ndarray | None = None,
    colour_transform: bool = True,
) -> bytes:
    """Code ``array`` (bands, rows, cols; or rows, cols) with ``codec``; the whole file as bytes.

    ``profile`` may give ``crs``, ``transform`` and ``nodata`` (rasterio profile keys); ``tags``
    are stored as dataset metadata, ``descriptions`` as band names.  16-bit (or any non-uint8) data
    to an 8-bit-only codec needs ``mapping``; it is recorded in the tags. ``mask`` (bool
    (rows, cols), True where masked) is a GDAL internal mask, recorded in the tags
    (:data:`INTERNAL_MASK_TAG`) and given back by :func:`read_encoded`. ``colour_transform``
    False: no JPEG 2000 colour transform (see :meth:`Codec.creation_options`).
    """
    spec = get_codec(codec)
    arr = _as_chw(array, f"encode ({codec})")
    q = _check_quality(spec, quality)
    all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    prof = dict(profile or {})
    if mask is not None:
        if mask.shape != arr.shape[1:]:
            raise InputError(f"encode ({codec}): mask of shape {mask.shape} for an image of "
                             f"{arr.shape[1]} x {arr.shape[2]} pixels")
        if prof.get("nodata") is not None:
            raise InputError(f"encode ({codec}): give a nodata value or an internal mask, "
                             "not both")
        all_tags[INTERNAL_MASK_TAG] = _pack_mask(mask)
    if prof.get("nodata") is not None:
        all_tags[NODATA_TAG] = repr(float(prof["nodata"]))
        mask = nodata_mask(arr, prof["nodata"])
        if q is not None and mask.any():
            all_tags[_NODATA_MASK_TAG] = _pack_mask(mask)
    if mapping is not None:
        if spec.dtypes != ("uint8",):
            raise InputError(f"codec {codec!r} codes {arr.dtype} directly; a byte mapping is "
                             "only for 8-bit-only codecs (jpeg, webp)")
        all_tags.update(mapping.to_tags(str(arr.dtype)))
        arr = mapping.forward(arr)
    if spec.dtypes is not None and str(arr.dtype) not in spec.dtypes:
        hint = (" (give an explicit ByteMapping, e.g. ByteMapping.linear(0, 10000, bands))"
                if spec.dtypes == ("uint8",) else "")
        raise InputError(f"codec {codec!r} takes {'/'.join(spec.dtypes)} data, got "
                         f"{arr.dtype}{hint}")
    if spec.bands is not None and arr.shape[0] not in spec.bands:
        raise InputError(f"codec {codec!r} takes {' or '.join(map(str, spec.bands))} bands, got "
                         f"{arr.shape[0]}")
    if descriptions is not None and len(descriptions) != arr.shape[0]:
        raise InputError(f"encode ({codec}): {len(descriptions)} band descriptions for "
                         f"{arr.shape[0]} bands")
    if descriptions is not None and spec.driver == "JP2OpenJPEG":
        all_tags[_BAND_DESC_TAG] = "|".join(d or "" for d in descriptions)
    kwargs = {"driver": spec.driver, "count": arr.shape[0], "height": arr.shape[1],
              "width": arr.shape[2], "dtype": str(arr.dtype)}
    for key in ("crs", "transform", "nodata"):
        if prof.get(key) is not None:
            kwargs[key] = prof[key]
    if spec.name == "webp" and arr.shape[0] == 4:
        kwargs["photometric"] = "RGB"
    kwargs.update(spec.creation_options(q, arr.shape, colour_transform))
    with MemoryFile(ext=spec.ext) as mem:
        with mem.open(**kwargs) as dst:
            dst.write(np.ascontiguousarray(arr))
            if all_tags:
                dst.update_tags(**all_tags)
            if descriptions is not None and spec.driver != "JP2OpenJPEG":
                for i, d in enumerate(descriptions, 1):
                    if d:
                        dst.set_band_description(i, d)
        return mem.read()


def read_encoded(data: bytes, *, unmap: bool = True) -> Decoded:
    """Decode a file made by :func:`encode` with its georeferencing and tags.

    With ``unmap`` a recorded :class:`ByteMapping` is inverted, giving DN in the source dtype.
    """
    if len(data) < 12:
        raise InputError(f"decode: {len(data)} bytes is not a coded product")
    ext = ".jp2" if data[4:8] == b"jP  " or data[:4] == b"\xff\x4f\xff\x51" else ".tif"
    try:
        with MemoryFile(data, ext=ext) as mem, mem.open() as src:
            arr = src.read()
            tags = dict(src.tags())
            descriptions = tuple(src.descriptions)
            crs, transform, nodata = src.crs, src.transform, src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"decode: not a GDAL-readable product ({exc})") from exc
    if _BAND_DESC_TAG in tags:
        names = tags.pop(_BAND_DESC_TAG).split("|")
        descriptions = tuple(n or None for n in names)
    mapped = ByteMapping.from_tags(tags)
    if unmap and mapped is not None:
        arr = mapped[0].inverse(arr, mapped[1])
        for k in _MAP_TAGS:
            tags.pop(k)
    recorded = tags.pop(NODATA_TAG, None)
    if nodata is None and recorded is not None:
        nodata = float(recorded)
    packed = tags.pop(_NODATA_MASK_TAG, None)
    if packed is not None and nodata is not None and (unmap or mapped is None):
        arr = _restore_nodata(arr, _unpack_mask(packed, arr.shape), nodata)
    internal = tags.pop(INTERNAL_MASK_TAG, None)
    mask = None if internal is None else _unpack_mask(internal, arr.shape[1:])
    return Decoded(arr, crs, transform, nodata, tags, descriptions, mask)


def _pack_mask(mask: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.packbits(mask.ravel()).tobytes(), 9)).decode()


def _unpack_mask(packed: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        bits = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.uint8)
        return np.unpackbits(bits, count=math.prod(shape)).astype(bool).reshape(shape)
    except (ValueError, zlib.error) as exc:
        raise InputError(f"decode: corrupt {_NODATA_MASK_TAG} tag ({exc})") from exc


def _restore_nodata(arr: np.ndarray, mask: np.ndarray, nodata: float) -> np.ndarray:
    """``arr`` with exactly the pixels of ``mask`` at ``nodata``; a valid pixel the codec moved
    onto the nodata value is moved one DN inward, so it stays valid."""
    arr = arr.copy()
    hit = ~mask & nodata_mask(arr, nodata)
    if hit.any() and np.issubdtype(arr.dtype, np.integer):
        arr[hit] = nodata + 1 if nodata < np.iinfo(arr.dtype).max else nodata - 1
    arr[mask] = nodata
    return arr


def decode(data: bytes, *, unmap: bool = True) -> np.ndarray:
    """Pixels (bands, rows, cols) of a file made by :func:`encode` (byte mapping inverted)."""
    return read_encoded(data, unmap=unmap).array


def bits_per_pixel(nbytes: int, hr_shape: Sequence[int]) -> float:
    """Bits sent per pixel of the ORIGINAL HR scene (all bands together).

    ``hr_shape`` is (rows, cols) or (bands, rows, cols) of the full-resolution scene, also when the
    bytes code a rescaled (LR) product, so direct and rescaled coding compare fairly.
    """
    if len(hr_shape) not in (2, 3) or min(hr_shape) <= 0:
        raise InputError(f"bits_per_pixel: bad HR shape {tuple(hr_shape)}")
    if nbytes < 0:
        raise InputError(f"bits_per_pixel: negative byte count {nbytes}")
    rows, cols = hr_shape[-2:]
    return 8.0 * nbytes / (rows * cols)


def write_compressed(
    path: str | os.PathLike,
    array: np.ndarray,
    profile: Mapping,
    tags: Mapping[str, str] | None,
    codec: str,
    quality: float | None = None,
    *,
    descriptions: Sequence[str | None] | None = None,
    mapping: ByteMapping | None = None,
    mask: np.ndarray | None = None,
) -> int:
    """Write the coded, georeferenced product to ``path`` atomically; returns its size in bytes.

    ``profile`` gives ``crs``/``transform``/``nodata``; the file is what :func:`encode` returns
    (use ``get_codec(codec).ext`` for the file name), ``mask`` its internal mask.  Nothing is
    left at ``path`` on failure.
    """
    data = encode(array, codec, quality, profile=profile, tags=tags,
                  descriptions=descriptions, mapping=mapping, mask=mask)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def read_compressed(path: str | os.PathLike, *, unmap: bool = True) -> Decoded:
    """Read a product written by :func:`write_compressed` (pixels, georeferencing, tags)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return read_encoded(path.read_bytes(), unmap=unmap)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
