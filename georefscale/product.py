"""The downlink product's description: :class:`LRInfo` <-> ``GEOREFSCALE_*`` tags.

An LR product (a GeoTIFF, or a coded file such as JPEG 2000) carries tags that say how it was
made: factor, model, reference ids and checksums, the residual reference shift estimated on
board, source dtype and DN scale, the target grid, tile and halo, band names, and the tiles that
fell back to the no-reference model (a compact tile-range text, see :func:`encode_ranges`).
``ground`` restores the grid from them and refuses another reference.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from affine import Affine
from rasterio.io import DatasetReader

from georefscale.errors import InputError
from georefscale.raster.grid import Grid
from georefscale.raster.io import georefscale_tags, prefixed
from georefscale.tiling import Tiling

if TYPE_CHECKING:
    from georefscale.options import TilingOptions

__all__ = ["FORMAT_VERSION", "LRInfo", "decode_ranges", "encode_ranges"]

#: Version of the tag layout, written as ``GEOREFSCALE_FORMAT``.
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class LRInfo:
    """What an LR product records about how it was made (its ``GEOREFSCALE_*`` tags)."""

    factor: int
    model: str
    reference_ids: tuple[str, ...]
    reference_sha256: tuple[str, ...]
    shift: tuple[float, float]  # (dx, dy) in target pixels, applied to the reference grid
    shift_error: float | None
    source_dtype: str
    scale: float  # DN per 1.0
    target_grid: Grid
    tile: int
    halo: int
    #: band names of the target (also kept where the container drops descriptions, e.g. JP2)
    bands: tuple[str, ...] = ()
    #: no-reference model used for the tiles in ``fallback_tiles`` (None: no fallback possible)
    fallback_model: str | None = None
    #: row-major indices (``row * n_cols + col``) of the tiles made without the reference
    fallback_tiles: tuple[int, ...] = field(default=())

    def tiling(self, tiling: TilingOptions | None = None) -> Tiling:
        """The product's tiling: the recorded tile and halo, or those of ``tiling``.

        Args:
            tiling: tile / halo to use instead of the recorded ones (None: as recorded).

        Returns:
            The :class:`~georefscale.tiling.Tiling` of the target grid at the product's factor.
        """
        g = self.target_grid
        tile = self.tile if tiling is None else tiling.tile
        halo = self.halo if tiling is None else tiling.halo
        return Tiling(g.height, g.width, factor=self.factor, tile=tile, halo=halo)

    def tile_index(self, row: int, col: int) -> int:
        """Row-major index of tile (``row``, ``col``) of the recorded tiling, as listed in
        ``GEOREFSCALE_FALLBACK_TILES``."""
        return row * self.tiling().n_cols + col

    def to_tags(self) -> dict[str, str]:
        """The product's ``GEOREFSCALE_*`` tags (text values, as GDAL stores them)."""
        t = self.target_grid.transform
        tags: dict[str, object] = {
            "FORMAT": FORMAT_VERSION,
            "FACTOR": self.factor,
            "MODEL": self.model,
            "REFERENCE_ID": ";".join(self.reference_ids),
            "REFERENCE_SHA256": ";".join(self.reference_sha256),
            "SHIFT": json.dumps(list(self.shift)),
            "SHIFT_ERROR": "" if self.shift_error is None else repr(self.shift_error),
            "SOURCE_DTYPE": self.source_dtype,
            "SCALE": repr(self.scale),
            "TARGET_WIDTH": self.target_grid.width,
            "TARGET_HEIGHT": self.target_grid.height,
            "TARGET_TRANSFORM": json.dumps(list(t[:6])),
            "TILE": self.tile,
            "HALO": self.halo,
        }
        if self.bands:
            tags["BANDS"] = json.dumps(list(self.bands))
        if self.fallback_model is not None:
            tags["FALLBACK_MODEL"] = self.fallback_model
            tags["FALLBACK_TILES"] = encode_ranges(self.fallback_tiles)
        return prefixed(tags)

    @classmethod
    def from_dataset(cls, ds: DatasetReader, path: str | os.PathLike) -> LRInfo:
        """Parse the tags of an open LR product; InputError if they are missing or broken."""
        tags = georefscale_tags(ds)
        if not tags:
            raise InputError(f"{path}: not a georefscale LR product (no GEOREFSCALE_* tags)")
        try:
            # GDAL drops empty tags: no reference -> no REFERENCE_* tags
            ids, shas = tags.get("REFERENCE_ID", ""), tags.get("REFERENCE_SHA256", "")
            grid = Grid(
                crs=ds.crs,
                transform=Affine(*json.loads(tags["TARGET_TRANSFORM"])),
                width=int(tags["TARGET_WIDTH"]),
                height=int(tags["TARGET_HEIGHT"]),
            )
            return cls(
                factor=int(tags["FACTOR"]),
                model=tags["MODEL"],
                reference_ids=tuple(ids.split(";")) if ids else (),
                reference_sha256=tuple(shas.split(";")) if shas else (),
                shift=tuple(float(v) for v in json.loads(tags["SHIFT"])),
                shift_error=float(tags["SHIFT_ERROR"]) if tags.get("SHIFT_ERROR") else None,
                source_dtype=tags["SOURCE_DTYPE"],
                scale=float(tags["SCALE"]),
                target_grid=grid,
                tile=int(tags["TILE"]),
                halo=int(tags["HALO"]),
                bands=tuple(str(b) for b in json.loads(tags.get("BANDS", "[]"))),
                fallback_model=tags.get("FALLBACK_MODEL") or None,
                fallback_tiles=decode_ranges(tags.get("FALLBACK_TILES", "")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: georefscale tags are incomplete or invalid ({exc})") from exc


def encode_ranges(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (sorted, compact); ``"none"`` when empty (GDAL
    drops empty tags)."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(set(indices)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts) or "none"


def decode_ranges(text: str) -> tuple[int, ...]:
    """Inverse of :func:`encode_ranges` (ValueError on malformed text)."""
    out: list[int] = []
    for part in filter(None, text.replace("none", "").split(",")):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b) if b else int(a)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad tile range {part!r}")
        out.extend(range(lo, hi + 1))
    return tuple(out)
