"""On board: a target and its references -> the LR product, tile by tile.

:meth:`OnboardPlan.make` checks the open target and references against the model and decides
once per scene how the scene is made (reference warp, LR tags, tiling, fallback model);
:meth:`OnboardPlan.tile` makes one LR tile anywhere (the plan is picklable, so tile tasks on other
processes give the same tiles); :func:`write_lr` is the single writer of the LR GeoTIFF.
:func:`make_lr` chains the three for one process.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.io import DatasetReader

from georefscale.convention import (
    REBUILD_ALPHA,
    REBUILD_SEED,
    block_all,
    dn_convention,
    fill_nodata,
    normalise,
    reference_dn,
    reference_scale,
)
from georefscale.errors import InputError
from georefscale.masks import encode_mask
from georefscale.metrics import detail_agreement
from georefscale.options import FallbackPolicy, OnboardOptions, check_factor
from georefscale.product import MAX_GAIN_DB, LRInfo
from georefscale.raster.align import overlaps
from georefscale.raster.clouds import cloud_kind, cloud_mask
from georefscale.raster.coreg import Coregistration, coregister
from georefscale.raster.grid import Grid
from georefscale.raster.io import (
    GDAL_CACHE_BYTES,
    BandMeta,
    GeoTIFFWriter,
    check_output,
    from_float,
    has_dataset_mask,
    read_masked,
    to_float,
)
from georefscale.references import ReferenceSet
from georefscale.tiling import Stitcher, Tile, Tiling, with_progress

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

__all__ = ["LRTile", "OnboardPlan", "make_lr", "write_lr"]

#: By how much (dB) a mode without the reference must beat the model to replace it on a tile.
SWITCH_DB = 0.1

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class LRTile:
    """One LR tile as :meth:`OnboardPlan.tile` makes it.

    Attributes:
        row: tile row.
        col: tile column.
        y: float32 ``(bands, h/f, w/f)`` in units of the scale, NaN where all f x f source
            pixels are nodata.
        mode: how it was made, one of :data:`~georefscale.product.MODES`: ``"model"`` (the
            product's model), ``"fallback"`` (its no-reference twin) or ``"bicubic"``.
        gain_db: what the reference gained on this tile, measured (dB; NaN when not measured,
            see :class:`~georefscale.options.FallbackPolicy`).
    """

    row: int
    col: int
    y: np.ndarray
    mode: str = "model"
    gain_db: float = math.nan


@dataclass(frozen=True)
class OnboardPlan:
    """How one target is made on board, decided once per scene by :meth:`make`.

    Attributes:
        model: the rescaler.
        fallback_model: its no-reference twin for the tiles where the reference does not fit
            (None: no fallback).
        info: the LR tags (with the scene's reference warp).
        policy: the fallback thresholds and how tiles are decided.
        bicubic: plain bicubic at the product's factor, a candidate of every tile when the
            policy decides by measurement (else None).
    """

    model: Rescaler
    fallback_model: Rescaler | None
    info: LRInfo
    policy: FallbackPolicy = FallbackPolicy()
    bicubic: Rescaler | None = None

    @classmethod
    def make(
        cls,
        target: DatasetReader,
        datasets: Sequence[DatasetReader],
        references: ReferenceSet,
        *,
        model: Rescaler,
        fallback_model: Rescaler | None,
        options: OnboardOptions,
        target_name: str = "target",
        coreg: Coregistration | None = None,
    ) -> OnboardPlan:
        """Check an open target and open references against ``model`` and decide the scene.

        Args:
            target: the open target.
            datasets: the open references, in the order of ``references``.
            references: what is recorded about them (ids, checksums, labels).
            model: the rescaler (its factor is the product's).
            fallback_model: the no-reference model for tiles (dropped for models that use no
                reference).
            options: tiling, fallback thresholds, shift correction.
            target_name: the target, for messages.
            coreg: the reference warp when already measured (e.g. by a client for all its tile
                tasks); None measures it with :func:`~georefscale.raster.coreg.coregister`
                (the identity without references or with ``correct_shift`` off).

        Raises:
            InputError: bands, dtype, factor or overlap do not fit (naming the file).
        """
        check_factor(model.factor)
        grid = Grid.from_dataset(target)
        dtype = target.dtypes[0]
        scale, offset = dn_convention(target, model, target_name)
        _check_inputs(target, datasets, references, model, grid, target_name)
        if model.uses_reference and not datasets:
            raise InputError(f"{target_name}: model {model.name} needs a reference image")
        if not model.uses_reference:
            fallback_model = None
        meta = BandMeta.from_dataset(target)
        # a mask given for a reference replaces the spectral test
        clouds = _clouds(model, target) if datasets and not references.masks else None
        if coreg is None:
            coreg = Coregistration()
            if datasets and options.correct_shift:
                coreg = coregister(target, datasets, grid, mask=None if clouds is None else
                                   partial(cloud_mask, kind=clouds,
                                           scale=reference_scale(model, dtype)))
        info = LRInfo(
            factor=model.factor,
            model=model.name,
            reference_ids=references.ids,
            reference_identity=references.identity,
            coreg=coreg,
            source_dtype=dtype,
            scale=scale,
            offset=offset,
            target_grid=grid,
            tile=options.tiling.tile,
            halo=options.tiling.halo,
            bands=tuple(d or "" for d in target.descriptions) if any(target.descriptions) else (),
            fallback_model=fallback_model.name if fallback_model is not None else None,
            meta=None if meta.is_default() else meta,
            nodata_mask=encode_mask(target, target_name),
            reference_clouds=clouds if model.uses_reference else None,
            reference_masks=references.masks if model.uses_reference else (),
        )
        info.tiling()  # tile and halo must fit the factor
        bicubic = None
        if options.fallback.decide == "measure" and options.fallback.enabled:
            from georefscale.engine.run import resolve_model

            bicubic = resolve_model("bicubic", model.factor)
        return cls(model, fallback_model, info, options.fallback, bicubic)

    @property
    def tiling(self) -> Tiling:
        return self.info.tiling()

    def reference_fits(self, x: np.ndarray, mask: np.ndarray, raw: np.ndarray) -> bool:
        """Whether a tile is made with its reference.

        Args:
            x: the target tile (normalised).
            mask: its nodata.
            raw: the aligned reference (DN, NaN where it has no data).

        Returns:
            True when ``raw`` covers at least ``min_coverage`` of the window and agrees with
            ``x`` by at least ``min_agreement``.
        """
        if np.isfinite(raw).mean() < self.policy.min_coverage:
            return False
        if self.policy.min_agreement <= 0:
            return True
        target = np.where(mask, np.nan, x)
        return detail_agreement(target, raw, self.info.factor) >= self.policy.min_agreement

    def tile(self, target: DatasetReader, datasets: Sequence[DatasetReader], row: int,
             col: int) -> LRTile:
        """The LR tile (``row``, ``col``) of the open ``target`` with the open references
        (aligned with the recorded warp), or of the no-reference model where the reference
        does not fit (see :meth:`reference_fits`)."""
        from georefscale.engine.run import downscale

        info, model, fallback = self.info, self.model, self.fallback_model
        t = self.tiling.tile(row, col, "hr")
        arr, mask = read_masked(target, t.window)
        x, mask = to_float(arr, info.scale, mask=mask, offset=info.offset)
        x = fill_nodata(x, mask)
        ref = None
        if model.uses_reference:
            raw = reference_dn(datasets, info.target_grid, t.window, info.coreg.warp, model,
                               info.source_dtype, info.reference_clouds, info.coreg.field)
            if fallback is None or self.reference_fits(x, mask, raw):
                ref = normalise(raw, model, info.source_dtype)
        if self.bicubic is not None:
            mode, y, gain = self._measured(x, mask, ref, t)
        elif ref is not None or not model.uses_reference:
            mode, y, gain = "model", downscale(model, x, ref), math.nan
        else:
            mode, y, gain = "fallback", downscale(fallback, x, None), math.nan
        y[block_all(mask, info.factor)] = np.nan
        return LRTile(row, col, y, mode, gain)

    def _measured(self, x: np.ndarray, mask: np.ndarray, ref: np.ndarray | None,
                  t: Tile) -> tuple[str, np.ndarray, float]:
        """The mode that rebuilds tile ``t`` best, its LR and the reference's gain (dB).

        Each candidate (the model when its reference got through the pre-filter, the
        no-reference twin, bicubic) downscales ``x``, its LR is rounded to the source dtype and
        rebuilt at alpha :data:`~georefscale.convention.REBUILD_ALPHA`; the squared error is
        taken over the valid samples of the tile's core.
        """
        from georefscale.engine.run import downscale, upscale

        info = self.info
        candidates: list[tuple[str, Rescaler, np.ndarray | None]] = []
        if ref is not None or not self.model.uses_reference:
            candidates.append(("model", self.model, ref))
        if self.fallback_model is not None:
            candidates.append(("fallback", self.fallback_model, None))
        candidates.append(("bicubic", self.bicubic, None))
        r0, c0 = t.core.row_off - t.window.row_off, t.core.col_off - t.window.col_off
        core = (slice(None), slice(r0, r0 + t.core.height), slice(c0, c0 + t.core.width))
        valid = ~mask[core]
        scale = info.scale
        errors: dict[str, float] = {}
        lrs: dict[str, np.ndarray] = {}
        for mode, m, r in candidates:
            y = downscale(m, x, r)
            sent = to_float(from_float(y, info.source_dtype, scale, offset=info.offset), scale,
                            offset=info.offset)[0]
            hr = upscale(m, sent, r, REBUILD_ALPHA, REBUILD_SEED)
            d = (hr[core] - x[core])[valid]
            errors[mode] = float(np.mean(d.astype(np.float64) ** 2)) if d.size else 0.0
            lrs[mode] = y
        best = min(errors, key=errors.__getitem__)
        if "model" in errors and errors[best] * 10 ** (SWITCH_DB / 10) > errors["model"]:
            best = "model"  # another mode must win clearly (tiles blend into their neighbours)
        without = min(e for mode, e in errors.items() if mode != "model")
        gain = math.nan
        if "model" in errors and self.model.uses_reference and valid.any():
            gain = 10 * math.log10(max(without, 1e-20) / max(errors["model"], 1e-20))
            gain = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, gain))
        return best, lrs[best], gain

    def tiles(self, target: DatasetReader, datasets: Sequence[DatasetReader],
              rows: range | None = None, progress: bool | None = False) -> Iterator[LRTile]:
        """The LR tiles of tile rows ``rows`` (default: all), row-major."""
        n = len(self.tiling) if rows is None else len(rows) * self.tiling.n_cols
        for t in with_progress(self.tiling.rows(rows), n, "onboard", progress):
            yield self.tile(target, datasets, t.row, t.col)


def write_lr(plan: OnboardPlan, target: DatasetReader, out: PathLike, tiles: Iterable[LRTile],
             *, cog: bool = False) -> tuple[int, ...]:
    """The single writer of an LR GeoTIFF.

    Args:
        plan: the scene's plan.
        target: the open target (its tags, band names, nodata or internal mask are kept).
        out: the GeoTIFF to write (atomically).
        tiles: the LR tiles in row-major order (they may be computed anywhere).
        cog: write a Cloud-Optimized GeoTIFF.

    Returns:
        The row-major indices of the tiles made without the reference: those of the
        no-reference model, then the bicubic ones (also recorded in the tags).
    """
    check_output(out)
    info, tiling = plan.info, plan.tiling
    grid, dtype, scale, nodata = info.target_grid, info.source_dtype, info.scale, target.nodata
    decided: dict[str, list[int]] = {"fallback": [], "bicubic": []}
    gains: list[float] = []
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),
        GeoTIFFWriter(
            out,
            grid.scaled(info.factor),
            count=target.count,
            dtype=dtype,
            nodata=nodata,
            descriptions=target.descriptions,
            tags={**target.tags(), **info.to_tags()},
            cog=cog,
            meta=info.meta,
            internal_mask=has_dataset_mask(target),
        ) as writer,
    ):
        stitcher = Stitcher(
            tiling,
            target.count,
            lambda rows, r0: writer.write_float_rows(rows, r0, scale, offset=info.offset),
            level="lr",
        )
        for t in tiles:
            if t.mode != "model":
                decided[t.mode].append(info.tile_index(t.row, t.col))
            gains.append(t.gain_db)
            stitcher.add(tiling.tile(t.row, t.col, "lr"), t.y)
        stitcher.close()
        measured = plan.bicubic is not None
        if decided["fallback"] or decided["bicubic"] or measured:
            # known only now; GDAL writes the tags when the file is closed
            writer.update_tags(**replace(
                info, fallback_tiles=tuple(decided["fallback"]),
                bicubic_tiles=tuple(decided["bicubic"]),
                tile_gains_db=tuple(gains) if measured else ()).to_tags())
    return tuple(decided["fallback"]) + tuple(decided["bicubic"])


def make_lr(plan: OnboardPlan, target: DatasetReader, datasets: Sequence[DatasetReader],
            out: PathLike, *, cog: bool = False, progress: bool | None = False,
            target_name: str = "target") -> Path:
    """Every tile of ``plan`` in this process, written by :func:`write_lr` to ``out``.

    Returns:
        ``out``.
    """
    check_output(out)
    fallback = write_lr(plan, target, out, plan.tiles(target, datasets, progress=progress),
                        cog=cog)
    if fallback:
        log.info("%s: %d of %d tiles made without the reference", target_name, len(fallback),
                 len(plan.tiling))
    return Path(out)


def _clouds(model: Rescaler, target: DatasetReader) -> str | None:
    """The cloud test for the references (:func:`~georefscale.raster.clouds.cloud_kind`) from
    the model's band names, else the target's band descriptions; None when neither names the
    four bands of a kind."""
    from georefscale.engine.cards import band_names

    return cloud_kind(band_names(model.name) or target.descriptions)


def _check_inputs(target: DatasetReader, datasets: Sequence[DatasetReader],
                  references: ReferenceSet, model: Rescaler, grid: Grid,
                  target_name: str) -> None:
    if model.bands is not None and target.count != model.bands:
        raise InputError(
            f"{target_name}: target has {target.count} bands, model {model.name} expects "
            f"{model.bands}"
        )
    labels = [r.label for r in references] or [f"reference {i + 1}" for i in range(len(datasets))]
    for ds, name in zip(datasets, labels, strict=True):
        if ds.count != target.count:
            raise InputError(
                f"{name}: reference has {ds.count} bands, the target {target_name} has "
                f"{target.count}"
            )
        if not overlaps(ds, grid):
            raise InputError(f"{name}: reference does not overlap the target {target_name}")
