"""On the ground: an LR product and the same references -> the HR image (and relevance map).

:meth:`GroundPlan.make` checks the open LR product against its tags, models and references once;
:meth:`GroundPlan.tile` rebuilds one tile anywhere (the plan is picklable, so tile tasks on other
processes give the same tiles); :func:`write_hr` is the single writer of the HR GeoTIFF and of
the relevance map. :func:`make_hr` chains the three for one process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.io import DatasetReader

from georefscale.convention import convention_problems, fill_nodata, reference_tile
from georefscale.errors import InputError
from georefscale.masks import MaskRows
from georefscale.options import GroundOptions
from georefscale.product import MODES, LRInfo, encode_ranges
from georefscale.raster.io import (
    GDAL_CACHE_BYTES,
    GeoTIFFWriter,
    check_output,
    has_dataset_mask,
    prefixed,
    read_masked,
    to_float,
)
from georefscale.tiling import Stitcher, Tiling, tile_seed, with_progress

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

#: Bands of the relevance map; the last two only for products whose tiles were decided by
#: measurement (``FallbackPolicy.decide = "measure"``).
RELEVANCE_BANDS = ("reference relevance (0 ignored .. 1 used)",
                   "tile mode (0 model with the reference, 1 no-reference twin, 2 bicubic)",
                   "reference gain measured on board (dB)")

__all__ = ["GroundPlan", "HRTile", "make_hr", "write_hr"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class HRTile:
    """One rebuilt tile as :meth:`GroundPlan.tile` makes it.

    Attributes:
        row: tile row.
        col: tile column.
        x: float32 ``(bands, h, w)`` in units of the scale, NaN on nodata (None when the plan
            makes no HR).
        relevance: float32 ``(1, h, w)``, 0 (reference ignored) .. 1 (used), NaN on nodata
            (None when the plan makes no relevance map).
    """

    row: int
    col: int
    x: np.ndarray | None
    relevance: np.ndarray | None


@dataclass(frozen=True)
class GroundPlan:
    """How one LR product is rebuilt, decided once by :meth:`make`.

    Attributes:
        info: the product's tags.
        model: the recorded model.
        fallback_model: the recorded no-reference model (None when no tile fell back or only
            the relevance map is made).
        bicubic: plain bicubic at the product's factor, for the tiles recorded as bicubic
            (None when there are none or only the relevance map is made).
        options: alpha, seed, tiling.
        hr: whether tiles rebuild the HR image.
        relevance: whether tiles compute the relevance map.
        nodata: the LR product's nodata value.
    """

    info: LRInfo
    model: Rescaler
    fallback_model: Rescaler | None
    options: GroundOptions
    hr: bool = True
    relevance: bool = False
    nodata: float | None = None
    bicubic: Rescaler | None = None

    @classmethod
    def make(
        cls,
        lr: DatasetReader,
        datasets: Sequence[DatasetReader],
        info: LRInfo,
        *,
        model: Rescaler,
        fallback_model: Rescaler | None,
        options: GroundOptions,
        outputs: frozenset[str] = frozenset({"hr"}),
        lr_name: str = "LR product",
    ) -> GroundPlan:
        """Check an open LR product (with its parsed tags) and open references.

        Args:
            lr: the open LR product.
            datasets: the open references, in the recorded order.
            info: the product's tags.
            model: the recorded model.
            fallback_model: the recorded no-reference model (needed when tiles fell back and
                the HR is made).
            options: alpha, seed, tile and halo (None: as recorded).
            outputs: what the tiles make: ``"hr"`` and / or ``"relevance"``.
            lr_name: the product, for messages.

        Raises:
            InputError: grid, bands, tiling or models do not fit the product.
        """
        hr, rel = "hr" in outputs, "relevance" in outputs
        if not outputs or not outputs <= {"hr", "relevance"}:
            raise InputError(f"{lr_name}: outputs must be 'hr' and / or 'relevance'")
        if hr and _alpha_is_risky(options.alpha, model, fallback_model):
            warnings.warn(_alpha_warning(lr_name, options.alpha, model), UserWarning,
                          stacklevel=3)
        expected = info.target_grid.scaled(info.factor)
        if (lr.width, lr.height) != (expected.width, expected.height) or not (
            lr.transform.almost_equals(expected.transform)
        ):
            raise InputError(
                f"{lr_name}: LR grid does not match the recorded target grid x{info.factor}"
            )
        for m in (model, fallback_model):
            if m is not None:
                _check_model(m, info, lr.count, lr_name)
        if model.uses_reference and not datasets:
            raise InputError(f"{lr_name}: model {model.name} needs the reference it was made with")
        for ds, name in zip(datasets, info.reference_ids, strict=False):
            if ds.count != lr.count:
                raise InputError(
                    f"{name}: reference has {ds.count} bands, the LR product {lr.count}"
                )
        fallback = set(info.fallback_tiles)
        decided = fallback | set(info.bicubic_tiles)
        tiling = options.tiling_for(info.tile, info.halo)
        if decided and (tiling.tile, tiling.halo) != (info.tile, info.halo):
            raise InputError(
                f"{lr_name}: {len(decided)} tiles were made without the reference for tile "
                f"{info.tile} / halo {info.halo}; ground with the recorded tiling"
            )
        if fallback and hr and fallback_model is None:
            raise InputError(f"{lr_name}: needs the no-reference model {info.fallback_model}")
        if rel and not model.uses_reference:
            raise InputError(f"{lr_name}: made with {model.name}, which uses no reference: there "
                             "is no relevance map")
        n = len(info.tiling(tiling))
        if decided and max(decided) >= n:
            raise InputError(f"{lr_name}: decided tile {max(decided)} outside the {n} tiles of "
                             "the recorded tiling")
        bicubic = None
        if info.bicubic_tiles and hr:
            from georefscale.engine.run import resolve_model

            bicubic = resolve_model("bicubic", info.factor)
        return cls(info, model, fallback_model if hr else None, options, hr, rel, lr.nodata,
                   bicubic)

    @property
    def tiling(self) -> Tiling:
        return self.info.tiling(self.options.tiling_for(self.info.tile, self.info.halo))

    def tile(self, lr: DatasetReader, datasets: Sequence[DatasetReader], row: int,
             col: int) -> HRTile:
        """Rebuild tile (``row``, ``col``): the HR tile with latent seed ``(seed, row, col)``
        and / or its relevance map; tiles recorded as fallback use the no-reference model, those
        recorded as bicubic plain bicubic (both have relevance 0)."""
        from georefscale.engine.run import relevance, upscale

        info, tiling, f = self.info, self.tiling, self.info.factor
        t = tiling.tile(row, col, "hr")
        arr, mask = read_masked(lr, tiling.tile(row, col, "lr").window)
        y, mask = to_float(arr, info.scale, mask=mask, offset=info.offset)
        hr_mask = np.repeat(np.repeat(mask, f, axis=1), f, axis=2)
        y = fill_nodata(y, mask)
        mode = info.tile_mode(row * tiling.n_cols + col)
        use_fallback = mode != "model"
        m = {"model": self.model, "fallback": self.fallback_model, "bicubic": self.bicubic}[mode]
        ref = None
        if not use_fallback and m.uses_reference:
            ref = reference_tile(datasets, info.target_grid, t.window, info.coreg.warp, m,
                                 info.source_dtype, clouds=info.reference_clouds,
                                 field=info.coreg.field)
        x = rel = None
        if self.hr:
            x = upscale(m, y, ref, self.options.alpha, tile_seed(self.options.seed, row, col))
            x[hr_mask] = np.nan
        if self.relevance:
            if use_fallback:
                rel = np.zeros((1, *hr_mask.shape[1:]), np.float32)
            else:
                rel = relevance(m, y, ref)[None]
            rel[:, hr_mask.all(axis=0)] = np.nan
        return HRTile(row, col, x, rel)

    def tiles(self, lr: DatasetReader, datasets: Sequence[DatasetReader],
              rows: range | None = None, progress: bool | None = False) -> Iterator[HRTile]:
        """The rebuilt tiles of tile rows ``rows`` (default: all), row-major."""
        n = len(self.tiling) if rows is None else len(rows) * self.tiling.n_cols
        what = "ground" if self.hr else "relevance"
        for t in with_progress(self.tiling.rows(rows), n, what, progress):
            yield self.tile(lr, datasets, t.row, t.col)


def write_hr(plan: GroundPlan, lr: DatasetReader, tiles: Iterable[HRTile], *,
             out: PathLike | None = None, relevance_out: PathLike | None = None,
             lr_name: str = "LR product") -> None:
    """The single writer of the HR GeoTIFF and of the relevance map.

    Args:
        plan: the product's plan.
        lr: the open LR product (its tags and band names are kept).
        tiles: the rebuilt tiles in row-major order (they may be computed anywhere).
        out: the HR GeoTIFF (target grid, source dtype, the LR's nodata value, or an internal
            mask when the LR has one or records a mask without a nodata value), written
            atomically; needs ``plan.hr``.
        relevance_out: the relevance map (single-band float32, NaN nodata); needs
            ``plan.relevance``.
        lr_name: the product, for messages and the output tags.
    """
    info, tiling = plan.info, plan.tiling
    grid, dtype, nodata = info.target_grid, info.source_dtype, plan.nodata
    internal = nodata is None and (info.nodata_mask is not None or has_dataset_mask(lr, lr_name))
    descriptions = lr.descriptions if any(lr.descriptions) else (info.bands or None)
    tags = {k: v for k, v in lr.tags().items() if not k.startswith("GEOREFSCALE_")}
    base = {"MODEL": info.model, "FACTOR": info.factor,
            "REFERENCE_ID": ";".join(info.reference_ids), "LR": Path(lr_name).name}
    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
        hr_stitch = rel_stitch = None
        if out is not None:
            check_output(out)
            writer = stack.enter_context(GeoTIFFWriter(
                out, grid, count=lr.count, dtype=dtype, nodata=nodata,
                descriptions=descriptions, cog=plan.options.cog, meta=info.meta,
                internal_mask=internal,
                tags={**tags, **prefixed({"PRODUCT": "HR reconstruction", **base,
                                          "ALPHA": plan.options.alpha,
                                          "SEED": plan.options.seed})},
            ))
            hr_stitch = Stitcher(tiling, lr.count, _sink(writer, info), level="hr")
        if relevance_out is not None:
            check_output(relevance_out)
            decided = bool(info.tile_gains_db)
            rel_writer = stack.enter_context(GeoTIFFWriter(
                relevance_out, grid, count=len(RELEVANCE_BANDS) if decided else 1,
                dtype="float32", nodata=float("nan"),
                descriptions=list(RELEVANCE_BANDS) if decided else [RELEVANCE_BANDS[0]],
                cog=plan.options.cog,
                tags=prefixed({"PRODUCT": "reference relevance", **base,
                               "FALLBACK_TILES": encode_ranges(info.fallback_tiles),
                               "BICUBIC_TILES": encode_ranges(info.bicubic_tiles)}),
            ))
            sink = _decision_sink(rel_writer, info, tiling) if decided else rel_writer.write_rows
            rel_stitch = Stitcher(tiling, 1, sink, level="hr")
        for t in tiles:
            core = tiling.tile(t.row, t.col, "hr")
            if hr_stitch is not None:
                hr_stitch.add(core, t.x)
            if rel_stitch is not None:
                rel_stitch.add(core, t.relevance)
        for s in (hr_stitch, rel_stitch):
            if s is not None:
                s.close()


def _decision_sink(writer: GeoTIFFWriter, info: LRInfo,
                   tiling: Tiling) -> Callable[[np.ndarray, int], None]:
    """Finished relevance rows -> the writer, with the tile decision bands of a product decided
    by measurement: each HR pixel takes the mode index (:data:`~georefscale.product.MODES`) and
    the measured reference gain (dB) of the tile whose core holds it; NaN where the relevance is
    (nodata)."""
    g = info.target_grid
    row_tile, col_tile = np.empty(g.height, np.int64), np.empty(g.width, np.int64)
    for r in range(tiling.n_rows):
        core = tiling.tile(r, 0, "hr").core
        row_tile[core.row_off:core.row_off + core.height] = r
    for c in range(tiling.n_cols):
        core = tiling.tile(0, c, "hr").core
        col_tile[core.col_off:core.col_off + core.width] = c
    modes = np.array([MODES.index(info.tile_mode(i)) for i in range(len(tiling))], np.float32)
    gains = np.asarray(info.tile_gains_db, np.float32)

    def sink(rows: np.ndarray, r0: int) -> None:
        idx = row_tile[r0:r0 + rows.shape[1], None] * tiling.n_cols + col_tile[None, :]
        out = np.concatenate([rows, modes[idx][None], gains[idx][None]]).astype(np.float32)
        out[1:, np.isnan(rows[0])] = np.nan
        writer.write_rows(out, r0)

    return sink


def _sink(writer: GeoTIFFWriter, info: LRInfo) -> Callable[[np.ndarray, int], None]:
    """Finished HR rows -> the writer, in DN, with the target's exact mask when the product
    records one (as nodata values or the internal mask, as the writer carries them)."""
    scale = info.scale
    if info.nodata_mask is None:
        return lambda rows, r0: writer.write_float_rows(rows, r0, scale, offset=info.offset)
    g = info.target_grid
    exact = MaskRows(info.nodata_mask, writer.count, g.width, g.height)

    def sink(rows: np.ndarray, r0: int) -> None:
        writer.write_float_rows(rows, r0, scale, mask=exact.rows(r0, rows.shape[1]),
                                offset=info.offset)

    return sink


def make_hr(plan: GroundPlan, lr: DatasetReader, datasets: Sequence[DatasetReader], *,
            out: PathLike | None = None, relevance_out: PathLike | None = None,
            lr_name: str = "LR product", progress: bool | None = False) -> None:
    """Every tile of ``plan`` in this process, written by :func:`write_hr`."""
    for p in (out, relevance_out):
        if p is not None:
            check_output(p)
    write_hr(plan, lr, plan.tiles(lr, datasets, progress=progress), out=out,
             relevance_out=relevance_out, lr_name=lr_name)


def _check_model(model: Rescaler, info: LRInfo, count: int, lr_name: str) -> None:
    """The model must fit the product: factor, band count, dtype and DN scale.

    Raises:
        InputError: naming the mismatch and the shipped models that would fit.
    """
    problems = []
    if model.factor != info.factor:
        problems.append(f"factor {model.factor}, not {info.factor}")
    if model.bands is not None and model.bands != count:
        problems.append(f"{model.bands} bands, not {count}")
    problems += convention_problems(model, info.source_dtype, info.scale)
    if problems:
        from georefscale.engine.cards import models_for

        fits = models_for(count, info.source_dtype, info.factor)
        raise InputError(f"{lr_name}: model {model.name} does not fit the product ("
                         + "; ".join(problems) + "); models that fit: "
                         + (", ".join(fits) or "none shipped"))


def _alpha_is_risky(alpha: float, *models: Rescaler | None) -> bool:
    """Whether the latent drawn at ``alpha``, ``N(0, (alpha * sampling_scale)^2)``, is stronger
    than the N(0, 1) the networks were trained to rebuild from, for any of ``models``."""
    return any(alpha * m.sampling_scale > 1 for m in models if m is not None)


def _alpha_warning(lr_name: str, alpha: float, model: Rescaler) -> str:
    """Why a latent stronger than the trained N(0, 1) is risky, with what the model's card
    measured on validation crops."""
    scale = model.sampling_scale
    limit = "1" if scale == 1 else (f"1 / {model.name}'s sampling scale {scale:.3f} = "
                                    f"{1 / scale:.2f}")
    text = (f"{lr_name}: alpha {alpha:g} is above the latent temperature the models were "
            f"trained with ({limit})")
    if model.temperature:
        psnr = model.temperature["psnr"]
        text += (f"; {model.name} on its validation crops: "
                 + ", ".join(f"alpha {a} {v:.1f} dB" for a, v in psnr.items())
                 + f" (forward latent RMS {model.temperature['latent_rms']:.2f})")
    return text
