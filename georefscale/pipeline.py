"""The file-level job: ``onboard`` (HR target + reference -> LR GeoTIFF) and ``ground``
(LR GeoTIFF + the same reference -> HR GeoTIFF on the target's exact grid), both through the tiler
so any scene size streams in bounded memory.

The LR product carries ``GEOREFSCALE_*`` tags (see :class:`LRInfo`): factor, model, reference ids
and SHA-256, the residual reference shift estimated on board, source dtype and scale, the target
grid, tile and halo. ``ground`` restores the grid from them and refuses another reference.

The ``*_datasets`` functions take already-open rasterio datasets (e.g. from a MemoryFile) so other
front ends (xarray, catalogs) can reuse the same path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from georefscale.errors import InputError, ReferenceMismatchError
from georefscale.raster.align import align, estimate_shift, overlaps
from georefscale.raster.grid import Grid
from georefscale.raster.io import (
    GeoTIFFWriter,
    check_output,
    default_scale,
    from_float,
    georefscale_tags,
    open_raster,
    prefixed,
    read_window,
    sha256_file,
    to_float,
)
from georefscale.tiling import Stitcher, Tiling, tile_seed

#: Model used when none is named (a trained Sentinel-2 x4 RefScale network).
DEFAULT_MODEL = "refscale-s2-x4"
DEFAULT_TILE = 512
DEFAULT_HALO = 32
#: Largest window (pixels per side) used to estimate the reference shift.
SHIFT_WINDOW = 1024
#: GDAL block cache (bytes: rasterio passes integers to GDALSetCacheMax64) while processing.
GDAL_CACHE_BYTES = 256 * 2**20
FORMAT_VERSION = "1"

PathLike = str | os.PathLike


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

    def to_tags(self) -> dict[str, str]:
        t = self.target_grid.transform
        return prefixed(
            {
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
        )

    @classmethod
    def from_dataset(cls, ds, path: PathLike) -> LRInfo:
        """Parse the tags of an open LR product; InputError if they are missing or broken."""
        tags = georefscale_tags(ds)
        if not tags:
            raise InputError(f"{path}: not a georefscale LR product (no GEOREFSCALE_* tags)")
        try:
            ids, shas = tags["REFERENCE_ID"], tags["REFERENCE_SHA256"]
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
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: georefscale tags are incomplete or invalid ({exc})") from exc


# -- public file-level API ---------------------------------------------------------------------


def onboard(
    target: PathLike,
    reference: PathLike | Sequence[PathLike] | None,
    *,
    out: PathLike,
    factor: int | None = None,
    model: str = DEFAULT_MODEL,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    correct_shift: bool = True,
) -> Path:
    """Downscale the GeoTIFF ``target`` by ``factor`` (2 or 4) with ``model`` and the reference
    GeoTIFF(s), writing the tagged LR GeoTIFF ``out`` (grid = target grid scaled by factor, same
    CRS, dtype, nodata, band descriptions). Returns ``out``."""
    _check_factor(factor)
    check_output(out)
    refs = _as_paths(reference)
    with open_raster(target, "target") as tds, _open_all(refs, "reference") as rdss:
        m = load_model(model, factor)
        return onboard_datasets(
            tds,
            rdss,
            model=m,
            out=out,
            target_name=str(target),
            reference_ids=[Path(p).stem for p in refs],
            reference_sha256=[sha256_file(p) for p in refs],
            reference_names=[str(p) for p in refs],
            tile=tile,
            halo=halo,
            cog=cog,
            correct_shift=correct_shift,
        )


def ground(
    lr: PathLike,
    reference: PathLike | Sequence[PathLike] | None,
    *,
    out: PathLike,
    alpha: float = 1.0,
    seed: int = 0,
    tile: int | None = None,
    halo: int | None = None,
    cog: bool = False,
) -> Path:
    """Rebuild the HR image from the LR product ``lr`` and the same reference(s), on exactly the
    original target grid; latent ``z ~ N(0, alpha^2)`` per tile, seeded from ``(seed, row, col)``.
    Tile and halo default to the ones recorded on board. Returns ``out``."""
    check_output(out)
    refs = _as_paths(reference)
    with open_raster(lr, "LR product") as lds:
        info = LRInfo.from_dataset(lds, lr)
        check_references(info, refs, lr)
        with _open_all(refs, "reference") as rdss:
            m = load_model(info.model, info.factor)
            return ground_datasets(
                lds,
                rdss,
                info,
                model=m,
                out=out,
                lr_name=str(lr),
                alpha=alpha,
                seed=seed,
                tile=tile,
                halo=halo,
                cog=cog,
            )


def roundtrip(
    target: PathLike,
    reference: PathLike | Sequence[PathLike] | None,
    *,
    lr_out: PathLike,
    hr_out: PathLike,
    factor: int | None = None,
    model: str = DEFAULT_MODEL,
    alpha: float = 1.0,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
) -> dict:
    """``onboard`` then ``ground``; returns paths and the reconstruction error (RMSE in DN, PSNR
    in dB over the model's DN scale, valid pixels only), computed window by window."""
    check_output(lr_out)
    check_output(hr_out)
    onboard(
        target, reference, out=lr_out, factor=factor, model=model, tile=tile, halo=halo, cog=cog
    )
    ground(lr_out, reference, out=hr_out, alpha=alpha, seed=seed, cog=cog)
    with open_raster(lr_out, "LR product") as lds:
        scale = LRInfo.from_dataset(lds, lr_out).scale
    with open_raster(target, "target") as t, open_raster(hr_out, "HR product") as h:
        sq, n = 0.0, 0
        for _, win in t.block_windows(1):
            a = t.read(window=win).astype(np.float64)
            b = h.read(window=win).astype(np.float64)
            valid = ~(a == t.nodata) if t.nodata is not None else np.ones(a.shape, bool)
            sq += float(((a - b)[valid] ** 2).sum())
            n += int(valid.sum())
    rmse = math.sqrt(sq / max(n, 1))
    psnr = 20 * math.log10(scale / rmse) if rmse > 0 else math.inf
    return {"lr": str(lr_out), "hr": str(hr_out), "rmse_dn": rmse, "psnr_db": psnr}


# -- building blocks on open datasets ----------------------------------------------------------


def load_model(name: str, factor: int | None):
    """The engine's rescaler ``name`` (torch is imported here, not at module import)."""
    from georefscale.engine import load

    return load(name, factor=factor)


def onboard_datasets(
    target,
    references: Sequence,
    *,
    model,
    out: PathLike,
    target_name: str = "target",
    reference_ids: Sequence[str] = (),
    reference_sha256: Sequence[str] = (),
    reference_names: Sequence[str] | None = None,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    correct_shift: bool = True,
) -> Path:
    """:func:`onboard` on an open target dataset and open reference datasets."""
    check_output(out)
    f = model.factor
    _check_factor(f)
    grid = Grid.from_dataset(target)
    dtype = target.dtypes[0]
    scale = _scale(model, dtype, target_name)
    names = list(reference_names or [f"reference {i + 1}" for i in range(len(references))])
    _check_inputs(target, references, model, grid, target_name, names)
    if model.uses_reference and not references:
        raise InputError(f"{target_name}: model {model.name} needs a reference image")
    shift, err = (0.0, 0.0), None
    if references and correct_shift:
        shift, err = scene_shift(target, references, grid)
    info = LRInfo(
        factor=f,
        model=model.name,
        reference_ids=tuple(reference_ids),
        reference_sha256=tuple(reference_sha256),
        shift=shift,
        shift_error=err,
        source_dtype=dtype,
        scale=scale,
        target_grid=grid,
        tile=tile,
        halo=halo,
    )
    tiling = Tiling(grid.height, grid.width, factor=f, tile=tile, halo=halo)
    nodata = target.nodata
    tags = {**target.tags(), **info.to_tags()}
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),
        GeoTIFFWriter(
            out,
            grid.scaled(f),
            count=target.count,
            dtype=dtype,
            nodata=nodata,
            descriptions=target.descriptions,
            tags=tags,
            cog=cog,
        ) as writer,
    ):
        stitcher = Stitcher(
            tiling,
            target.count,
            lambda rows, r0: writer.write_rows(from_float(rows, dtype, scale, nodata), r0),
            level="lr",
        )
        for t in tiling.tiles("hr"):
            x, mask = to_float(read_window(target, t.window), scale, nodata)
            ref = None
            if model.uses_reference:
                ref = _reference_tile(references, grid, t.window, shift, model, dtype)
            y = _downscale(model, x, ref)
            if nodata is not None:
                y[_block_all(mask, f)] = np.nan
            stitcher.add(tiling.tile(t.row, t.col, "lr"), y)
        stitcher.close()
    return Path(out)


