"""georefscale: reference-based invertible rescaling of georeferenced satellite imagery.

Importing the package is cheap: torch is only imported by :mod:`georefscale.engine`, and the
public names below are imported on first use. The ``da.georefscale`` accessor of xarray
DataArrays (:mod:`georefscale.accessor`) is registered once xarray is imported.

>>> import georefscale
>>> lr = georefscale.onboard("new.tif", catalog="catalogs/naip.parquet", out="lr.tif")
>>> hr = georefscale.ground(lr, catalog="catalogs/naip.parquet", out="hr.tif")
"""

from __future__ import annotations

from georefscale.lazy import after_import, lazy_exports

__version__ = "0.1.0"

#: Public names re-exported lazily: name -> module that defines it.
_LAZY = {
    "onboard": "georefscale.api",
    "ground": "georefscale.api",
    "roundtrip": "georefscale.api",
    "relevance_map": "georefscale.api",
    "describe_lr": "georefscale.report",
    "LRInfo": "georefscale.product",
    "Catalog": "georefscale.catalog",
    "OnboardOptions": "georefscale.options",
    "GroundOptions": "georefscale.options",
    "TilingOptions": "georefscale.options",
    "FallbackPolicy": "georefscale.options",
    "CodecChoice": "georefscale.options",
    "process_archive": "georefscale.archive",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports("georefscale", _LAZY, globals())


def _register_accessor() -> None:
    from georefscale.accessor import register

    register()


after_import("xarray", _register_accessor)
