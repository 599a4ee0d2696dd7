"""A smooth field of local shifts on top of a reference's global warp, for references whose
misregistration is not affine (terrain, another orthorectification), and its application in the
same single resampling.

The field gives, at target pixel ``p`` (columns, rows), the displacement ``f(p)`` (target
pixels) added to the global warp ``A``: the reference is sampled at ``A * p + f(p)``. It is held
as values on a square grid of nodes every :attr:`ShiftField.spacing` target pixels (node
``(i, j)`` at column ``j * spacing``, row ``i * spacing``; the nodes cover the whole target) and
interpolated bilinearly. It is applied in blocks of :data:`BLOCK` x :data:`BLOCK` target pixels
anchored at the target's origin: each block is warped by GDAL with the affine that matches the
field's value and gradient at the block's centre (:meth:`ShiftField.block_warps`), so every
target pixel is resampled once from the reference, and a given pixel gets the same affine
whatever tile it is computed for, on board and on the ground.

:func:`fit_field` decides whether a scene needs the field and builds it from the windows'
residuals to the global warp (see its rule).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window

__all__ = ["BLOCK", "ShiftField", "fit_field"]

#: side (target pixels) of the blocks warped with one local affine; node spacings are multiples
BLOCK = 32
#: the field is used when, at some window, the mean residual of the usable windows in its 3 x 3
#: neighbourhood is longer than this (target pixels): at most 0.32 px on the OSCD pairs whose
#: global warp fits (one window's residual is ~0.2 px RMS there)
FIELD_PX = 0.4
#: ... with at least this many usable windows in that neighbourhood
SUPPORT = 5
#: decimals (target pixels) of the recorded node values
DECIMALS = 3
#: a node value may be at most this long (target pixels): windows further off the global warp
#: are outliers, not a smooth misregistration
MAX_FIELD_PX = 4.0
#: at most this many nodes along an axis (the window grid has at most 12)
MAX_NODES = 32
#: weights of a window's 3 x 3 neighbourhood in its mean residual (binomial: about the noise
#: reduction of a plain mean, less of the misregistration smoothed away)
_WEIGHTS = np.outer([1, 2, 1], [1, 2, 1])


@dataclass(frozen=True)
class ShiftField:
    """Displacements on top of a global warp, bilinear between nodes.

    Attributes:
        spacing: node spacing (target pixels, a multiple of :data:`BLOCK`).
        dx: column displacement at each node, rows of nodes (target pixels).
        dy: row displacement at each node (target pixels).
        rms: RMS residual of the windows it was fitted on against the global warp plus the
            field (target pixels).
        windows: usable windows it was fitted on.
    """

    spacing: int
    dx: tuple[tuple[float, ...], ...]
    dy: tuple[tuple[float, ...], ...]
    rms: float
    windows: int

    @staticmethod
    def nodes(width: int, height: int, spacing: int) -> tuple[int, int]:
        """Node rows and columns covering a ``width`` x ``height`` target (pixels)."""
        return math.ceil(height / spacing) + 1, math.ceil(width / spacing) + 1

    def at(self, col: float, row: float) -> tuple[tuple[float, float], np.ndarray]:
        """The displacement ``(dx, dy)`` (target pixels) at target pixel ``(col, row)`` and its
        2 x 2 Jacobian ``[[ddx/dcol, ddx/drow], [ddy/dcol, ddy/drow]]``."""
        vx, vy = np.asarray(self.dx), np.asarray(self.dy)
        x, y = col / self.spacing, row / self.spacing
        j = min(max(int(math.floor(x)), 0), vx.shape[1] - 2)
        i = min(max(int(math.floor(y)), 0), vx.shape[0] - 2)
        u, v = x - j, y - i
        value, jac = [], np.zeros((2, 2))
        for k, grid in enumerate((vx, vy)):
            f00, f01, f10, f11 = grid[i, j], grid[i, j + 1], grid[i + 1, j], grid[i + 1, j + 1]
            value.append((1 - u) * (1 - v) * f00 + u * (1 - v) * f01 + (1 - u) * v * f10
                         + u * v * f11)
            jac[k] = [((1 - v) * (f01 - f00) + v * (f11 - f10)) / self.spacing,
                      ((1 - u) * (f10 - f00) + u * (f11 - f01)) / self.spacing]
        return (float(value[0]), float(value[1])), jac

    def local_warp(self, warp: Affine, col: float, row: float) -> Affine:
        """``warp`` plus the field linearised at target pixel ``(col, row)``: an affine of
        target pixel coordinates (see :mod:`georefscale.raster.coreg`)."""
        (fx, fy), jac = self.at(col, row)
        a, b, c, d, e, f = warp[:6]
        return Affine(a + jac[0, 0], b + jac[0, 1], c + fx - jac[0, 0] * col - jac[0, 1] * row,
                      d + jac[1, 0], e + jac[1, 1], f + fy - jac[1, 0] * col - jac[1, 1] * row)

    def block_warps(self, warp: Affine, window: Window) -> Iterator[tuple[Window, Affine]]:
        """The parts of ``window`` (integer, inside the target) in each :data:`BLOCK` block and
        the affine (target pixel coordinates) each is warped with: ``warp`` plus the field
        linearised at the block's centre."""
        c0, r0 = int(window.col_off), int(window.row_off)
        c1, r1 = c0 + int(window.width), r0 + int(window.height)
        for top in range(r0 // BLOCK * BLOCK, r1, BLOCK):
            for left in range(c0 // BLOCK * BLOCK, c1, BLOCK):
                part = Window(max(left, c0), max(top, r0), min(left + BLOCK, c1) - max(left, c0),
                              min(top + BLOCK, r1) - max(top, r0))
                yield part, self.local_warp(warp, left + BLOCK / 2, top + BLOCK / 2)

    def to_dict(self) -> dict:
        """The ``field`` member of the ``GEOREFSCALE_COREG`` tag."""
        return {"spacing": self.spacing, "dx": [list(r) for r in self.dx],
                "dy": [list(r) for r in self.dy], "rms_px": self.rms, "windows": self.windows}

    @classmethod
    def from_dict(cls, d: object, width: int, height: int, max_windows: int) -> ShiftField:
        """Check and read the ``field`` member of a ``GEOREFSCALE_COREG`` tag (untrusted).

        Args:
            d: the parsed member.
            width: target width (pixels): the nodes must cover it exactly.
            height: target height (pixels).
            max_windows: the most windows a fit can use.

        Raises:
            ValueError: not an object with exactly spacing, dx, dy, rms_px and windows; a
                spacing that is not a positive multiple of :data:`BLOCK`; node arrays of another
                size than the target's (at most :data:`MAX_NODES` a side); values that are not
                finite or longer than :data:`MAX_FIELD_PX`.
        """
        if not isinstance(d, dict) or set(d) != {"spacing", "dx", "dy", "rms_px", "windows"}:
            raise ValueError("COREG field must be an object with spacing, dx, dy, rms_px and "
                             "windows")
        s = d["spacing"]
        if isinstance(s, bool) or not isinstance(s, int) or s < BLOCK or s % BLOCK:
            raise ValueError(f"COREG field spacing must be a positive multiple of {BLOCK} px")
        rows, cols = cls.nodes(width, height, s)
        if max(rows, cols) > MAX_NODES:
            raise ValueError(f"COREG field spacing {s} px gives more than {MAX_NODES} nodes a "
                             f"side on a {width} x {height} target")
        grids = [_node_grid(d[k], rows, cols, f"COREG field {k}") for k in ("dx", "dy")]
        rms = d["rms_px"]
        if isinstance(rms, bool) or not isinstance(rms, int | float) or not (
                0 <= rms <= MAX_FIELD_PX):
            raise ValueError(f"COREG field rms_px must be a number 0 .. {MAX_FIELD_PX}")
        n = d["windows"]
        if isinstance(n, bool) or not isinstance(n, int) or not SUPPORT <= n <= max_windows:
            raise ValueError(f"COREG field windows must be a whole number {SUPPORT} .. "
                             f"{max_windows}")
        return cls(s, grids[0], grids[1], float(rms), n)


def _node_grid(v: object, rows: int, cols: int, name: str) -> tuple[tuple[float, ...], ...]:
    if not (isinstance(v, list) and len(v) == rows
            and all(isinstance(r, list) and len(r) == cols for r in v)):
        raise ValueError(f"{name} must be {rows} rows of {cols} numbers for this target")
    for x in (x for r in v for x in r):
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) \
                or abs(x) > MAX_FIELD_PX:
            raise ValueError(f"{name} must hold finite numbers within {MAX_FIELD_PX} px")
    return tuple(tuple(float(x) for x in r) for r in v)


def fit_field(index: np.ndarray, residuals: np.ndarray, col_centres: np.ndarray,
              row_centres: np.ndarray, width: int, height: int) -> ShiftField | None:
    """The shift field where the global warp leaves systematic residuals, else None.

    The rule: at each window of the window grid with at least :data:`SUPPORT` usable windows in
    its 3 x 3 neighbourhood (itself included), the mean residual of those. When one such mean is
    longer than :data:`FIELD_PX`, the field is the same means with binomial weights (4 / 2 / 1
    for the window / its sides / its corners: less of the misregistration smoothed away; windows
    without the support take the nearest supported window's), interpolated linearly between
    window centres (constant beyond the outer ones) onto nodes every window step (rounded up to
    a multiple of :data:`BLOCK`), rounded to :data:`DECIMALS`.

    Args:
        index: ``(n, 2)`` (row, column) of each usable window in the window grid.
        residuals: ``(n, 2)`` their measured sample positions minus the global warp's (target
            pixels).
        col_centres: centre column of each column of windows (target pixels, increasing).
        row_centres: centre row of each row of windows (target pixels, increasing).
        width: target width (pixels).
        height: target height (pixels).

    Returns:
        The field, or None when no neighbourhood mean is longer than :data:`FIELD_PX`.
    """
    from scipy.ndimage import distance_transform_edt

    shape = (len(row_centres), len(col_centres))
    pad = np.zeros((shape[0] + 2, shape[1] + 2, 3))  # dx, dy, 1 at usable windows; a border
    pad[index[:, 0] + 1, index[:, 1] + 1] = np.column_stack([residuals, np.ones(len(index))])
    plain, weighted = np.zeros((*shape, 3)), np.zeros((*shape, 3))
    for i, j in np.ndindex(3, 3):
        part = pad[i:i + shape[0], j:j + shape[1]]
        plain += part
        weighted += _WEIGHTS[i, j] * part
    supported = plain[..., 2] >= SUPPORT
    if not supported.any():
        return None
    if np.hypot(*(plain[supported, :2] / plain[supported, 2:]).T).max() <= FIELD_PX:
        return None
    mean = weighted[..., :2] / np.maximum(weighted[..., 2:], 1)
    nearest = distance_transform_edt(~supported, return_distances=False, return_indices=True)
    mean = mean[nearest[0], nearest[1]]
    step = max((float(np.diff(c).max()) for c in (col_centres, row_centres) if len(c) > 1),
               default=BLOCK)
    spacing = BLOCK * max(1, math.ceil(step / BLOCK))
    rows, cols = ShiftField.nodes(width, height, spacing)
    node_x, node_y = np.arange(cols) * spacing, np.arange(rows) * spacing
    grids = []
    for k in range(2):
        across = np.array([np.interp(node_x, col_centres, m) for m in mean[..., k]])
        grid = np.array([np.interp(node_y, row_centres, a) for a in across.T]).T
        grid = np.clip(grid.round(DECIMALS), -MAX_FIELD_PX, MAX_FIELD_PX)
        grids.append(tuple(tuple(float(x) for x in r) for r in grid))
    field = ShiftField(spacing, grids[0], grids[1], rms=0.0, windows=len(index))
    centres = np.column_stack([col_centres[index[:, 1]], row_centres[index[:, 0]]])
    after = residuals - np.array([field.at(*p)[0] for p in centres])
    rms = round(float(np.sqrt(np.mean(np.sum(after**2, axis=1)))), DECIMALS)
    return ShiftField(spacing, grids[0], grids[1], rms=min(rms, MAX_FIELD_PX),
                      windows=len(index))