def ground_datasets(
    lr,
    references: Sequence,
    info: LRInfo,
    *,
    model,
    out: PathLike,
    lr_name: str = "LR product",
    alpha: float = 1.0,
    seed: int = 0,
    tile: int | None = None,
    halo: int | None = None,
    cog: bool = False,
) -> Path:
    """:func:`ground` on an open LR dataset (with its parsed tags) and open references."""
    check_output(out)
    f = info.factor
    grid = info.target_grid
    expected = grid.scaled(f)
    if (lr.width, lr.height) != (expected.width, expected.height) or not lr.transform.almost_equals(
        expected.transform
    ):
        raise InputError(f"{lr_name}: LR grid does not match the recorded target grid x{f}")
    if model.uses_reference and not references:
        raise InputError(f"{lr_name}: model {model.name} needs the reference it was made with")
    for ds, name in zip(references, info.reference_ids, strict=False):
        if ds.count != lr.count:
            raise InputError(f"{name}: reference has {ds.count} bands, the LR product {lr.count}")
    tiling = Tiling(
        grid.height,
        grid.width,
        factor=f,
        tile=tile or info.tile,
        halo=info.halo if halo is None else halo,
    )
    nodata, dtype, scale = lr.nodata, info.source_dtype, info.scale
    tags = {k: v for k, v in lr.tags().items() if not k.startswith("GEOREFSCALE_")}
    tags.update(
        prefixed(
            {
                "PRODUCT": "HR reconstruction",
                "MODEL": info.model,
                "FACTOR": f,
                "REFERENCE_ID": ";".join(info.reference_ids),
                "LR": Path(lr_name).name,
                "ALPHA": alpha,
                "SEED": seed,
            }
        )
    )
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),
        GeoTIFFWriter(
            out,
            grid,
            count=lr.count,
            dtype=dtype,
            nodata=nodata,
            descriptions=lr.descriptions,
            tags=tags,
            cog=cog,
        ) as writer,
    ):
        stitcher = Stitcher(
            tiling,
            lr.count,
            lambda rows, r0: writer.write_rows(from_float(rows, dtype, scale, nodata), r0),
            level="hr",
        )
        for t in tiling.tiles("hr"):
            lt = tiling.tile(t.row, t.col, "lr")
            y, mask = to_float(read_window(lr, lt.window), scale, nodata)
            ref = None
            if model.uses_reference:
                ref = _reference_tile(references, grid, t.window, info.shift, model, dtype)
            x = _upscale(model, y, ref, alpha, tile_seed(seed, t.row, t.col))
            if nodata is not None:
                x[np.repeat(np.repeat(mask, f, axis=1), f, axis=2)] = np.nan
            stitcher.add(t, x)
        stitcher.close()
    return Path(out)


