"""rasterio-level helpers: grids, checked I/O with DN <-> float scaling, reference alignment."""

from georefscale.raster.align import align, estimate_shift, overlaps
from georefscale.raster.grid import Grid
from georefscale.raster.io import (
    GeoTIFFWriter,
    default_scale,
    from_float,
    open_raster,
    read_window,
    to_float,
    write_geotiff,
)

__all__ = [
    "GeoTIFFWriter",
    "Grid",
    "align",
    "default_scale",
    "estimate_shift",
    "from_float",
    "open_raster",
    "overlaps",
    "read_window",
    "to_float",
    "write_geotiff",
]
