"""Pixel grids: a CRS, an affine transform (pixel -> CRS coordinates) and a size in pixels.

A window is a :class:`rasterio.windows.Window` in the grid's pixel coordinates (column/row offsets
may be negative or run past the edge: a halo that leaves the raster). Bounds are
``(left, bottom, right, top)`` in the grid's CRS units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio import windows
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.windows import Window


@dataclass(frozen=True)
class Grid:
    """A georeferenced pixel grid (``height`` rows by ``width`` columns)."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def from_dataset(cls, ds: DatasetReader) -> Grid:
        """The grid of an open rasterio dataset."""
        return cls(crs=ds.crs, transform=ds.transform, width=ds.width, height=ds.height)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive (for north-up and rotated grids)."""
        a, b, _, d, e, _ = self.transform[:6]
        return (math.hypot(a, d), math.hypot(b, e))

    @property
    def bounds(self) -> BoundingBox:
        """(left, bottom, right, top) of the whole grid in CRS units."""
        return self.window_bounds(Window(0, 0, self.width, self.height))

    def scaled(self, factor: int) -> Grid:
        """Same origin and CRS, pixels ``factor`` times larger, size ``ceil(size / factor)``.

        The last row/column of the coarse grid may extend past the fine grid by less than one
        coarse pixel (the tiler pads the fine raster up to a multiple of ``factor``).
        """
        if factor < 1 or int(factor) != factor:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        f = int(factor)
        return Grid(
            crs=self.crs,
            transform=self.transform @ Affine.scale(f),
            width=-(-self.width // f),
            height=-(-self.height // f),
        )

    def window_bounds(self, window: Window) -> BoundingBox:
        """Bounds of ``window`` (pixel coordinates of this grid) in CRS units."""
        return BoundingBox(*windows.bounds(window, self.transform))

    def bounds_window(self, bounds: tuple[float, float, float, float]) -> Window:
        """The (fractional) window of this grid covering ``bounds`` given in this grid's CRS."""
        left, bottom, right, top = bounds
        return windows.from_bounds(left, bottom, right, top, transform=self.transform)

    def window_grid(self, window: Window) -> Grid:
        """The grid of the pixels inside ``window`` (integer offsets and size)."""
        w = window.round_offsets().round_lengths() if _fractional(window) else window
        return Grid(
            crs=self.crs,
            transform=windows.transform(w, self.transform),
            width=int(w.width),
            height=int(w.height),
        )

    def shifted(self, dx: float, dy: float) -> Grid:
        """The same grid moved by (dx, dy) of its own pixels (columns, rows)."""
        return Grid(self.crs, self.transform @ Affine.translation(dx, dy), self.width, self.height)

    def to_dict(self) -> dict:
        """JSON-friendly form (CRS as WKT, transform as its first six coefficients)."""
        return {
            "crs": self.crs.to_wkt() if self.crs else None,
            "transform": list(self.transform[:6]),
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        """Inverse of :meth:`to_dict`."""
        return cls(
            crs=CRS.from_user_input(d["crs"]) if d.get("crs") else None,
            transform=Affine(*d["transform"]),
            width=int(d["width"]),
            height=int(d["height"]),
        )


def _fractional(window: Window) -> bool:
    return any(v != int(v) for v in (window.col_off, window.row_off, window.width, window.height))