def check_references(info: LRInfo, refs: Sequence[PathLike], lr_name: PathLike) -> None:
    """Raise unless ``refs`` are byte-for-byte the references recorded in the LR product."""
    if len(refs) != len(info.reference_sha256):
        want = ", ".join(info.reference_ids) or "none"
        raise ReferenceMismatchError(
            f"{lr_name}: made with {len(info.reference_sha256)} reference(s) ({want}), "
            f"got {len(refs)}"
        )
    for p, rid, sha in zip(refs, info.reference_ids, info.reference_sha256, strict=True):
        if not Path(p).exists():
            raise InputError(f"{p}: reference file does not exist")
        got = sha256_file(p)
        if got != sha:
            raise ReferenceMismatchError(
                f"{p}: SHA-256 {got[:16]}... differs from reference {rid} ({sha[:16]}...) "
                f"recorded in {lr_name}"
            )


def scene_shift(target, references: Sequence, grid: Grid) -> tuple[tuple[float, float], float]:
    """Residual shift (dx, dy) of the references against the target, estimated by phase
    correlation on a central window of at most ``SHIFT_WINDOW`` pixels; (0, 0) when the
    references cover less than half of that window. Also returns the correlation error."""
    h, w = min(grid.height, SHIFT_WINDOW), min(grid.width, SHIFT_WINDOW)
    win = rasterio.windows.Window((grid.width - w) // 2, (grid.height - h) // 2, w, h)
    ref = align(references, grid.window_grid(win))
    if np.isnan(ref).mean() > 0.5 or min(h, w) < 16:
        return (0.0, 0.0), None
    tgt = target.read(window=win).astype(np.float32)
    mask = tgt == target.nodata if target.nodata is not None else None
    dx, dy, err = estimate_shift(tgt, ref, target_mask=mask)
    return (dx, dy), err


# -- helpers -----------------------------------------------------------------------------------


def _check_factor(factor: int | None) -> None:
    if factor is not None and factor not in (2, 4):
        raise InputError(f"factor must be 2 or 4, got {factor}")


def _as_paths(reference) -> list[Path]:
    if reference is None:
        return []
    if isinstance(reference, str | os.PathLike):
        return [Path(reference)]
    return [Path(r) for r in reference]


@contextmanager
def _open_all(paths: Sequence[PathLike], what: str) -> Iterator[list]:
    """Open several rasters with :func:`open_raster`; all are closed on exit."""
    with ExitStack() as stack:
        yield [stack.enter_context(open_raster(p, what)) for p in paths]


def _scale(model, dtype: str, name: str) -> float:
    if model.dtype is not None and model.dtype != dtype:
        raise InputError(f"{name}: data type {dtype}, model {model.name} expects {model.dtype}")
    try:
        return float(model.scale) if model.scale is not None else default_scale(dtype)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from exc


def _check_inputs(target, references, model, grid: Grid, target_name: str, names) -> None:
    if model.bands is not None and target.count != model.bands:
        raise InputError(
            f"{target_name}: target has {target.count} bands, model {model.name} expects "
            f"{model.bands}"
        )
    for ds, name in zip(references, names, strict=True):
        if ds.count != target.count:
            raise InputError(
                f"{name}: reference has {ds.count} bands, the target {target_name} has "
                f"{target.count}"
            )
        if not overlaps(ds, grid):
            raise InputError(f"{name}: reference does not overlap the target {target_name}")


def _reference_tile(references, grid: Grid, window, shift, model, dtype: str) -> np.ndarray:
    """References warped onto the tile window (shift applied), normalised, NaN -> 0."""
    ref = align(references, grid.window_grid(window), shift=tuple(shift))
    scale = float(model.scale) if model.scale is not None else default_scale(dtype)
    ref /= np.float32(scale)
    return np.nan_to_num(ref, nan=0.0)


def _block_all(mask: np.ndarray, f: int) -> np.ndarray:
    """(C, H, W) -> (C, H/f, W/f): True where all f x f pixels are True."""
    c, h, w = mask.shape
    return mask.reshape(c, h // f, f, w // f, f).all(axis=(2, 4))


def _downscale(model, x: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x))[None]
    rt = torch.from_numpy(np.ascontiguousarray(ref))[None] if ref is not None else None
    with torch.no_grad():
        y, _ = model.downscale(xt, rt)
    return y[0].cpu().numpy().astype(np.float32)


def _upscale(model, y: np.ndarray, ref: np.ndarray | None, alpha: float, seed: int) -> np.ndarray:
    import torch

    yt = torch.from_numpy(np.ascontiguousarray(y))[None]
    rt = torch.from_numpy(np.ascontiguousarray(ref))[None] if ref is not None else None
    with torch.no_grad():
        x = model.upscale(yt, rt, alpha=alpha, seed=seed)
    return x[0].cpu().numpy().astype(np.float32)
