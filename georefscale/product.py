"""The downlink product's description: :class:`LRInfo` <-> ``GEOREFSCALE_*`` tags.

An LR product (a GeoTIFF, or a coded file such as JPEG 2000) carries tags that say how it was
made: factor, model, reference ids and checksums, the reference warp measured on board
(:class:`~georefscale.raster.coreg.Coregistration`), source dtype and DN scale, the target grid,
tile and halo, band names, and the tiles that fell back to the no-reference model (a compact
tile-range text, see :func:`encode_ranges`).
``ground`` restores the grid from them and refuses another reference.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from affine import Affine
from rasterio.io import DatasetReader

from georefscale.errors import InputError
from georefscale.masks import check_mask
from georefscale.options import TilingOptions, check_factor
from georefscale.raster.clouds import KINDS as CLOUD_KINDS
from georefscale.raster.coreg import Coregistration
from georefscale.raster.grid import Grid
from georefscale.raster.io import DEFAULT_SCALES, BandMeta, georefscale_tags, prefixed
from georefscale.raster.refmask import MaskRecord
from georefscale.tiling import Tiling

__all__ = ["FORMAT_VERSION", "MODES", "LRInfo", "decode_ranges", "encode_ranges"]

#: Newest version of the tag layout, written as ``GEOREFSCALE_FORMAT``. A product is written
#: in the oldest layout that holds it: "2" only for an affine reference warp or a shift field
#: (``COREG``), which a reader of "1" would otherwise apply as the plain ``SHIFT``, or clouds
#: filled in the reference (``REFERENCE_CLOUDS``), which it would not fill; "3" for references
#: masked by a given mask (``REFERENCE_MASKS``), which a reader of "2" would not apply.
FORMAT_VERSION = "3"
#: The layouts this version reads.
FORMATS = ("1", "2", "3")
#: What a model name recorded in a product may look like (never a path).
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?<!\.safetensors)")
_IDENTITY = re.compile(r"(px1:)?[0-9a-f]{64}")
#: The tag holding :func:`tags_digest`; products without it (older versions) are read unchecked.
DIGEST_TAG = "TAGS_SHA256"
#: Tags outside the digest: itself, and the link codec's, added after the product was made.
_UNSIGNED = {DIGEST_TAG, "CODEC", "QUALITY"}


@dataclass(frozen=True)
class LRInfo:
    """What an LR product records about how it was made (its ``GEOREFSCALE_*`` tags)."""

    factor: int
    model: str
    reference_ids: tuple[str, ...]
    reference_identity: tuple[str, ...]
    #: the reference warp measured on board; both sides warp the reference with it
    coreg: Coregistration
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
    #: row-major indices of the tiles made with plain bicubic (chosen by measurement, see
    #: :class:`~georefscale.options.FallbackPolicy`); disjoint from ``fallback_tiles``
    bicubic_tiles: tuple[int, ...] = field(default=())
    #: per tile (row-major), what the reference gained on board, measured: PSNR of the
    #: reference model minus that of the best mode without it (dB; NaN where the reference was
    #: not tried); empty when tiles were not decided by measurement
    tile_gains_db: tuple[float, ...] = field(default=())
    #: the target's scale / offset, units, band tags, colour interpretation, other tag domains
    #: (None: all default); kept on the LR and the HR, also through codecs that drop them
    meta: BandMeta | None = None
    #: the target's exact per-sample nodata mask, encoded (:mod:`georefscale.masks`); None
    #: when the target has no nodata sample
    nodata_mask: str | None = None
    #: DN added before dividing by ``scale`` (``(DN + offset) / scale``): -1000 for Sentinel-2
    #: L2A of baseline 04.00 on (see :func:`~georefscale.convention.dn_convention`); LR and HR
    #: keep the target's convention
    offset: float = 0.0
    #: 2 for the base layer of a two-layer product (an enhancement layer belongs to it)
    layers: int = 1
    #: the spectral cloud test whose clouds and shadows are filled in the reference tiles on
    #: both sides (:func:`~georefscale.raster.clouds.clear_reference`); None: none
    reference_clouds: str | None = None
    #: per reference, the mask given for it (:class:`~georefscale.raster.refmask.MaskRecord`)
    #: or None; empty when no reference has one. The ground applies the same masks
    reference_masks: tuple[MaskRecord | None, ...] = ()

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

    def tile_mode(self, index: int) -> str:
        """How tile ``index`` (row-major) was made, one of :data:`MODES`: ``"model"``,
        ``"fallback"`` (the no-reference model) or ``"bicubic"``."""
        if index in self.fallback_tiles:
            return "fallback"
        return "bicubic" if index in self.bicubic_tiles else "model"

    @property
    def format(self) -> str:
        """The ``FORMAT`` tag: the oldest tag layout that holds this product."""
        return _format(self.coreg, self.reference_clouds, self.reference_masks)

    @property
    def shift(self) -> tuple[float, float]:
        """The ``SHIFT`` tag: the reference's displacement ``(dx, dy)`` (target pixels), exact
        for a translation, at the target's centre for an affine warp."""
        if self.coreg.kind == "affine":
            g = self.target_grid
            return self.coreg.shift_at(g.width / 2, g.height / 2)
        return self.coreg.matrix[2], self.coreg.matrix[5]

    @property
    def shift_error(self) -> float | None:
        """The ``SHIFT_ERROR`` tag: the mean phase-correlation error of the windows used."""
        return self.coreg.error

    def tile_index(self, row: int, col: int) -> int:
        """Row-major index of tile (``row``, ``col``) of the recorded tiling, as listed in
        ``GEOREFSCALE_FALLBACK_TILES``."""
        return row * self.tiling().n_cols + col

    def to_tags(self) -> dict[str, str]:
        """The product's ``GEOREFSCALE_*`` tags (text values, as GDAL stores them)."""
        t = self.target_grid.transform
        tags: dict[str, object] = {
            "FORMAT": self.format,
            "FACTOR": self.factor,
            "MODEL": self.model,
            "REFERENCE_ID": ";".join(self.reference_ids),
            "REFERENCE_IDENTITY": ";".join(self.reference_identity),
            "SHIFT": json.dumps(list(self.shift)),
            "SHIFT_ERROR": "" if self.shift_error is None else repr(self.shift_error),
            "COREG": "" if self.coreg.kind == "none" else self.coreg.to_json(),
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
        if self.meta is not None:
            tags["META"] = self.meta.to_json()
        if self.nodata_mask is not None:
            tags["NODATA_MASK"] = self.nodata_mask
        if self.layers != 1:
            tags["LAYERS"] = self.layers
        if self.reference_clouds is not None:
            tags["REFERENCE_CLOUDS"] = self.reference_clouds
        if any(self.reference_masks):
            tags["REFERENCE_MASKS"] = json.dumps(
                [None if m is None else m.to_dict() for m in self.reference_masks])
        if self.offset:
            tags["OFFSET"] = repr(self.offset)
        if self.fallback_model is not None:
            tags["FALLBACK_MODEL"] = self.fallback_model
            tags["FALLBACK_TILES"] = encode_ranges(self.fallback_tiles)
        if self.bicubic_tiles:
            tags["BICUBIC_TILES"] = encode_ranges(self.bicubic_tiles)
        if self.tile_gains_db:
            tags["TILE_GAINS_DB"] = encode_gains(self.tile_gains_db)
        text = {k: str(v) for k, v in tags.items()}
        text[DIGEST_TAG] = tags_digest(text)
        return prefixed(text)

    @classmethod
    def from_dataset(cls, ds: DatasetReader, path: str | os.PathLike) -> LRInfo:
        """Parse and validate the tags of an open LR product, before any work.

        Tags come from elsewhere (a product received over a link): every one is checked
        against its schema and against the file it sits in (bounds derived from the raster's
        own size), and model names must be names, never paths.

        Args:
            ds: the open product.
            path: its name, for messages.

        Raises:
            InputError: tags missing, malformed or inconsistent with the file.
        """
        tags = georefscale_tags(ds)
        if not tags:
            raise InputError(f"{path}: not a georefscale LR product (no GEOREFSCALE_* tags)")
        if DIGEST_TAG in tags and tags[DIGEST_TAG] != tags_digest(tags):
            raise InputError(f"{path}: georefscale tags were changed after the product was made "
                             f"({DIGEST_TAG} does not match)")
        try:
            info = cls._parse(tags, ds)
        except (KeyError, ValueError, TypeError, InputError) as exc:
            raise InputError(f"{path}: georefscale tags are incomplete or invalid ({exc})") from exc
        return info

    @classmethod
    def _parse(cls, tags: dict[str, str], ds: DatasetReader) -> LRInfo:
        fmt = tags.get("FORMAT", "1")
        if fmt not in FORMATS:
            raise ValueError(f"FORMAT {fmt!r} is not one this version reads "
                             f"({', '.join(FORMATS)})")
        factor = int(tags["FACTOR"])
        check_factor(factor)
        width, height = int(tags["TARGET_WIDTH"]), int(tags["TARGET_HEIGHT"])
        if (-(-width // factor), -(-height // factor)) != (ds.width, ds.height):
            raise ValueError(f"TARGET_WIDTH / HEIGHT {width} x {height} do not match the "
                             f"{ds.width} x {ds.height} product at x{factor}")
        transform = _numbers(tags["TARGET_TRANSFORM"], 6, "TARGET_TRANSFORM")
        affine = Affine(*transform)
        if affine.determinant == 0:
            raise ValueError("TARGET_TRANSFORM is degenerate")
        shift = _numbers(tags["SHIFT"], 2, "SHIFT")
        if abs(shift[0]) > width or abs(shift[1]) > height:
            raise ValueError(f"SHIFT {shift} is larger than the scene")
        shift_error = float(tags["SHIFT_ERROR"]) if tags.get("SHIFT_ERROR") else None
        coreg = _coreg(tags, shift, shift_error, width, height)
        clouds = tags.get("REFERENCE_CLOUDS") or None
        if clouds is not None and clouds not in CLOUD_KINDS:
            raise ValueError(f"REFERENCE_CLOUDS {clouds!r} is not one of "
                             f"{', '.join(CLOUD_KINDS)}")
        masks = _masks(tags.get("REFERENCE_MASKS", ""), clouds)
        needs = _format(coreg, clouds, masks)
        if fmt != needs:
            raise ValueError(f"FORMAT {fmt} does not fit the product's tags (COREG "
                             f"{coreg.kind}, REFERENCE_CLOUDS {clouds}, REFERENCE_MASKS "
                             f"{sum(m is not None for m in masks)}: FORMAT {needs})")
        dtype = tags["SOURCE_DTYPE"]
        if dtype not in DEFAULT_SCALES:
            raise ValueError(f"SOURCE_DTYPE {dtype!r} is not one of {', '.join(DEFAULT_SCALES)}")
        scale = float(tags["SCALE"])
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"SCALE {scale} must be a positive number")
        offset = float(tags.get("OFFSET", "0"))
        if not math.isfinite(offset) or abs(offset) > scale:
            raise ValueError(f"OFFSET {offset} must be a number within the scale ({scale:g})")
        tiling = TilingOptions(int(tags["TILE"]), int(tags["HALO"]))
        tiles = Tiling(height, width, factor=factor, tile=tiling.tile, halo=tiling.halo)
        bands = json.loads(tags.get("BANDS", "[]"))
        if not isinstance(bands, list) or (bands and len(bands) != ds.count):
            raise ValueError(f"BANDS must list the {ds.count} band names")
        # GDAL drops empty tags: no reference -> no REFERENCE_* tags
        # products of earlier versions recorded the references' byte SHA-256 instead
        ids = tags.get("REFERENCE_ID", "")
        shas = tags.get("REFERENCE_IDENTITY", tags.get("REFERENCE_SHA256", ""))
        reference_ids = tuple(ids.split(";")) if ids else ()
        reference_identity = tuple(shas.split(";")) if shas else ()
        if len(reference_ids) != len(reference_identity):
            raise ValueError("REFERENCE_ID and REFERENCE_IDENTITY differ in length")
        if masks and len(masks) != len(reference_ids):
            raise ValueError("REFERENCE_MASKS must have one entry per reference")
        if any(not _IDENTITY.fullmatch(h) for h in reference_identity):
            raise ValueError("REFERENCE_IDENTITY must be content identities or SHA-256 digests")
        if tags.get("NODATA_MASK"):
            check_mask(tags["NODATA_MASK"], ds.count, width, height)
        fallback_model = tags.get("FALLBACK_MODEL") or None
        for name in (tags["MODEL"], fallback_model):
            if name is not None and not _MODEL_NAME.fullmatch(name):
                raise ValueError(f"model {name!r} is not a model name (paths are never loaded "
                                 "from a product; give the model with --model)")
        fallback_tiles = decode_ranges(tags.get("FALLBACK_TILES", ""), limit=len(tiles))
        bicubic_tiles = decode_ranges(tags.get("BICUBIC_TILES", ""), limit=len(tiles))
        if set(fallback_tiles) & set(bicubic_tiles):
            raise ValueError("FALLBACK_TILES and BICUBIC_TILES share tiles")
        gains = (decode_gains(tags["TILE_GAINS_DB"], len(tiles))
                 if tags.get("TILE_GAINS_DB") else ())
        return cls(
            factor=factor,
            model=tags["MODEL"],
            reference_ids=reference_ids,
            reference_identity=reference_identity,
            coreg=coreg,
            source_dtype=dtype,
            scale=scale,
            target_grid=Grid(crs=ds.crs, transform=affine, width=width, height=height),
            tile=tiling.tile,
            halo=tiling.halo,
            bands=tuple(str(b) for b in bands),
            fallback_model=fallback_model,
            fallback_tiles=fallback_tiles,
            bicubic_tiles=bicubic_tiles,
            tile_gains_db=gains,
            meta=BandMeta.from_json(tags["META"], ds.count) if tags.get("META") else None,
            nodata_mask=tags.get("NODATA_MASK") or None,
            layers=_layers(tags.get("LAYERS", "1")),
            offset=offset,
            reference_clouds=clouds,
            reference_masks=masks,
        )


def _format(coreg: Coregistration, clouds: str | None,
            masks: tuple[MaskRecord | None, ...]) -> str:
    """The oldest tag layout that holds a product (see :data:`FORMAT_VERSION`)."""
    if any(masks):
        return "3"
    return "2" if _needs_format_2(coreg, clouds) else "1"


def _masks(text: str, clouds: str | None) -> tuple[MaskRecord | None, ...]:
    """``REFERENCE_MASKS``: a JSON list of null / mask records (empty text: none).

    Raises:
        ValueError: not such a list, none masked, or given together with REFERENCE_CLOUDS (a
            given mask replaces the spectral test).
    """
    if not text:
        return ()
    if len(text) > 1 << 16:
        raise ValueError("REFERENCE_MASKS is too long")
    entries = json.loads(text)
    if not isinstance(entries, list) or not any(e is not None for e in entries):
        raise ValueError("REFERENCE_MASKS must be a list with at least one mask")
    if clouds is not None:
        raise ValueError("REFERENCE_MASKS and REFERENCE_CLOUDS together (a given mask replaces "
                         "the spectral test)")
    return tuple(None if e is None else MaskRecord.from_dict(e) for e in entries)


def tags_digest(tags: dict[str, str]) -> str:
    """SHA-256 of a product's describing tags (unprefixed; empty ones, which GDAL drops, and
    those added later by the link codec left out): catches tags edited or damaged after the
    product was made. An integrity check, not a signature."""
    body = {k: v for k, v in tags.items() if v != "" and k not in _UNSIGNED}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _layers(text: str) -> int:
    if text not in ("1", "2"):
        raise ValueError(f"LAYERS {text!r} must be 1 or 2")
    return int(text)


def _needs_format_2(coreg: Coregistration, clouds: str | None) -> bool:
    """Whether a reader of FORMAT 1 would rebuild the product differently: an affine warp or a
    shift field (it would apply the plain ``SHIFT``), or filled clouds (it would not fill)."""
    return coreg.kind == "affine" or coreg.field is not None or bool(clouds)


def _coreg(tags: dict[str, str], shift: list[float], shift_error: float | None,
           width: int, height: int) -> Coregistration:
    """The reference warp from ``COREG`` (checked, and against ``SHIFT``), or the plain ``SHIFT``
    of products without it (earlier versions; no correction: the identity)."""
    if not tags.get("COREG"):
        if shift_error is None and shift == [0.0, 0.0]:
            return Coregistration()
        return Coregistration.translation(shift[0], shift[1], shift_error)
    coreg = Coregistration.from_json(tags["COREG"], width, height)
    expected = (coreg.shift_at(width / 2, height / 2) if coreg.kind == "affine"
                else (coreg.matrix[2], coreg.matrix[5]))
    if list(expected) != shift or coreg.error != shift_error:
        raise ValueError("SHIFT / SHIFT_ERROR do not match COREG")
    return coreg


def _numbers(text: str, n: int, name: str) -> list[float]:
    values = json.loads(text)
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{name} must be a list of {n} numbers")
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} has a non-finite number")
    return out


#: How a tile can be made: the product's model, its no-reference twin, plain bicubic.
MODES = ("model", "fallback", "bicubic")
#: Largest measured gain a product may record (dB, either sign).
MAX_GAIN_DB = 100.0


def encode_gains(gains: Iterable[float]) -> str:
    """Per-tile gains (dB) as ``"1.25,-0.40,nan,..."`` (two decimals)."""
    return ",".join("nan" if math.isnan(g) else f"{g:.2f}" for g in gains)


def decode_gains(text: str, n: int) -> tuple[float, ...]:
    """Inverse of :func:`encode_gains` for a product of ``n`` tiles.

    Raises:
        ValueError: not ``n`` numbers, or one outside +-:data:`MAX_GAIN_DB` (NaN allowed).
    """
    parts = text.split(",")
    if len(parts) != n:
        raise ValueError(f"TILE_GAINS_DB must list {n} gains, got {len(parts)}")
    gains = tuple(float(p) for p in parts)
    if any(abs(g) > MAX_GAIN_DB or math.isinf(g) for g in gains if not math.isnan(g)):
        raise ValueError(f"TILE_GAINS_DB has a gain outside +-{MAX_GAIN_DB:g} dB")
    return gains


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


def decode_ranges(text: str, limit: int | None = None) -> tuple[int, ...]:
    """Inverse of :func:`encode_ranges`.

    Args:
        text: the ranges.
        limit: every index must be below this (checked before anything is expanded).

    Raises:
        ValueError: malformed text or an index out of bounds.
    """
    spans = []
    for part in filter(None, text.replace("none", "").split(",")):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b) if b else int(a)
        if lo < 0 or hi < lo or (limit is not None and hi >= limit):
            raise ValueError(f"bad tile range {part!r}" + (f" (of {limit} tiles)" if limit
                                                           is not None else ""))
        spans.append((lo, hi))
    if limit is not None and sum(hi - lo + 1 for lo, hi in spans) > limit:
        raise ValueError(f"more tile indices than the {limit} tiles")
    return tuple(i for lo, hi in spans for i in range(lo, hi + 1))
