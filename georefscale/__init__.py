"""georefscale: reference-based invertible rescaling of georeferenced satellite imagery.

Importing the package is cheap: torch is only imported by :mod:`georefscale.engine`, and the
public names below are imported on first use.

>>> import georefscale
>>> lr = georefscale.onboard("new.tif", catalog="catalogs/naip.parquet", out="lr.tif")
>>> hr = georefscale.ground(lr, catalog="catalogs/naip.parquet", out="hr.tif")
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'georefscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
