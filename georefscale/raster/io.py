"""Raster input/output: checked opening, windowed (boundless) reads, DN <-> float scaling, and
atomic GeoTIFF / Cloud-Optimized GeoTIFF writing with CRS, transform, nodata or internal mask,
band descriptions, dtype and tags kept.

Which samples are invalid is decided in one place, :func:`read_masked`: those equal to the
nodata value, or, in a raster without one, those a GDAL per-dataset mask marks (an internal mask
as ``GDAL_TIFF_INTERNAL_MASK`` / rasterio's ``write_mask`` make it). Writers carry them the same
way: a nodata value, or an internal mask (``GeoTIFFWriter(internal_mask=True)``).

Arrays are ``(bands, rows, cols)``. Float data is float32 in the normalised range ``DN / scale``.
georefscale's own tags are written in the default tag namespace with the prefix ``GEOREFSCALE_``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from georefscale.atomic import check_replaceable, remove_stale, replace, temp_path
from georefscale.errors import InputError
from georefscale.raster.grid import Grid

TAG_PREFIX = "GEOREFSCALE_"
BLOCKSIZE = 512
#: GDAL block cache (bytes: rasterio passes integers to GDALSetCacheMax64) while writing products.
GDAL_CACHE_BYTES = 256 * 2**20

#: DN per 1.0 of the normalised float range, by dtype (S2 reflectance x 10000, 8-bit 255).
DEFAULT_SCALES = {"uint8": 255.0, "uint16": 10000.0, "int16": 10000.0, "float32": 1.0}


#: How remote rasters are spelled (read window by window through GDAL's virtual file systems).
URL_PREFIXES = ("http://", "https://", "s3://", "/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/")


def is_url(path: object) -> bool:
    """Whether ``path`` names a remote raster (``http(s)://``, ``s3://``, ``/vsicurl/`` ...)."""
    return isinstance(path, str) and path.startswith(URL_PREFIXES)


#: GDAL settings while a remote raster is opened: no folder listing, no probing for side-car
#: files (``.aux.xml``, ``.ovr``) over the network, and a bounded wait for an unreachable server.
REMOTE_CONFIG = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_TIMEOUT": 60,
                 "GDAL_HTTP_CONNECTTIMEOUT": 10}


def gdal_path(path: str) -> str:
    """How GDAL opens ``path``: an ``http(s)://`` URL through ``/vsicurl`` without listing its
    folder (a server's directory listing is never needed and some servers stall on it)."""
    if path.startswith(("http://", "https://")):
        return "/vsicurl?list_dir=no&url=" + quote(path, safe="")
    return path


