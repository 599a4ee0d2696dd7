"""Overlapping tiles aligned to the rescaling factor, and a seam-free stitcher that streams.

Remainder policy: a raster of ``H x W`` pixels is treated as padded (by mirror reflection) up to
``ceil(H / f) * f`` by ``ceil(W / f) * f``; the LR grid is ``ceil(H / f) x ceil(W / f)``, and the
HR output is cropped back to ``H x W``. No pixel is ever dropped.

A tile has a *core* (the cells it is responsible for; cores partition the padded raster) and a
*window* = core grown by ``halo`` on every side (may leave the raster: reads fill it by
reflection). Tile size, halo and every window offset are multiples of the factor, so the same
tiles exist at HR level (pixels) and LR level (pixels // factor).

The :class:`Stitcher` blends overlapping tile outputs with raised-cosine weights across the
``2 * halo`` overlap (see :func:`blend_weights`), accumulates in float64 and hands finished
rows to a sink as soon as a row of tiles is complete: memory is a few rows of tiles, not the
scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from georefscale.errors import InputError

#: Rows per call to the sink (bounds the temporary arrays of a flush).
CHUNK_ROWS = 64

Sink = Callable[[np.ndarray, int], None]
"""Receives finished full-width rows ``(bands, rows, width)`` (float32) and their first row."""


@dataclass(frozen=True)
class Tile:
    """One tile: its index in the tile grid and its core / halo windows at one level."""

    row: int
    col: int
    core: Window
    window: Window


class Tiling:
    """Tiles over an HR raster of ``height x width`` pixels for a rescaling ``factor``.

    ``tile`` (core size) and ``halo`` are in HR pixels and must be multiples of ``factor``.
    """

    def __init__(self, height: int, width: int, *, factor: int, tile: int = 512, halo: int = 32):
        if factor < 1:
            raise InputError(f"factor must be a positive integer, got {factor}")
        if tile < factor or tile % factor:
            raise InputError(f"tile size {tile} must be a positive multiple of the factor {factor}")
        if halo < 0 or halo % factor:
            raise InputError(f"halo {halo} must be a non-negative multiple of the factor {factor}")
        if height < 1 or width < 1:
            raise InputError(f"raster size {height}x{width} is empty")
        self.height, self.width = height, width
        self.factor, self.tile_size, self.halo = factor, tile, halo
        self.lr_height = math.ceil(height / factor)
        self.lr_width = math.ceil(width / factor)
        self.n_rows = math.ceil(self.lr_height * factor / tile)
        self.n_cols = math.ceil(self.lr_width * factor / tile)

    def shape(self, level: str = "hr") -> tuple[int, int]:
        """(rows, cols) of the raster at ``level`` ("hr": the original, "lr": ceil(size / f))."""
        return (self.height, self.width) if level == "hr" else (self.lr_height, self.lr_width)

    def _div(self, level: str) -> int:
        if level not in ("hr", "lr"):
            raise ValueError(f"level must be 'hr' or 'lr', got {level!r}")
        return 1 if level == "hr" else self.factor

    def _span(self, i: int, n_lr: int, level: str) -> tuple[int, int]:
        """Core [start, stop) of tile index ``i`` along an axis, at ``level``."""
        t = self.tile_size // self.factor
        start, stop = i * t, min((i + 1) * t, n_lr)
        m = self.factor // self._div(level)
        return start * m, stop * m

    def tile(self, row: int, col: int, level: str = "hr") -> Tile:
        """Tile ``(row, col)`` with windows in pixel coordinates of ``level``."""
        r0, r1 = self._span(row, self.lr_height, level)
        c0, c1 = self._span(col, self.lr_width, level)
        h = self.halo // self._div(level)
        core = Window(c0, r0, c1 - c0, r1 - r0)
        return Tile(row, col, core, Window(c0 - h, r0 - h, c1 - c0 + 2 * h, r1 - r0 + 2 * h))

    def rows(self, rows: range | None = None, level: str = "hr") -> Iterator[Tile]:
        """The tiles of tile rows ``rows`` (default: all), row-major, at ``level``."""
        for r in rows if rows is not None else range(self.n_rows):
            for c in range(self.n_cols):
                yield self.tile(r, c, level)

    def tiles(self, level: str = "hr") -> Iterator[Tile]:
        """All tiles in row-major order (the order the stitcher expects)."""
        for r in range(self.n_rows):
            for c in range(self.n_cols):
                yield self.tile(r, c, level)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols


def blend_weights(length: int, halo: int, before: bool = True, after: bool = True) -> np.ndarray:
    """1-D weights over a tile window of ``length`` cells with ``halo`` cells on each side.

    On a side with a neighbouring tile (``before`` / ``after``) the weight is 0 over the outer
    half of the halo (where the tile border disturbs the model), rises as a raised cosine over
    the next ``halo`` cells and is 1 beyond; the neighbour's weight is the mirror image, so the
    two sum to 1 across the ``2 * halo`` overlap. Sides without a neighbour keep weight 1.
    """
    w = np.ones(length, dtype=np.float64)
    if halo > 0:
        k = np.arange(2 * halo) + 0.5 - halo / 2
        ramp = np.where(k < 0, 0.0, np.where(k > halo, 1.0, 0.5 - 0.5 * np.cos(np.pi * k / halo)))
        n = min(2 * halo, length)
        if before:
            w[:n] = np.minimum(w[:n], ramp[:n])
        if after:
            w[length - n :] = np.minimum(w[length - n :], ramp[:n][::-1])
    return w


class Stitcher:
    """Blends tile outputs at ``level`` into full-width rows and streams them to ``sink``.

    Add every tile of ``tiling`` exactly once, in row-major order, as a ``(bands, rows, cols)``
    array covering its window; call :meth:`close` at the end. Rows are cropped to the raster
    (``tiling.shape(level)``). NaN marks nodata: a pixel is NaN if its contributions are.
    """

    def __init__(self, tiling: Tiling, bands: int, sink: Sink, level: str = "hr") -> None:
        self.tiling, self.bands, self.sink, self.level = tiling, bands, sink, level
        self.halo = tiling.halo // tiling._div(level)
        self.height, self.width = tiling.shape(level)
        full = tiling.tile(tiling.n_rows - 1, tiling.n_cols - 1, level).core
        self._cols = int(full.col_off + full.width) + 2 * self.halo  # buffer columns
        self._buf_row = -self.halo  # first raster row held in the buffer
        rows = tiling.tile_size // tiling._div(level) + 2 * self.halo  # one row of tile windows
        self._acc = np.zeros((bands, rows, self._cols))
        self._wsum = np.zeros((rows, self._cols))
        self._next = (0, 0)
        self._written = 0

    def add(self, tile: Tile, array: np.ndarray) -> None:
        """Blend ``array`` (the output for ``tile``'s window at this level) into the buffer."""
        if (tile.row, tile.col) != self._next:
            raise ValueError(
                f"tiles must come in row-major order: expected {self._next}, "
                f"got {(tile.row, tile.col)}"
            )
        win = tile.window
        h, w = int(win.height), int(win.width)
        if array.shape != (self.bands, h, w):
            raise ValueError(
                f"tile {tile.row},{tile.col}: output shape {array.shape}, expected "
                f"{(self.bands, h, w)}"
            )
        r0 = int(win.row_off) - self._buf_row
        c0 = int(win.col_off) + self.halo
        t = self.tiling
        weight = np.outer(
            blend_weights(h, self.halo, tile.row > 0, tile.row < t.n_rows - 1),
            blend_weights(w, self.halo, tile.col > 0, tile.col < t.n_cols - 1),
        )
        self._acc[:, r0 : r0 + h, c0 : c0 + w] += array * weight
        self._wsum[r0 : r0 + h, c0 : c0 + w] += weight
        if tile.col == self.tiling.n_cols - 1:
            last = tile.row == self.tiling.n_rows - 1
            core_end = int(tile.core.row_off + tile.core.height)
            self._flush(self.height if last else core_end - self.halo)
            self._next = (tile.row + 1, 0)
        else:
            self._next = (tile.row, tile.col + 1)

    def _flush(self, stop: int) -> None:
        """Send rows [written, stop) (clipped to the raster) in chunks of ``CHUNK_ROWS`` and move
        the rows from ``stop`` on to the top of the buffer."""
        end = min(stop, self.height)
        cols = slice(self.halo, self.halo + self.width)
        for r in range(self._written, end, CHUNK_ROWS):
            a, b = r - self._buf_row, min(r + CHUNK_ROWS, end) - self._buf_row
            rows = self._acc[:, a:b, cols] / self._wsum[a:b, cols]
            self.sink(rows.astype(np.float32), r)
        self._written = max(self._written, end)
        drop = stop - self._buf_row
        if drop > 0:
            keep = max(self._wsum.shape[0] - drop, 0)
            if keep:
                self._acc[:, :keep] = self._acc[:, drop:].copy()
                self._wsum[:keep] = self._wsum[drop:].copy()
            self._acc[:, keep:] = 0.0
            self._wsum[keep:] = 0.0
            self._buf_row = stop

    def close(self) -> None:
        """Check that every tile was added and every row sent."""
        if self._next != (self.tiling.n_rows, 0) or self._written != self.height:
            raise ValueError(
                f"stitcher closed early: next tile {self._next}, "
                f"{self._written}/{self.height} rows written"
            )


def tile_seed(seed: int, row: int, col: int) -> int:
    """A deterministic 63-bit seed for tile ``(row, col)`` derived from ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, row, col]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & 0x7FFFFFFFFFFFFFFF)


def with_progress(tiles: Iterable[Tile], total: int, what: str,
                  progress: bool | None) -> Iterator[Tile]:
    """``tiles`` with a tqdm bar on stderr.

    Args:
        tiles: the tiles to go through.
        total: how many there are.
        what: the bar's label.
        progress: True (always), False (never) or None (only on a terminal).
    """
    import sys

    from tqdm import tqdm

    yield from tqdm(tiles, total=total, desc=what, unit="tile", file=sys.stderr,
                    disable=None if progress is None else not progress, leave=False)
