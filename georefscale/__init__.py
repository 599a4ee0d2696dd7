"""georefscale: reference-based invertible rescaling of georeferenced satellite imagery.

Importing the package is cheap: torch is only imported by :mod:`georefscale.engine`, and the
pipeline functions below are imported on first use.

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
    "onboard": "georefscale.pipeline",
    "ground": "georefscale.pipeline",
    "roundtrip": "georefscale.pipeline",
    "relevance_map": "georefscale.pipeline",
    "describe_lr": "georefscale.pipeline",
    "LRInfo": "georefscale.pipeline",
    "Catalog": "georefscale.catalog",
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
