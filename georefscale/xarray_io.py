"""rioxarray DataArrays <-> GeoTIFF files, so the file pipeline also serves xarray users.

A DataArray is ``(band, y, x)`` (or ``(y, x)`` for one band) with a CRS and transform set through
rioxarray (``da.rio.crs``, ``da.rio.transform()``). Carried through: nodata (``_FillValue``, also
the encoded one of ``open_rasterio(..., masked=True)``: NaNs go back to the integer nodata and
dtype), band names (the ``long_name`` attribute, else string band coordinates) and the other scalar
attributes as GeoTIFF tags (so ``GEOREFSCALE_*`` tags of an LR product survive the trip).
xarray / rioxarray are imported only when a DataArray is actually handled.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from georefscale.errors import InputError
from georefscale.raster.grid import Grid
from georefscale.raster.io import BandMeta, write_geotiff

if TYPE_CHECKING:  # imported only when a DataArray is handled
    import xarray as xr

#: Attributes that describe the encoding, not the data: never written as tags.
_NOT_TAGS = {"long_name", "_FillValue", "scale_factor", "add_offset", "AREA_OR_POINT", "units",
             "grid_mapping", "nodatavals", "description"}


def is_dataarray(obj: object) -> bool:
    """Whether ``obj`` is an ``xarray.DataArray`` (without importing xarray)."""
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(obj, xr.DataArray)


def label(da: xr.DataArray, what: str) -> str:
    """How messages name a DataArray in the role ``what``."""
    return f"{what} DataArray {da.name!r}" if da.name is not None else f"{what} DataArray"


def to_geotiff(da: xr.DataArray, path: str | os.PathLike, what: str = "input") -> Path:
    """Write ``da`` as a GeoTIFF at ``path``; returns ``path``.

    InputError when the DataArray has no CRS, is not 2-D / 3-D, or has no x/y dimensions.
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
        raise InputError(f"{name}: expected (band, y, x), got dims {da.dims}")
    band_dim = next(d for d in da.dims if d not in (xdim, ydim))
    da = da.transpose(band_dim, ydim, xdim)
    arr = np.asarray(da.values)
    nodata = da.rio.nodata
    encoded = da.rio.encoded_nodata
    enc_dtype = da.encoding.get("dtype") or da.encoding.get("rasterio_dtype")
    int_encoded = enc_dtype is not None and np.dtype(enc_dtype).kind in "ui"
    factor, offset = da.encoding.get("scale_factor"), da.encoding.get("add_offset")
    meta = None
    if (factor is not None or offset is not None) and arr.dtype.kind == "f" and int_encoded:
        # decoded by mask_and_scale: back to the stored DN, scale and offset kept as metadata
        factor, offset = float(factor or 1.0), float(offset or 0.0)
        fill = encoded if encoded is not None else da.encoding.get("_FillValue")
        raw = np.rint((arr.astype(np.float64) - offset) / factor)
        arr = np.where(np.isnan(arr), 0 if fill is None else fill, raw).astype(enc_dtype)
        nodata = None if fill is None else float(fill)
        n = arr.shape[0]
        meta = dataclasses.replace(BandMeta.default(n), scales=(factor,) * n,
                                   offsets=(offset,) * n)
    elif encoded is not None and arr.dtype.kind == "f" and int_encoded:
        arr = np.where(np.isnan(arr), encoded, np.rint(arr)).astype(enc_dtype)
        nodata = float(encoded)
    elif nodata is not None and np.isnan(nodata) and arr.dtype.kind != "f":
        nodata = None
    count = arr.shape[0]
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
    grid = Grid(crs=da.rio.crs, transform=da.rio.transform(), width=arr.shape[2],
                height=arr.shape[1])
    if grid.transform.is_identity:
        raise InputError(f"{name}: has no geotransform (x/y coordinates missing)")
    write_geotiff(path, np.ascontiguousarray(arr), grid, nodata=nodata,
                  descriptions=descriptions, tags=tags, meta=meta)
    return Path(path)


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
