"""rioxarray DataArrays <-> GeoTIFF files, so the file pipeline also serves xarray users.

A DataArray is ``(band, y, x)`` (or ``(y, x)`` for one band) with a CRS and transform set through
rioxarray (``da.rio.crs``, ``da.rio.transform()``). Carried through: nodata (``_FillValue``, also
the encoded one of ``open_rasterio(..., masked=True)``: NaNs go back to the integer nodata and
dtype), band names (the ``long_name`` attribute, else string band coordinates) and the other scalar
attributes as GeoTIFF tags (so ``GEOREFSCALE_*`` tags of an LR product survive the trip).
xarray / rioxarray are imported only when a DataArray is actually handled.

A dask-backed DataArray (:func:`is_lazy`) is written chunk by chunk and results come back
lazily (:func:`open_lazy`): neither is ever held whole in memory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.windows import Window

from georefscale.errors import InputError
from georefscale.raster.grid import Grid
from georefscale.raster.io import (
    BLOCKSIZE,
    GDAL_CACHE_BYTES,
    BandMeta,
    GeoTIFFWriter,
    write_geotiff,
)

if TYPE_CHECKING:  # imported only when a DataArray is handled
    import dask.array
    import xarray as xr

#: Attributes that describe the encoding, not the data: never written as tags.
_NOT_TAGS = {"long_name", "_FillValue", "scale_factor", "add_offset", "AREA_OR_POINT", "units",
             "grid_mapping", "nodatavals", "description"}

#: Pixels per side of the chunks a lazy result is read in (all bands together): a multiple of
#: the GeoTIFF block; 8 MiB for 4 bands of uint16.
CHUNK = 2 * BLOCKSIZE
#: Bytes of one row of blocks computed at once while a dask-backed DataArray is written (at
#: least one block), by whichever scheduler dask is set to (threads, processes, a cluster).
BATCH_BYTES = 64 * 2**20


def is_dataarray(obj: object) -> bool:
    """Whether ``obj`` is an ``xarray.DataArray`` (without importing xarray)."""
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(obj, xr.DataArray)


def label(da: xr.DataArray, what: str) -> str:
    """How messages name a DataArray in the role ``what``."""
    return f"{what} DataArray {da.name!r}" if da.name is not None else f"{what} DataArray"


def is_lazy(obj: object) -> bool:
    """Whether ``obj`` is a DataArray backed by a dask array (``open_rasterio(..., chunks=...)``,
    odc-stac, stackstac): written and returned chunk by chunk, never computed whole."""
    dask_array = sys.modules.get("dask.array")
    return (is_dataarray(obj) and dask_array is not None
            and isinstance(obj.data, dask_array.Array))


@dataclasses.dataclass(frozen=True)
class _Encoding:
    """How a DataArray's values become the stored samples of its GeoTIFF.

    Attributes:
        dtype: the stored data type.
        nodata: the stored nodata value, or None.
        meta: per-band scale / offset to record (decoded DataArrays), or None.
        fill: stored value of NaN samples, or None when values are stored as they are.
        factor: decoding scale (stored = rint((value - offset) / factor)).
        offset: decoding offset.
    """

    dtype: np.dtype
    nodata: float | None
    meta: BandMeta | None = None
    fill: float | None = None
    factor: float = 1.0
    offset: float = 0.0

    def encode(self, arr: np.ndarray) -> np.ndarray:
        """Values (any block of the DataArray) -> stored samples of :attr:`dtype`."""
        if self.fill is None:
            return arr
        raw = np.rint((arr.astype(np.float64) - self.offset) / self.factor)
        return np.where(np.isnan(arr), self.fill, raw).astype(self.dtype)


def _encoding(da: xr.DataArray) -> _Encoding:
    """The stored form of ``da`` (``(band, y, x)``): decoded floats (``mask_and_scale`` /
    ``masked``) go back to the integer DN and nodata they were read from."""
    dtype = np.dtype(da.dtype)
    nodata = da.rio.nodata
    encoded = da.rio.encoded_nodata
    enc_dtype = da.encoding.get("dtype") or da.encoding.get("rasterio_dtype")
    int_encoded = enc_dtype is not None and np.dtype(enc_dtype).kind in "ui"
    factor, offset = da.encoding.get("scale_factor"), da.encoding.get("add_offset")
    if (factor is not None or offset is not None) and dtype.kind == "f" and int_encoded:
        # decoded by mask_and_scale: back to the stored DN, scale and offset kept as metadata
        factor, offset = float(factor or 1.0), float(offset or 0.0)
        fill = encoded if encoded is not None else da.encoding.get("_FillValue")
        n = da.shape[0]
        meta = dataclasses.replace(BandMeta.default(n), scales=(factor,) * n,
                                   offsets=(offset,) * n)
        return _Encoding(np.dtype(enc_dtype), None if fill is None else float(fill), meta,
                         fill=0 if fill is None else fill, factor=factor, offset=offset)
    if encoded is not None and dtype.kind == "f" and int_encoded:
        return _Encoding(np.dtype(enc_dtype), float(encoded), fill=encoded)
    if nodata is not None and np.isnan(nodata) and dtype.kind != "f":
        nodata = None
    return _Encoding(dtype, nodata)


def to_geotiff(da: xr.DataArray, path: str | os.PathLike, what: str = "input") -> Path:
    """Write ``da`` as a GeoTIFF at ``path``; returns ``path``.

    A dask-backed DataArray (:func:`is_lazy`) is written block by block (:func:`_blocks`),
    up to :data:`BATCH_BYTES` of a row of blocks at a time, so memory holds about a row of its
    chunks, never the whole array; others are written at once.

    Args:
        da: ``(band, y, x)`` or ``(y, x)`` in any order, with a CRS and a transform.
        path: the GeoTIFF to write.
        what: the DataArray's role, for messages (``"target"``, ``"reference"``, ...).

    Returns:
        ``path``.

    Raises:
        InputError: the DataArray has no CRS or transform, no x/y dimensions, or not one
            dimension besides them.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    name = label(da, what)
    if da.rio.crs is None:
        raise InputError(f"{name}: has no CRS (set one with da.rio.write_crs(...))")
    try:
        xdim, ydim = da.rio.x_dim, da.rio.y_dim
    except Exception as exc:  # rioxarray raises its own DimensionError
        raise InputError(f"{name}: no x/y dimensions ({exc})") from exc
    if da.ndim == 2:
        da = da.expand_dims("band")
    if da.ndim != 3:
        others = [d for d in da.dims if d not in (xdim, ydim)]
        raise InputError(f"{name}: expected (band, y, x), got dims {da.dims}; select one "
                         f"{others[0]!r} (e.g. da.isel({others[0]}=0)) or stack "
                         f"{others} into one band dimension")
    band_dim = next(d for d in da.dims if d not in (xdim, ydim))
    da = da.transpose(band_dim, ydim, xdim)
    enc = _encoding(da)
    count = da.shape[0]
    long_name = da.attrs.get("long_name")
    if isinstance(long_name, list | tuple) and len(long_name) == count:
        descriptions = [str(v) for v in long_name]
    elif isinstance(long_name, str) and count == 1:
        descriptions = [long_name]
    elif da[band_dim].dtype.kind in "UO":
        descriptions = [str(v) for v in da[band_dim].values]
    else:
        descriptions = None
    tags = {
        k: str(v)
        for k, v in da.attrs.items()
        if k not in _NOT_TAGS and isinstance(v, str | int | float | np.number)
    }
    grid = Grid(crs=da.rio.crs, transform=da.rio.transform(), width=da.shape[2],
                height=da.shape[1])
    if grid.transform.is_identity:
        raise InputError(f"{name}: has no geotransform (x/y coordinates missing)")
    options = {"nodata": enc.nodata, "descriptions": descriptions, "tags": tags,
               "meta": enc.meta}
    if not is_lazy(da):
        write_geotiff(path, np.ascontiguousarray(enc.encode(np.asarray(da.values))), grid,
                      **options)
        return Path(path)
    import dask

    blocks = _blocks(da.data).map_blocks(enc.encode, dtype=enc.dtype)
    side_y, side_x = blocks.chunksize[1:]
    batch = max(1, BATCH_BYTES // (count * side_y * side_x * max(enc.dtype.itemsize,
                                                                 da.dtype.itemsize)))
    rows, cols = (np.cumsum((0, *c)) for c in blocks.chunks[1:])
    with (rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),  # not GDAL's 5 % of RAM of blocks
          GeoTIFFWriter(path, grid, count=count, dtype=enc.dtype, **options) as writer):
        for i in range(len(rows) - 1):
            for j0 in range(0, len(cols) - 1, batch):
                js = range(j0, min(j0 + batch, len(cols) - 1))
                for j, part in zip(js, dask.compute(*(blocks.blocks[0, i, j] for j in js)),
                                   strict=True):
                    writer.write(part, Window(cols[j], rows[i], part.shape[2], part.shape[1]))
    return Path(path)


