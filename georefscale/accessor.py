"""The ``georefscale`` accessor of xarray DataArrays, as rioxarray offers ``.rio``::

    import georefscale, rioxarray

    scene = rioxarray.open_rasterio("new.tif", chunks={"x": 2048, "y": 2048})
    lr = scene.georefscale.onboard(reference="old.tif")  # lazy, like the scene
    hr = lr.georefscale.ground(reference="old.tif")

Each method is the function of :mod:`georefscale.api` with the DataArray as its first argument
(a dask-backed one is processed chunk by chunk and comes back lazy). ``import georefscale``
registers the accessor as soon as xarray is imported (:func:`register`), without importing
xarray itself, the pipeline or torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    from georefscale.api import Product, Source

__all__ = ["GeorefscaleAccessor", "register"]


class GeorefscaleAccessor:
    """``da.georefscale``: the pipeline on this DataArray (see :mod:`georefscale.api`)."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def onboard(self, reference: Source | Sequence[Source] | None = None,
                **kwargs: Any) -> Product:
        """:func:`georefscale.api.onboard` of this DataArray as the target.

        Args:
            reference: the reference(s): paths, URLs, STAC items or DataArrays.
            **kwargs: the other arguments of :func:`~georefscale.api.onboard` (``out``,
                ``catalog``, ``options``, ...).

        Returns:
            The LR product as a DataArray (lazy when this one is dask-backed).
        """
        from georefscale.api import onboard

        return onboard(self._da, reference, **kwargs)

    def ground(self, reference: Source | Sequence[Source] | None = None,
               **kwargs: Any) -> Product:
        """:func:`georefscale.api.ground` of this DataArray as the LR product.

        Args:
            reference: the reference(s) used on board.
            **kwargs: the other arguments of :func:`~georefscale.api.ground`.

        Returns:
            The HR image as a DataArray (lazy when this one is dask-backed).
        """
        from georefscale.api import ground

        return ground(self._da, reference, **kwargs)

    def roundtrip(self, reference: Source | Sequence[Source] | None = None,
                  **kwargs: Any) -> dict:
        """:func:`georefscale.api.roundtrip` of this DataArray as the target.

        Args:
            reference: the reference(s).
            **kwargs: the other arguments of :func:`~georefscale.api.roundtrip`.

        Returns:
            The summary, with ``"lr"`` and ``"hr"`` DataArrays.
        """
        from georefscale.api import roundtrip

        return roundtrip(self._da, reference, **kwargs)

    def relevance_map(self, reference: Source | Sequence[Source] | None = None,
                      **kwargs: Any) -> Product:
        """:func:`georefscale.api.relevance_map` of this DataArray as the LR product.

        Args:
            reference: the reference(s) used on board.
            **kwargs: the other arguments of :func:`~georefscale.api.relevance_map`.

        Returns:
            The relevance map as a DataArray (lazy when this one is dask-backed).
        """
        from georefscale.api import relevance_map

        return relevance_map(self._da, reference, **kwargs)


def register() -> None:
    """Register :class:`GeorefscaleAccessor` as ``xarray.DataArray.georefscale`` (once)."""
    if "georefscale" not in vars(xr.DataArray):
        xr.register_dataarray_accessor("georefscale")(GeorefscaleAccessor)