def open_raster(path: str | os.PathLike, what: str = "raster") -> rasterio.DatasetReader:
    """Open a georeferenced raster for reading (use as a context manager).

    ``path`` is a local file or a URL (see :data:`URL_PREFIXES`; read window by window, with
    HTTP range requests). ``what`` names the role in messages ("target", "reference", ...).

    Raises:
        InputError: naming ``path``, when it is missing, unreachable, not a regular file, not a
            raster, or has no CRS or geotransform.
    """
    remote = is_url(path)
    p = str(path) if remote else Path(path)
    if not remote:
        if not p.exists():
            raise InputError(f"{p}: {what} file does not exist")
        if not stat.S_ISREG(p.stat().st_mode):  # a FIFO or a device would hang or never end
            raise InputError(f"{p}: {what} is not a regular file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            if remote:
                with rasterio.Env(**REMOTE_CONFIG):
                    ds = rasterio.open(gdal_path(p))
            else:
                ds = rasterio.open(p)
        except RasterioIOError as exc:
            if remote:
                raise InputError(f"{p}: {what} cannot be read over the network "
                                 f"({str(exc).splitlines()[0]})") from exc
            raise InputError(f"{p}: {what} is not a raster GDAL can read") from exc
    if ds.transform.is_identity and ds.gcps[0]:
        ds.close()
        raise InputError(f"{p}: {what} is georeferenced by GCPs only; warp it to a grid first "
                         "(e.g. gdalwarp)")
    if ds.transform.is_identity:
        ds.close()
        raise InputError(f"{p}: {what} has no geotransform (not georeferenced)")
    if ds.crs is None:
        ds.close()
        raise InputError(f"{p}: {what} has no CRS")
    return ds


def default_scale(dtype: str | np.dtype) -> float:
    """DN per 1.0 of the normalised range for ``dtype`` (uint8 255, uint16/int16 10000, float 1)."""
    name = np.dtype(dtype).name
    if name not in DEFAULT_SCALES:
        raise InputError(
            f"unsupported data type {name}; expected one of {', '.join(DEFAULT_SCALES)}"
        )
    return DEFAULT_SCALES[name]


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices (possibly outside ``[0, n)``) into it by mirror reflection without edge repeat
    (numpy's ``reflect`` mode), so padding is the same whichever window reads it."""
    idx = np.asarray(idx)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    r = np.abs(idx) % period
    return np.where(r >= n, period - r, r)


def reflect_window(
    window: Window, height: int, width: int
) -> tuple[Window, np.ndarray, np.ndarray]:
    """For ``window`` (may leave a ``height`` x ``width`` raster): the smallest in-raster window
    holding every pixel it mirrors to (:func:`reflect_index`), and the row and column indices
    into that window's array that give the mirrored ``window``."""
    r0, c0 = int(window.row_off), int(window.col_off)
    rows = reflect_index(np.arange(r0, r0 + int(window.height)), height)
    cols = reflect_index(np.arange(c0, c0 + int(window.width)), width)
    rmin, cmin = int(rows.min()), int(cols.min())
    inner = Window(cmin, rmin, int(cols.max()) - cmin + 1, int(rows.max()) - rmin + 1)
    return inner, rows - rmin, cols - cmin


def read_window(
    ds: DatasetReader,
    window: Window,
    *,
    bands: Sequence[int] | None = None,
    fill: float | str = "reflect",
) -> np.ndarray:
    """Read ``window`` (integer offsets and size; may leave the raster) as ``(bands, rows, cols)``.

    Outside the raster, pixels are mirrored (``fill="reflect"``, consistent across windows) or
    set to the number ``fill``. The array keeps the dataset's dtype.
    """
    indexes = list(bands) if bands is not None else list(range(1, ds.count + 1))
    return _boundless(ds, ds.read, indexes, window, fill, ds.dtypes[indexes[0] - 1])


def _boundless(ds: DatasetReader, read: Any, indexes: list[int], window: Window,
               fill: float | str, dtype: str) -> np.ndarray:
    """``read(indexes, window=...)`` (``ds.read`` or ``ds.read_masks``) of a window that may
    leave the raster: mirrored (``fill="reflect"``) or set to the number ``fill`` outside."""
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    if r0 >= 0 and c0 >= 0 and r0 + h <= ds.height and c0 + w <= ds.width:
        return read(indexes, window=Window(c0, r0, w, h))
    if fill == "reflect":
        inner, rows, cols = reflect_window(window, ds.height, ds.width)
        return read(indexes, window=inner)[:, rows[:, None], cols[None, :]]
    out = np.full((len(indexes), h, w), fill, dtype=dtype)
    rs, re = max(r0, 0), min(r0 + h, ds.height)
    cs, ce = max(c0, 0), min(c0 + w, ds.width)
    if rs < re and cs < ce:
        out[:, rs - r0 : re - r0, cs - c0 : ce - c0] = read(
            indexes, window=Window(cs, rs, ce - cs, re - rs)
        )
    return out


def has_dataset_mask(ds: DatasetReader, name: str | None = None) -> bool:
    """Whether ``ds`` marks its invalid pixels with a GDAL per-dataset mask (an internal or
    ``.msk`` mask band shared by all bands, as ``GDAL_TIFF_INTERNAL_MASK`` or rasterio's
    ``write_mask`` make it) instead of a nodata value; an alpha band is not such a mask.

    Args:
        ds: an open raster.
        name: the file, for messages (default: ``ds.name``).

    Raises:
        InputError: ``ds`` has both a nodata value and a per-dataset mask (GDAL honours only the
            mask, most tools only the nodata value: which samples are invalid is ambiguous).
    """
    per_dataset = all(MaskFlags.per_dataset in f and MaskFlags.alpha not in f
                      for f in ds.mask_flag_enums)
    if per_dataset and ds.nodata is not None:
        raise InputError(f"{name or ds.name}: has both a nodata value and an internal mask; "
                         "keep one (e.g. gdal_translate -a_nodata none, or -mask none)")
    return per_dataset


def read_masked(ds: DatasetReader, window: Window | None = None, *,
                name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` of all bands like :func:`read_window` (mirrored outside the raster), and
    which of its samples are invalid: the one place georefscale decides it.

    Invalid samples are those equal to the nodata value (:func:`nodata_mask`) or, in a raster
    without one, those its GDAL per-dataset mask marks (:func:`has_dataset_mask`; read for the
    window only, with ``read_masks``, and mirrored like the pixels).

    Args:
        ds: an open raster.
        window: integer offsets and size (default: the whole raster).
        name: the file, for messages.

    Returns:
        ``(pixels, invalid)``: the pixels in the dataset's dtype and a bool array of the same
        ``(bands, rows, cols)`` shape, True where a sample is invalid.

    Raises:
        InputError: the raster has both a nodata value and an internal mask.
    """
    window = window if window is not None else Window(0, 0, ds.width, ds.height)
    arr = read_window(ds, window)
    if not has_dataset_mask(ds, name):
        return arr, nodata_mask(arr, ds.nodata)
    masks = _boundless(ds, ds.read_masks, [1], window, "reflect", "uint8")
    return arr, np.repeat(masks == 0, ds.count, axis=0)


def nodata_mask(arr: np.ndarray, nodata: float | None) -> np.ndarray:
    """Boolean mask, True where ``arr`` equals ``nodata`` (NaN-aware; all False without nodata)."""
    if nodata is None:
        return np.zeros(arr.shape, dtype=bool)
    if np.isnan(nodata):
        return np.isnan(arr)
    return arr == nodata


def to_float(
    arr: np.ndarray, scale: float, nodata: float | None = None, mask: np.ndarray | None = None,
    *, offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """DN -> float32 ``(DN + offset) / scale``; returns ``(x, mask)`` with masked pixels set to 0.

    ``mask`` gives the invalid samples (True, e.g. from :func:`read_masked`); without it, those
    equal to ``nodata``. ``offset`` is in DN (-1000 for Sentinel-2 L2A of baseline 04.00 on).
    """
    mask = nodata_mask(arr, nodata) if mask is None else mask
    if offset:
        x = (arr.astype(np.float32) + np.float32(offset)) / np.float32(scale)
    else:
        x = arr.astype(np.float32) / np.float32(scale)
    x[mask] = 0.0
    return x, mask


def from_float(
    x: np.ndarray,
    dtype: str | np.dtype,
    scale: float,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    *,
    offset: float = 0.0,
) -> np.ndarray:
    """float ``x`` -> DN of ``dtype``: ``clip(round(x * scale - offset))`` for integer types (the
    inverse of :func:`to_float`; ``offset`` in DN).

    Pixels that are NaN or True in ``mask`` become ``nodata``; a valid pixel that would land on the
    nodata value is moved one DN inward so it stays valid.
    """
    dt = np.dtype(dtype)
    bad = ~np.isfinite(x)
    if mask is not None:
        bad |= mask
    y = np.where(bad, 0.0, x.astype(np.float64) * scale)
    if offset:
        y -= offset
    if dt.kind in "ui":
        info = np.iinfo(dt)
        y = np.clip(np.rint(y), info.min, info.max)
        if nodata is not None and not np.isnan(nodata):
            step = 1 if nodata < info.max else -1
            y = np.where((y == nodata) & ~bad, nodata + step, y)
    out = y.astype(dt)
    if nodata is not None:
        out[bad] = nodata
    elif bad.any() and dt.kind == "f":
        out[bad] = np.nan
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: Prefix of a content identity (version 1), which tells it from a file's byte SHA-256.
IDENTITY_PREFIX = "px1:"
#: Rows decoded at a time while computing a content identity.
IDENTITY_ROWS = 256


def content_identity(ds: DatasetReader) -> str:
    """The identity of a raster by its content: SHA-256 of its grid (CRS, transform, size),
    data types, nodata value, and every band's decoded pixels and validity mask, in that order,
    read in strips of rows (bounded memory).

    Re-encoding the file (another compression, tiling, a COG, an edited tag) keeps the identity;
    any changed pixel, mask sample or grid parameter changes it. A DataArray written to a
    GeoTIFF has the identity of the file it was read from when pixels and grid are the same.

    Args:
        ds: an open raster.

    Returns:
        ``"px1:"`` followed by 64 hex digits.
    """
    h = hashlib.sha256()
    header = {"crs": ds.crs.to_wkt() if ds.crs else None, "transform": list(ds.transform[:6]),
              "width": ds.width, "height": ds.height, "dtypes": list(ds.dtypes),
              "nodata": None if ds.nodata is None else repr(float(ds.nodata))}
    h.update(json.dumps(header, sort_keys=True).encode())
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # read once: GDAL need not keep it all
        for r0 in range(0, ds.height, IDENTITY_ROWS):
            win = Window(0, r0, ds.width, min(IDENTITY_ROWS, ds.height - r0))
            data = ds.read(window=win)
            h.update(np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"))).tobytes())
            h.update(np.packbits(ds.read_masks(window=win) > 0).tobytes())
    return IDENTITY_PREFIX + h.hexdigest()


def georefscale_tags(ds: DatasetReader) -> dict[str, str]:
    """georefscale's tags of an open dataset, without the ``GEOREFSCALE_`` prefix."""
    return {k[len(TAG_PREFIX) :]: v for k, v in ds.tags().items() if k.startswith(TAG_PREFIX)}


def prefixed(tags: Mapping[str, object]) -> dict[str, str]:
    """``{"FACTOR": 4}`` -> ``{"GEOREFSCALE_FACTOR": "4"}``."""
    return {f"{TAG_PREFIX}{k.upper()}": str(v) for k, v in tags.items()}


def check_output(path: str | os.PathLike) -> Path:
    """Raise InputError unless ``path`` can be created: its directory exists and is writable."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{p}: output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{p}: output directory {parent} is not writable")
    if p.is_dir():
        raise InputError(f"{p}: output path is a directory")
    check_replaceable(p)
    remove_stale(p)
    return p


def _creation_options(dtype: np.dtype, compress: str) -> dict:
    compress = compress.upper()
    if compress not in ("DEFLATE", "ZSTD", "LZW", "NONE"):
        raise InputError(f"unsupported compression {compress}; use DEFLATE, ZSTD, LZW or NONE")
    opts = {"compress": compress}
    if compress != "NONE":
        opts["predictor"] = 3 if np.dtype(dtype).kind == "f" else 2
    return opts


#: Metadata domains that describe the file's encoding, not the data: never copied.
_FILE_DOMAINS = {"IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "xml:XMP", "COLOR_PROFILE"}


@dataclass(frozen=True)
class BandMeta:
    """What rasterio users expect a tool in the chain to keep besides pixels, grid, nodata and
    band names: per-band scale and offset, units, per-band tags, colour interpretation, and
    dataset tags outside the default domain.

    Attributes:
        scales: per-band scale (DN -> physical value).
        offsets: per-band offset.
        units: per-band unit ("" for none).
        band_tags: per-band tags (e.g. WAVELENGTH).
        colorinterp: per-band colour interpretation names (``ColorInterp`` member names).
        domains: dataset tags by domain, outside the default one.
    """

    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    units: tuple[str, ...]
    band_tags: tuple[dict[str, str], ...]
    colorinterp: tuple[str, ...]
    domains: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, ds: DatasetReader) -> BandMeta:
        """The metadata of an open dataset."""
        n = ds.count
        return cls(
            scales=tuple(float(v) for v in ds.scales),
            offsets=tuple(float(v) for v in ds.offsets),
            units=tuple(u or "" for u in ds.units),
            band_tags=tuple(dict(ds.tags(i)) for i in range(1, n + 1)),
            colorinterp=tuple(c.name for c in ds.colorinterp),
            domains={d: dict(ds.tags(ns=d)) for d in ds.tag_namespaces()
                     if d not in _FILE_DOMAINS and not d.startswith("GEOREFSCALE")},
        )

    @classmethod
    def default(cls, count: int) -> BandMeta:
        """What a new GeoTIFF has without any of it."""
        return cls((1.0,) * count, (0.0,) * count, ("",) * count, ({},) * count,
                   ("gray",) + ("undefined",) * (count - 1))

    def is_default(self) -> bool:
        return self == BandMeta.default(len(self.scales))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, count: int) -> BandMeta:
        """Parse :meth:`to_json` (from untrusted tags: shapes and types checked).

        Raises:
            ValueError: malformed.
        """
        d = json.loads(text)
        meta = cls(
            scales=tuple(float(v) for v in d["scales"]),
            offsets=tuple(float(v) for v in d["offsets"]),
            units=tuple(str(v) for v in d["units"]),
            band_tags=tuple({str(k): str(v) for k, v in t.items()} for t in d["band_tags"]),
            colorinterp=tuple(ColorInterp[str(v)].name for v in d["colorinterp"]),
            domains={str(ns): {str(k): str(v) for k, v in t.items()}
                     for ns, t in d.get("domains", {}).items()},
        )
        for name in ("scales", "offsets", "units", "band_tags", "colorinterp"):
            if len(getattr(meta, name)) != count:
                raise ValueError(f"metadata {name} does not list {count} bands")
        return meta

    def apply(self, ds: DatasetWriter) -> None:
        """Write the non-default parts onto a dataset open for writing."""
        n = ds.count
        if self.scales != (1.0,) * n or self.offsets != (0.0,) * n:
            ds.scales, ds.offsets = self.scales, self.offsets
        if any(self.units):
            ds.units = self.units
        for i, tags in enumerate(self.band_tags, start=1):
            if tags:
                ds.update_tags(i, **tags)
        if self.colorinterp != BandMeta.default(n).colorinterp:
            ds.colorinterp = [ColorInterp[c] for c in self.colorinterp]
        for ns, tags in self.domains.items():
            if tags:
                ds.update_tags(ns=ns, **tags)


class GeoTIFFWriter:
    """Streaming, atomic GeoTIFF writer: a context manager that writes windows into a temporary
    file in the destination directory and renames it onto ``path`` only on success (deleted on
    failure). With ``cog=True`` the result is a Cloud-Optimized GeoTIFF (tiled 512, overviews).

    Invalid samples are carried by ``nodata``, or with ``internal_mask=True`` (and no nodata) by
    a GDAL per-dataset internal mask: a pixel is masked where all its bands are invalid (the
    ``mask`` given to :meth:`write` / :meth:`write_rows`; pixels written without one are valid).

    Rows given to :meth:`write_rows` are buffered into whole 512-row strips, so compressed blocks
    are written once.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        grid: Grid,
        *,
        count: int,
        dtype: str | np.dtype,
        nodata: float | None = None,
        descriptions: Sequence[str | None] | None = None,
        tags: Mapping[str, str] | None = None,
        cog: bool = False,
        compress: str = "deflate",
        meta: BandMeta | None = None,
        internal_mask: bool = False,
    ) -> None:
        if internal_mask and nodata is not None:
            raise ValueError("an internal mask and a nodata value are exclusive")
        self.path = check_output(path)
        self.internal_mask = internal_mask
        self.meta = meta
        self.grid = grid
        self.count = count
        self.dtype = np.dtype(dtype)
        self.nodata = nodata
        self.descriptions = list(descriptions) if descriptions is not None else None
        self.tags = dict(tags or {})
        self.cog = cog
        self.options = _creation_options(self.dtype, compress)
        self._ds = None
        self._tmp: Path | None = None
        self._strip: np.ndarray | None = None
        self._strip_mask: np.ndarray | None = None
        self._strip_row = 0
        self._strip_fill = 0

    def __enter__(self) -> GeoTIFFWriter:
        self._tmp = temp_path(self.path, ".tmp.tif")
        profile = {
            "driver": "GTiff",
            "width": self.grid.width,
            "height": self.grid.height,
            "count": self.count,
            "dtype": self.dtype.name,
            "crs": self.grid.crs,
            "transform": self.grid.transform,
            "nodata": self.nodata,
            "tiled": True,
            "blockxsize": BLOCKSIZE,
            "blockysize": BLOCKSIZE,
            "bigtiff": "IF_SAFER",
            **self.options,
        }
        if self.count >= 3 and self.dtype == np.uint8:
            rgb = self.meta is not None and self.meta.colorinterp[:3] == ("red", "green", "blue")
            profile["photometric"] = "RGB" if rgb else "MINISBLACK"
        try:
            self._ds = rasterio.open(self._tmp, "w", **profile)
            if self.meta is not None:
                self.meta.apply(self._ds)
            if self.descriptions:
                for i, desc in enumerate(self.descriptions, start=1):
                    if desc:
                        self._ds.set_band_description(i, desc)
            if self.tags:
                self._ds.update_tags(**self.tags)
        except Exception:
            self._abort()
            raise
        return self

    def update_tags(self, **tags: str) -> None:
        """Add or replace dataset tags (GDAL writes them when the file is closed), e.g. ones
        known only after the pixels are written."""
        self.tags.update(tags)
        self._ds.update_tags(**tags)

    def write(self, array: np.ndarray, window: Window, mask: np.ndarray | None = None) -> None:
        """Write ``(bands, rows, cols)`` of this writer's dtype at ``window``.

        Args:
            array: the pixels.
            window: where.
            mask: bool, True where a sample is invalid (same shape): written as the internal
                mask when the writer has one (nodata values carry it otherwise).
        """
        self._ds.write(array.astype(self.dtype, copy=False), window=window)
        self._write_mask(mask, window)

    def write_rows(self, array: np.ndarray, row_off: int, mask: np.ndarray | None = None) -> None:
        """Write full-width rows (``(bands, rows, width)``), given in increasing row order;
        ``mask`` as for :meth:`write`."""
        rows = array.shape[1]
        if self._strip is None:
            self._strip = np.empty((self.count, BLOCKSIZE, self.grid.width), dtype=self.dtype)
            self._strip_mask = np.zeros((BLOCKSIZE, self.grid.width), dtype=bool)
            self._strip_row = row_off
        if row_off != self._strip_row + self._strip_fill:
            raise ValueError(
                f"rows must be contiguous: got {row_off}, expected "
                f"{self._strip_row + self._strip_fill}"
            )
        done = 0
        while done < rows:
            n = min(rows - done, BLOCKSIZE - self._strip_fill)
            self._strip[:, self._strip_fill : self._strip_fill + n] = array[:, done : done + n]
            if self.internal_mask:
                self._strip_mask[self._strip_fill : self._strip_fill + n] = (
                    False if mask is None else mask[:, done : done + n].all(axis=0))
            self._strip_fill += n
            done += n
            if self._strip_fill == BLOCKSIZE:
                self._flush_strip()

    def write_float_rows(self, rows: np.ndarray, row_off: int, scale: float,
                         mask: np.ndarray | None = None, *, offset: float = 0.0) -> None:
        """Write full-width float rows (units of ``scale``, DN ``offset``, see
        :func:`from_float`) as DN with :meth:`write_rows`; samples that are NaN or True in
        ``mask`` are invalid (the nodata value, or masked in the internal mask)."""
        invalid = ~np.isfinite(rows) if mask is None else ~np.isfinite(rows) | mask
        self.write_rows(from_float(rows, self.dtype, scale, self.nodata, mask=invalid,
                                   offset=offset), row_off, mask=invalid)

    def _write_mask(self, mask: np.ndarray | None, window: Window) -> None:
        """The internal mask of ``window`` (a pixel is masked where all bands of ``mask`` are;
        none: all valid); nothing without an internal mask."""
        if not self.internal_mask:
            return
        if mask is None:
            valid = np.full((int(window.height), int(window.width)), 255, np.uint8)
        else:
            valid = np.where(mask.all(axis=0), 0, 255).astype(np.uint8)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            self._ds.write_mask(valid, window=window)

    def _flush_strip(self) -> None:
        if self._strip is not None and self._strip_fill:
            win = Window(0, self._strip_row, self.grid.width, self._strip_fill)
            self._ds.write(self._strip[:, : self._strip_fill], window=win)
            self._write_mask(self._strip_mask[None, : self._strip_fill], win)
            self._strip_row += self._strip_fill
            self._strip_fill = 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._flush_strip()
            self._ds.close()
            _verify_written(self._tmp, self.path)
            if self.cog:
                final = temp_path(self.path, ".cog.tmp.tif")
                try:
                    _to_cog(self._tmp, final, self.options)
                except Exception:
                    final.unlink(missing_ok=True)
                    raise
                self._tmp.unlink()
                self._tmp = final
            replace(self._tmp, self.path)
            self._tmp = None
        except Exception:
            self._abort()
            raise

    def _abort(self) -> None:
        if self._ds is not None and not self._ds.closed:
            self._ds.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _verify_written(tmp: Path, path: Path) -> None:
    """Re-open a just-written GeoTIFF and decode its last block of every band.

    GDAL only logs some write failures (disk full, file size limit) and leaves a truncated file;
    this turns them into an error before the file is published under its final name.
    """
    try:
        with rasterio.open(tmp) as ds:
            ds.read(window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except RasterioIOError as exc:
        raise InputError(f"{path}: writing failed (disk full or not writable?): {exc}") from exc


def _to_cog(src: Path, dst: Path, options: dict) -> None:
    """Copy ``src`` to a COG at ``dst`` with GDAL's COG driver (overviews down to one block)."""
    predictor = {2: "STANDARD", 3: "FLOATING_POINT"}.get(options.get("predictor"), "NO")
    rasterio.shutil.copy(
        src,
        dst,
        driver="COG",
        BLOCKSIZE=BLOCKSIZE,
        COMPRESS=options["compress"],
        PREDICTOR=predictor,
        OVERVIEWS="IGNORE_EXISTING",
        OVERVIEW_RESAMPLING="AVERAGE",
        BIGTIFF="IF_SAFER",
    )


def write_geotiff(path: str | os.PathLike, array: np.ndarray, grid: Grid,
                  mask: np.ndarray | None = None, **options: Any) -> Path:
    """Write a whole ``(bands, rows, cols)`` array atomically.

    Args:
        path: the GeoTIFF to write.
        array: the pixels, of the output's dtype.
        grid: the output grid (its shape must be the array's).
        mask: bool ``(bands, rows, cols)`` or ``(rows, cols)``, True where invalid: written as
            an internal mask (a pixel is masked where all its bands are; give no ``nodata``).
        **options: :class:`GeoTIFFWriter` options (``nodata``, ``descriptions``, ``tags``,
            ``cog``, ``compress``, ``meta``).

    Returns:
        ``path``.
    """
    if array.ndim != 3 or array.shape[1:] != grid.shape:
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    with GeoTIFFWriter(path, grid, count=array.shape[0], dtype=array.dtype,
                       internal_mask=mask is not None, **options) as w:
        w.write(array, Window(0, 0, grid.width, grid.height),
                None if mask is None else mask.reshape(-1, *grid.shape))
    return Path(path)