def _blocks(data: dask.array.Array) -> dask.array.Array:
    """``data`` (``(band, y, x)``) rechunked to the blocks it is written in: all bands
    together, and along y and x its largest chunk rounded up to a multiple of the GeoTIFF
    block (:data:`~georefscale.raster.io.BLOCKSIZE`), so each compressed GeoTIFF block is
    written once whole and each of the source's regular chunks is computed once."""
    sides = [-(-max(max(c), 1) // BLOCKSIZE) * BLOCKSIZE for c in data.chunks[1:]]
    return data.rechunk((-1, *sides))


def is_decoded(da: xr.DataArray) -> bool:
    """Whether ``da`` was decoded with a scale / offset (``open_rasterio(mask_and_scale=True)``),
    so results should come back decoded the same way."""
    return da.encoding.get("scale_factor") is not None or da.encoding.get("add_offset") is not None


def from_geotiff(path: str | os.PathLike, name: str | None = None, *,
                 mask_and_scale: bool = False) -> xr.DataArray:
    """Load a GeoTIFF fully into memory as a rioxarray DataArray that does not refer to the
    file (it may be deleted): values, coordinates, attributes, CRS, transform and nodata.

    Args:
        path: the raster.
        name: the DataArray's name.
        mask_and_scale: decode the file's scale / offset and nodata as rioxarray does.
    """
    import rioxarray
    import xarray as xr

    with rioxarray.open_rasterio(path, mask_and_scale=mask_and_scale) as da:
        da = da.load()
        crs, transform = da.rio.crs, da.rio.transform()
        nodata = da.rio.encoded_nodata if mask_and_scale else da.rio.nodata
        coords = {k: v.values for k, v in da.coords.items() if k != "spatial_ref"}
        out = xr.DataArray(np.asarray(da.values), coords=coords, dims=da.dims,
                           attrs=dict(da.attrs), name=name)
        encoding = {k: v for k, v in da.encoding.items() if k not in ("source", "grid_mapping")}
    out = out.rio.write_crs(crs).rio.write_transform(transform)
    out = out.rio.write_nodata(nodata, encoded=mask_and_scale)
    out.encoding.update(encoding)
    return out


class _Owner:
    """Owns a directory of results: removes it when garbage-collected. Lives in the task graph
    of a lazy result (and of every array computed from it); a pickled copy (sent to a dask
    worker) is only the path and owns nothing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        weakref.finalize(self, shutil.rmtree, str(directory), ignore_errors=True)

    def __reduce__(self) -> tuple[type[Path], tuple[str]]:
        return Path, (str(self.directory),)

    def __dask_tokenize__(self) -> str:
        return str(self.directory)


def _kept(block: np.ndarray, owner: _Owner | Path) -> np.ndarray:
    """``block`` itself; ``owner`` rides along in the task so the file stays as long as the
    graph."""
    return block


def open_lazy(path: str | os.PathLike, name: str | None = None, *, mask_and_scale: bool = False,
              owned: bool = False) -> xr.DataArray:
    """Open a GeoTIFF as a dask-backed rioxarray DataArray in :data:`CHUNK` blocks, read
    window by window when computed: values, coordinates, attributes, CRS, transform and
    nodata as :func:`from_geotiff` gives them.

    Args:
        path: the raster; it must stay until the result (and whatever is computed from it) is
            no longer used.
        name: the DataArray's name.
        mask_and_scale: decode the file's scale / offset and nodata as rioxarray does.
        owned: the directory holding ``path`` belongs to the result: it is removed (with
            ``path``) once the result and every array computed lazily from it are
            garbage-collected (or at interpreter exit).

    Returns:
        The lazy DataArray (``encoding["source"]`` is ``path``).
    """
    import rioxarray

    da = rioxarray.open_rasterio(path, chunks={"band": -1, "y": CHUNK, "x": CHUNK}, lock=False,
                                 mask_and_scale=mask_and_scale)
    if owned:
        owner = _Owner(Path(path).parent)
        da = da.copy(data=da.data.map_blocks(_kept, owner, dtype=da.dtype))
    da.name = name
    return da
