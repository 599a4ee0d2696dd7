"""rasterio-level helpers: grids, checked I/O with DN <-> float scaling, reference alignment.

The names below are imported on first use, so ``import georefscale.raster`` stays light
(alignment pulls scikit-image and scipy only when it is used).
"""

from __future__ import annotations

from georefscale.lazy import lazy_exports

#: Public names re-exported lazily: name -> module that defines it.
_LAZY = {
    "Grid": "georefscale.raster.grid",
    "GeoTIFFWriter": "georefscale.raster.io",
    "default_scale": "georefscale.raster.io",
    "from_float": "georefscale.raster.io",
    "open_raster": "georefscale.raster.io",
    "read_window": "georefscale.raster.io",
    "to_float": "georefscale.raster.io",
    "write_geotiff": "georefscale.raster.io",
    "align": "georefscale.raster.align",
    "align_window": "georefscale.raster.align",
    "estimate_shift": "georefscale.raster.align",
    "overlaps": "georefscale.raster.align",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("georefscale.raster", _LAZY, globals())
