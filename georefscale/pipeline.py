"""The main job: ``onboard`` (HR target + reference -> LR product) and ``ground`` (LR product +
the same reference -> HR GeoTIFF on the target's exact grid), both through the tiler so any scene
size streams in bounded memory; ``roundtrip`` does both and measures the error; ``relevance_map``
shows where the reference was used.

Inputs are GeoTIFF paths or rioxarray DataArrays (results come back as DataArrays then). The
reference is given directly or picked from a :class:`~georefscale.catalog.Catalog`
(``catalog=``): the newest earlier record(s) covering the target, mosaicked when needed.

The LR product carries ``GEOREFSCALE_*`` tags (see :class:`LRInfo`): factor, model, reference ids
and SHA-256, the residual reference shift estimated on board, source dtype and scale, the target
grid, tile and halo, band names, and the tiles that fell back to the no-reference model.
``ground`` restores the grid from them and refuses another reference. With ``codec=`` the LR
product is written through :mod:`georefscale.codecs` (e.g. JPEG 2000) instead of as a GeoTIFF.

The ``*_datasets`` functions take already-open rasterio datasets (e.g. from a MemoryFile) so other
front ends (xarray, catalogs, Dask) can reuse the same path.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import DatasetReader

from georefscale.errors import InputError, NoCandidateError, ReferenceMismatchError
from georefscale.metrics import detail_agreement
from georefscale.raster.align import align, overlaps, scene_shift
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
    reflect_window,
    sha256_file,
    to_float,
    write_geotiff,
)
from georefscale.tiling import Stitcher, Tiling, tile_seed
from georefscale.xarray_io import from_geotiff, is_dataarray, label, to_geotiff

if TYPE_CHECKING:  # torch and xarray are imported only when used
    from datetime import datetime

    import xarray as xr

    from georefscale.catalog import Catalog
    from georefscale.engine.rescaler import Rescaler

log = logging.getLogger(__name__)

#: Model used when none is named (a trained Sentinel-2 x4 RefScale network).
DEFAULT_MODEL = "refscale-s2-x4"
DEFAULT_TILE = 512
DEFAULT_HALO = 32
#: GDAL block cache (bytes: rasterio passes integers to GDALSetCacheMax64) while processing.
GDAL_CACHE_BYTES = 256 * 2**20
FORMAT_VERSION = "1"
#: Per-tile fallback to the no-reference model: a tile falls back when less than this fraction
#: of its window is covered by valid reference pixels ...
MIN_COVERAGE = 0.5
#: ... or when the reference does not show the target's detail: its
#: :func:`~georefscale.metrics.detail_agreement` with the target tile is below this (0 = off).
#: Real co-registered references of the Sentinel-2 test cities score 0.33-0.71 per tile; the
#: same references moved by 20 px, turned by 5 degrees, of another city or missing score
#: -0.03-0.04. Cheap: no network pass.
MIN_AGREEMENT = 0.2
#: ``noref_model`` value meaning "the shipped no-reference twin of the model, if there is one".
AUTO = "auto"

PathLike = str | os.PathLike
#: A path to a GeoTIFF or a rioxarray DataArray.
Source: TypeAlias = "str | os.PathLike | xr.DataArray"
#: A model name or a ready rescaler object (``georefscale.engine`` interface).
ModelLike: TypeAlias = "str | Rescaler"
#: What the public functions return: the path written, or a DataArray when the input was one.
Product: TypeAlias = "Path | xr.DataArray"


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

    def to_tags(self) -> dict[str, str]:
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
    def from_dataset(cls, ds: DatasetReader, path: PathLike) -> LRInfo:
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


# -- public API --------------------------------------------------------------------------------


def onboard(
    target: Source,
    reference: Source | Sequence[Source] | None = None,
    *,
    out: PathLike | None = None,
    catalog: Catalog | PathLike | None = None,
    archive: PathLike | None = None,
    factor: int | None = None,
    model: ModelLike = DEFAULT_MODEL,
    codec: str | None = None,
    quality: float | None = None,
    allow_noref: bool = False,
    noref_model: ModelLike | None = AUTO,
    min_agreement: float = MIN_AGREEMENT,
    min_coverage: float = MIN_COVERAGE,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    correct_shift: bool = True,
    when: datetime | str | None = None,
    progress: bool | None = False,
) -> Product:
    """Downscale ``target`` (GeoTIFF path or DataArray) by ``factor`` (2 or 4; default: the
    model's) with ``model`` (a name from ``georefscale.engine.available_models()`` or a rescaler
    object) and the reference(s), writing the tagged LR product ``out``: a GeoTIFF on the target
    grid scaled by ``factor`` (same CRS, dtype, nodata, band names), or with ``codec`` (e.g.
    ``"jpeg2000"``, ``quality`` in the codec's units) a coded file whose extension is the codec's.

    The reference: ``reference`` (path(s) / DataArray(s), mosaicked), or ``catalog`` (a
    :class:`~georefscale.catalog.Catalog` or the path of its parquet, hrefs under ``archive``):
    the best earlier record(s) for the target's footprint (acquisition time from its tags or
    name, or ``when``). No usable reference -> NoCandidateError, unless ``allow_noref``, which
    switches to the model's no-reference twin (``refscale-s2-x4`` -> ``noref-s2-x4``).

    Per-tile fallback: where less than ``min_coverage`` of a tile is covered by the reference,
    or the reference does not show the tile's detail (its
    :func:`~georefscale.metrics.detail_agreement` with the target is below ``min_agreement``;
    0 disables that test), the tile is made with ``noref_model`` (default: the shipped twin;
    None disables) and its index recorded in the tags.

    Returns the path written (the codec may change its extension), or a DataArray when
    ``target`` is one (``out`` may then be None: nothing is kept on disk).
    """
    with _Workspace() as ws:
        done = _onboard(ws, target, reference, out=out, catalog=catalog, archive=archive,
                        factor=factor, model=model, codec=codec, quality=quality,
                        allow_noref=allow_noref, noref_model=noref_model,
                        min_agreement=min_agreement, min_coverage=min_coverage, tile=tile,
                        halo=halo, cog=cog, correct_shift=correct_shift, when=when,
                        progress=progress)
        return from_geotiff(done.path, "lr") if done.as_da else done.path


def ground(
    lr: Source,
    reference: Source | Sequence[Source] | None = None,
    *,
    out: PathLike | None = None,
    catalog: Catalog | PathLike | None = None,
    archive: PathLike | None = None,
    alpha: float = 1.0,
    seed: int = 0,
    tile: int | None = None,
    halo: int | None = None,
    cog: bool = False,
    relevance_out: PathLike | None = None,
    model: ModelLike | None = None,
    noref_model: ModelLike | None = None,
    progress: bool | None = False,
) -> Product:
    """Rebuild the HR image from the LR product ``lr`` (path of a GeoTIFF / JPEG 2000 product or
    a DataArray) and the same reference(s), on exactly the original target grid; latent
    ``z ~ N(0, alpha^2)`` per tile, seeded from ``(seed, row, col)``.

    The reference is given as on board, or found in ``catalog`` by the ids recorded in ``lr``;
    either way its SHA-256 must match the recorded one (ReferenceMismatchError otherwise).
    Tiles recorded as fallback are rebuilt with the no-reference model. ``relevance_out``: also
    write the relevance map (see :func:`relevance_map`). ``model`` / ``noref_model``: ready
    rescaler objects to use instead of loading the recorded names (names must match). Tile and
    halo default to the recorded ones. Returns ``out`` (a DataArray when ``lr`` is one).
    """
    with _Workspace() as ws:
        path, as_da = _ground(ws, lr, reference, out=out, catalog=catalog, archive=archive,
                              alpha=alpha, seed=seed, tile=tile, halo=halo, cog=cog,
                              relevance_out=relevance_out, model=model,
                              noref_model=noref_model, progress=progress)
        return from_geotiff(path, "hr") if as_da else path


def relevance_map(
    lr: Source,
    references: Source | Sequence[Source] | None = None,
    *,
    out: PathLike | None = None,
    catalog: Catalog | PathLike | None = None,
    archive: PathLike | None = None,
    model: ModelLike | None = None,
    tile: int | None = None,
    halo: int | None = None,
    progress: bool | None = False,
) -> Product:
    """Write where the reference was used for ``lr``: a single-band float32 GeoTIFF on the HR
    (target) grid, values 0 (ignored) .. 1 (fully used), NaN where the LR product is nodata;
    0 on tiles that fell back to the no-reference model. From the model's own gates
    (``model.relevance``), tile by tile, blended like the HR output. References as in
    :func:`ground`. Returns ``out`` (a DataArray when ``lr`` is one)."""
    with _Workspace() as ws:
        path, as_da = _ground(ws, lr, references, out=None, catalog=catalog, archive=archive,
                              tile=tile, halo=halo, relevance_out=out, model=model,
                              progress=progress, relevance_only=True)
        return from_geotiff(path, "relevance") if as_da else path


def roundtrip(
    target: Source,
    reference: Source | Sequence[Source] | None = None,
    *,
    lr_out: PathLike | None = None,
    hr_out: PathLike | None = None,
    catalog: Catalog | PathLike | None = None,
    archive: PathLike | None = None,
    factor: int | None = None,
    model: ModelLike = DEFAULT_MODEL,
    codec: str | None = None,
    quality: float | None = None,
    allow_noref: bool = False,
    noref_model: ModelLike | None = AUTO,
    min_agreement: float = MIN_AGREEMENT,
    min_coverage: float = MIN_COVERAGE,
    alpha: float = 1.0,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    correct_shift: bool = True,
    when: datetime | str | None = None,
    relevance_out: PathLike | None = None,
    progress: bool | None = False,
) -> dict:
    """:func:`onboard` then :func:`ground` (same options); returns the paths (DataArrays when
    ``target`` is one; ``lr_out`` / ``hr_out`` may then be None) and metrics: LR size in bytes,
    bits per HR pixel, model, references, fallback tiles, and the reconstruction error (RMSE in
    DN, PSNR in dB over the model's DN scale, valid target pixels only), window by window."""
    with _Workspace() as ws:
        if hr_out is not None:
            check_output(hr_out)
        done = _onboard(ws, target, reference, out=lr_out, catalog=catalog, archive=archive,
                        factor=factor, model=model, codec=codec, quality=quality,
                        allow_noref=allow_noref, noref_model=noref_model,
                        min_agreement=min_agreement, min_coverage=min_coverage, tile=tile,
                        halo=halo, cog=cog, correct_shift=correct_shift, when=when,
                        progress=progress)
        lr, as_da = done.path, done.as_da
        if hr_out is None and not as_da:
            raise InputError("roundtrip: hr_out (the HR GeoTIFF to write) is required")
        hr, _ = _ground(ws, lr, None if catalog is not None else reference,
                        out=hr_out if hr_out is not None else ws.path("hr.tif"),
                        catalog=catalog, archive=archive, alpha=alpha, seed=seed, cog=cog,
                        relevance_out=relevance_out, model=done.model,
                        noref_model=done.fallback, progress=progress)
        summary = describe_lr(lr)
        summary.update(reconstruction_error(done.target, hr, summary["scale"]))
        summary["hr"] = str(hr)
        if relevance_out is not None:
            summary["relevance"] = str(relevance_out)
        if as_da:
            summary["lr"], summary["hr"] = from_geotiff(lr, "lr"), from_geotiff(hr, "hr")
        return summary


def describe_lr(lr: PathLike) -> dict:
    """What an LR product file holds: size in bytes, bits per HR pixel (all bands together),
    model, factor, references, shift, fallback tiles, codec (for summaries and ``--json``)."""
    import georefscale.codecs as codecs

    path = Path(lr)
    with open_raster(path, "LR product") as ds:
        info = LRInfo.from_dataset(ds, path)
        tags = georefscale_tags(ds)
    n_tiles = len(_tiling(info))
    nbytes = path.stat().st_size
    return {
        "lr": str(path),
        "bytes": nbytes,
        "bits_per_pixel": codecs.bits_per_pixel(
            nbytes, (info.target_grid.height, info.target_grid.width)
        ),
        "codec": tags.get("CODEC") or "geotiff",
        "quality": float(tags["QUALITY"]) if tags.get("QUALITY") else None,
        "model": info.model,
        "factor": info.factor,
        "scale": info.scale,
        "references": list(info.reference_ids),
        "shift_px": list(info.shift),
        "tiles": n_tiles,
        "fallback_model": info.fallback_model,
        "fallback_tiles": len(info.fallback_tiles),
    }


def reconstruction_error(target: PathLike, hr: PathLike, scale: float) -> dict:
    """RMSE (DN) and PSNR (dB, peak ``scale``) of ``hr`` against ``target`` over the target's
    valid pixels, computed block by block."""
    with open_raster(target, "target") as t, open_raster(hr, "HR product") as h:
        sq, n = 0.0, 0
        for _, win in t.block_windows(1):
            a = t.read(window=win).astype(np.float64)
            b = h.read(window=win).astype(np.float64)
            valid = ~(a == t.nodata) if t.nodata is not None else np.ones(a.shape, bool)
            sq += float(((a - b)[valid] ** 2).sum())
            n += int(valid.sum())
    rmse = math.sqrt(sq / max(n, 1))
    psnr = 20 * math.log10(scale / rmse) if rmse > 0 else math.inf
    return {"rmse_dn": rmse, "psnr_db": psnr}


# -- models ------------------------------------------------------------------------------------


def load_model(name: str, factor: int | None) -> Rescaler:
    """The engine's rescaler ``name`` (torch is imported here, not at module import)."""
    from georefscale.engine import load

    return load(name, factor=factor)


def resolve_model(model: ModelLike, factor: int | None) -> Rescaler:
    """``model`` loaded by name, or the rescaler object itself (its factor checked)."""
    if isinstance(model, str):
        return load_model(model, factor)
    if factor is not None and model.factor != factor:
        raise InputError(f"model {model.name} rescales by {model.factor}, not {factor}")
    return model


def noref_name(name: str) -> str | None:
    """Name of the no-reference twin of a RefScale model (``refscale-s2-x4`` -> ``noref-s2-x4``);
    None for names outside that scheme."""
    return "noref-" + name.removeprefix("refscale-") if name.startswith("refscale-") else None


def noref_twin(model: Rescaler, noref_model: ModelLike | None = AUTO) -> Rescaler | None:
    """The no-reference model to use instead of (or per tile alongside) ``model``: ``AUTO``
    looks for the shipped twin (None if absent), a name or object is checked for compatibility
    (same factor, bands, dtype and scale, no reference). None when ``model`` needs no reference."""
    if not model.uses_reference or noref_model is None:
        return None
    if isinstance(noref_model, str) and noref_model == AUTO:
        from georefscale.engine import available_models

        name = noref_name(model.name)
        if name is None or name not in available_models():
            return None
        noref_model = name
    twin = resolve_model(noref_model, model.factor)
    if twin.uses_reference:
        raise InputError(f"model {twin.name} uses a reference: not a no-reference fallback")
    if twin.bands != model.bands or twin.dtype != model.dtype or twin.scale != model.scale:
        raise InputError(
            f"no-reference model {twin.name} ({twin.bands} bands, {twin.dtype}, scale "
            f"{twin.scale}) does not match {model.name} ({model.bands} bands, {model.dtype}, "
            f"scale {model.scale})"
        )
    return twin


def _given(model: ModelLike | None, name: str, factor: int, role: str, lr_name: str):
    """The recorded model ``name``: the given object (name checked) or loaded by name."""
    if model is None:
        return load_model(name, factor)
    m = resolve_model(model, factor)
    if m.name != name:
        raise InputError(f"{lr_name}: made with {role} {name}, not {m.name}")
    return m


# -- references --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    """One reference raster as used: file, id and SHA-256 recorded in the LR tags, label."""

    path: Path
    id: str
    sha256: str
    name: str


@dataclass(frozen=True)
class _Onboarded:
    """What :func:`_onboard` did: product path, whether the target was a DataArray, the
    target's file, the model and the no-reference fallback model used."""

    path: Path
    as_da: bool
    target: Path
    model: Rescaler
    fallback: Rescaler | None


class _Workspace:
    """A temporary directory (created on first use, removed on exit) for DataArrays written as
    GeoTIFFs and intermediate products."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._n = 0

    def __enter__(self) -> _Workspace:
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def path(self, name: str) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="georefscale-")
        self._n += 1
        return Path(self._tmp.name) / f"{self._n}_{name}"

    def source(self, obj: Source, what: str) -> tuple[Path, str, bool, str | None]:
        """(path, label for messages, was a DataArray, content SHA-256 of a DataArray)."""
        if is_dataarray(obj):
            stem = str(obj.name) if obj.name is not None else what.replace(" ", "_")
            path, sha = to_geotiff(obj, self.path(f"{stem}.tif"), what)
            return path, label(obj, what), True, sha
        if not isinstance(obj, str | os.PathLike):
            raise InputError(f"{what}: expected a file path or an xarray DataArray, got "
                             f"{type(obj).__name__}")
        return Path(obj), str(obj), False, None

    def references(self, reference: Source | Sequence[Source] | None) -> list[_Ref]:
        if reference is None:
            return []
        items = [reference] if isinstance(reference, str | os.PathLike) or is_dataarray(
            reference) else list(reference)
        refs = []
        for i, obj in enumerate(items):
            path, label, as_da, sha = self.source(obj, "reference")
            if as_da:
                rid = str(obj.name) if obj.name is not None else f"dataarray-{i + 1}"
                refs.append(_Ref(path, rid, sha, label))
            else:
                if not path.exists():
                    raise InputError(f"{path}: reference file does not exist")
                refs.append(_Ref(path, path.stem, sha256_file(path), label))
        return refs


def as_catalog(catalog: Catalog | PathLike, archive: PathLike | None = None) -> Catalog:
    """A :class:`~georefscale.catalog.Catalog` from a Catalog or the path of its parquet."""
    from georefscale.catalog import Catalog

    if isinstance(catalog, Catalog):
        return catalog
    path = Path(catalog)
    if not path.is_file():
        raise InputError(f"{path}: catalog file does not exist")
    return Catalog.load(path, archive=archive)


def _catalog_name(cat) -> str:
    return str(cat.path) if getattr(cat, "path", None) is not None else "catalog"


def catalog_references(
    catalog: Catalog | PathLike,
    target: PathLike,
    *,
    archive: PathLike | None = None,
    target_name: str | None = None,
    band_count: int | None = None,
    when: datetime | str | None = None,
) -> list[_Ref]:
    """The references the catalog picks for ``target``: the best earlier record covering its
    footprint, or a covering mosaic (``Catalog.references_for(target, time="before")``); each
    file is checked against the catalog's SHA-256. NoCandidateError when nothing qualifies."""
    cat = as_catalog(catalog, archive)
    name = target_name or str(target)
    try:
        found = cat.references_for(target, time="before", when=when, band_count=band_count)
    except NoCandidateError as exc:
        raise NoCandidateError(
            f"{name}: no usable reference in {_catalog_name(cat)} ({exc}); use allow_noref=True "
            "(CLI: --allow-noref) to downscale with the no-reference model"
        ) from exc
    return [_record_ref(rec, cat) for rec in found.references]


def _record_ref(rec, cat) -> _Ref:
    """A catalog record as a reference; its file must exist and match the record's checksum."""
    path = Path(rec.href)
    if not path.is_file():
        raise InputError(
            f"{path}: reference {rec.id} of {_catalog_name(cat)} does not exist (wrong archive "
            "root? pass archive= / --archive)"
        )
    sha = sha256_file(path)
    if rec.sha256 and sha != rec.sha256:
        raise ReferenceMismatchError(
            f"{path}: SHA-256 {sha[:16]}... differs from the catalog record {rec.id} "
            f"({rec.sha256[:16]}...): the file changed since {_catalog_name(cat)} was built"
        )
    return _Ref(path, rec.id, sha, str(path))


def _references_by_id(catalog: Catalog | PathLike, archive: PathLike | None, info: LRInfo,
                      lr_name: str) -> list[_Ref]:
    """The recorded references of an LR product, found in the catalog by id."""
    cat = as_catalog(catalog, archive)
    refs = []
    for rid in info.reference_ids:
        if rid not in cat:
            raise InputError(
                f"{lr_name}: reference {rid} recorded in the LR product is not in "
                f"{_catalog_name(cat)}"
            )
        path = Path(cat.get(rid).href)
        if not path.is_file():
            raise InputError(f"{path}: reference {rid} of {_catalog_name(cat)} does not exist "
                             "(wrong archive root? pass archive= / --archive)")
        refs.append(_Ref(path, rid, sha256_file(path), str(path)))
    return refs


def check_references(info: LRInfo, refs: Sequence[PathLike], lr_name: PathLike) -> None:
    """Raise unless ``refs`` are byte-for-byte the references recorded in the LR product."""
    checked = []
    for p in refs:
        if not Path(p).exists():
            raise InputError(f"{p}: reference file does not exist")
        checked.append(_Ref(Path(p), Path(p).stem, sha256_file(p), str(p)))
    _check_refs(info, checked, lr_name)


def _check_refs(info: LRInfo, refs: Sequence[_Ref], lr_name: PathLike) -> None:
    if len(refs) != len(info.reference_sha256):
        want = ", ".join(info.reference_ids) or "none"
        raise ReferenceMismatchError(
            f"{lr_name}: made with {len(info.reference_sha256)} reference(s) ({want}), "
            f"got {len(refs)}"
        )
    for ref, rid, sha in zip(refs, info.reference_ids, info.reference_sha256, strict=True):
        if ref.sha256 != sha:
            raise ReferenceMismatchError(
                f"{ref.name}: SHA-256 {ref.sha256[:16]}... differs from reference {rid} "
                f"({sha[:16]}...) recorded in {lr_name}"
            )


# -- the two sides on sources ------------------------------------------------------------------


def _onboard(ws: _Workspace, target, reference, *, out, catalog, archive, factor, model, codec,
             quality, allow_noref, noref_model, tile, halo, cog, progress,
             min_agreement=MIN_AGREEMENT, min_coverage=MIN_COVERAGE, correct_shift=True,
             when=None) -> _Onboarded:
    """:func:`onboard` inside a workspace."""
    _check_factor(factor)
    spec = _codec_spec(codec, quality)
    tpath, tname, as_da, _ = ws.source(target, "target")
    if out is None:
        if not as_da:
            raise InputError(f"{tname}: out (the LR product to write) is required")
        out = ws.path("lr" + (spec.ext if spec else ".tif"))
    out = Path(out)
    if spec is not None and out.suffix.lower() != spec.ext:
        out = out.with_suffix(spec.ext)
    check_output(out)
    if catalog is not None and reference is not None:
        raise InputError(f"{tname}: give a reference or a catalog, not both")
    m = resolve_model(model, factor)
    with open_raster(tpath, "target") as tds:
        count = tds.count
        if spec is not None:
            _probe_codec(spec, quality, count, tds.dtypes[0], tname)
    refs = ws.references(reference)
    if catalog is not None:
        try:
            refs = catalog_references(catalog, tpath, archive=archive, target_name=tname,
                                      band_count=count, when=when)
        except NoCandidateError:
            if not allow_noref:
                raise
            log.warning("%s: no reference in the catalog; using the no-reference model", tname)
    if m.uses_reference and not refs and allow_noref:
        twin = noref_twin(m, AUTO if noref_model is None else noref_model)
        if twin is None:
            raise InputError(
                f"{tname}: no reference, and no no-reference model for {m.name} is available "
                f"(expected {noref_name(m.name) or 'a noref-* model'})"
            )
        m = twin
    fallback = noref_twin(m, noref_model)
    lr_file = ws.path("lr.tif") if spec is not None else out
    with open_raster(tpath, "target") as tds, _open_all([r.path for r in refs],
                                                        "reference") as rdss:
        onboard_datasets(
            tds,
            rdss,
            model=m,
            out=lr_file,
            target_name=tname,
            reference_ids=[r.id for r in refs],
            reference_sha256=[r.sha256 for r in refs],
            reference_names=[r.name for r in refs],
            tile=tile,
            halo=halo,
            cog=cog,
            correct_shift=correct_shift,
            fallback_model=fallback,
            min_agreement=min_agreement,
            min_coverage=min_coverage,
            progress=progress,
        )
    if spec is not None:
        encode_lr(lr_file, out, spec.name, quality)
    return _Onboarded(out, as_da, tpath, m, fallback)


def encode_lr(lr: PathLike, out: PathLike, codec: str, quality: float | None = None) -> int:
    """Write the LR GeoTIFF ``lr`` through ``codec`` to ``out`` (tags kept, plus
    ``GEOREFSCALE_CODEC`` / ``_QUALITY``); returns the coded size in bytes."""
    import georefscale.codecs as codecs

    with open_raster(lr, "LR product") as ds:
        arr, profile, desc = ds.read(), ds.profile, ds.descriptions
        tags = {**ds.tags(), **prefixed({"CODEC": codec, "QUALITY": "" if quality is None
                                         else f"{quality:g}"})}
    return codecs.write_compressed(out, arr, profile, tags, codec, quality, descriptions=desc)


def _exact_lr(ws: _Workspace, path: Path) -> Path:
    """A coded LR product that records its nodata (the container may have no nodata field, a lossy
    codec moves the nodata pixels) decoded into a temporary GeoTIFF with exactly the nodata pixels
    it was made with; any other product as it is. Holds the whole LR image in memory once."""
    import georefscale.codecs as codecs

    with open_raster(path, "LR product") as ds:
        if codecs.NODATA_TAG not in ds.tags():
            return path
        grid = Grid.from_dataset(ds)
    lr = codecs.read_compressed(path)
    return write_geotiff(ws.path("lr.tif"), lr.array, grid, nodata=lr.nodata,
                         descriptions=lr.descriptions, tags=lr.tags)


def _codec_spec(codec: str | None, quality: float | None):
    """The codec (None without one); InputError for unknown / unavailable codecs."""
    if codec is None:
        if quality is not None:
            raise InputError("a quality needs a codec (codec=..., CLI: --codec)")
        return None
    import georefscale.codecs as codecs

    spec = codecs.get_codec(codec)
    if codec not in codecs.available_codecs():
        raise InputError(f"codec {codec!r} is not provided by this GDAL build")
    return spec


def _probe_codec(spec, quality: float | None, count: int, dtype: str, name: str) -> None:
    """Fail before the tiles, not after, when ``spec`` cannot code this band count / dtype at
    ``quality``: code a small blank image the same way."""
    import warnings

    import georefscale.codecs as codecs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            codecs.encode(np.zeros((count, 16, 16), dtype), spec.name, quality)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from exc


def _ground(ws: _Workspace, lr, reference, *, out, catalog=None, archive=None, alpha=1.0,
            seed=0, tile=None, halo=None, cog=False, relevance_out=None, model=None,
            noref_model=None, progress=False, relevance_only=False) -> tuple[Path, bool]:
    """:func:`ground` (or :func:`relevance_map`) inside a workspace; returns (path written,
    LR was a DataArray)."""
    lpath, lname, as_da, _ = ws.source(lr, "LR product")
    if relevance_only:
        if relevance_out is None:
            if not as_da:
                raise InputError(f"{lname}: out (the relevance GeoTIFF to write) is required")
            relevance_out = ws.path("relevance.tif")
    elif out is None:
        if not as_da:
            raise InputError(f"{lname}: out (the HR GeoTIFF to write) is required")
        out = ws.path("hr.tif")
    if out is not None:
        check_output(out)
    if relevance_out is not None:
        check_output(relevance_out)
    if catalog is not None and reference is not None:
        raise InputError(f"{lname}: give a reference or a catalog, not both")
    lpath = _exact_lr(ws, lpath)
    with open_raster(lpath, "LR product") as lds:
        info = LRInfo.from_dataset(lds, lname)
        if catalog is not None:
            refs = _references_by_id(catalog, archive, info, lname)
        else:
            refs = ws.references(reference)
        _check_refs(info, refs, lname)
        m = _given(model, info.model, info.factor, "model", lname)
        fallback = None
        if info.fallback_tiles and not relevance_only:
            fallback = _given(noref_model, info.fallback_model, info.factor,
                              "no-reference model", lname)
        if relevance_out is not None and not m.uses_reference:
            raise InputError(f"{lname}: made with {m.name}, which uses no reference: there is no "
                             "relevance map")
        with _open_all([r.path for r in refs], "reference") as rdss:
            ground_datasets(
                lds,
                rdss,
                info,
                model=m,
                out=out,
                lr_name=lname,
                alpha=alpha,
                seed=seed,
                tile=tile,
                halo=halo,
                cog=cog,
                fallback_model=fallback,
                relevance_out=relevance_out,
                progress=progress,
            )
    return Path(relevance_out if relevance_only else out), as_da


# -- building blocks on open datasets ----------------------------------------------------------


@dataclass(frozen=True)
class OnboardPlan:
    """How one target is made on board, decided once per scene by :func:`plan_onboard`: the
    model and its no-reference fallback, the fallback thresholds, the LR tags (with the scene's
    reference shift) and the tiling. Picklable when the models are, so tile tasks on other
    processes can share it; :meth:`onboard_tile` then gives the same LR tile everywhere."""

    model: Rescaler
    fallback_model: Rescaler | None
    info: LRInfo
    min_coverage: float = MIN_COVERAGE
    min_agreement: float = MIN_AGREEMENT

    @property
    def tiling(self) -> Tiling:
        return _tiling(self.info)

    def reference_fits(self, x: np.ndarray, mask: np.ndarray, raw: np.ndarray) -> bool:
        """Whether a tile is made with its reference: ``raw`` (the aligned reference, NaN where
        it has no data) covers at least ``min_coverage`` of the window and agrees with the
        target tile ``x`` (``mask``: its nodata) by at least ``min_agreement``."""
        if np.isfinite(raw).mean() < self.min_coverage:
            return False
        if self.min_agreement <= 0:
            return True
        target = np.where(mask, np.nan, x)
        return detail_agreement(target, raw, self.info.factor) >= self.min_agreement

    def tile_index(self, row: int, col: int) -> int:
        """Row-major index of tile (row, col), as listed in ``GEOREFSCALE_FALLBACK_TILES``."""
        return row * self.tiling.n_cols + col

    def onboard_tile(self, target: DatasetReader, references: Sequence[DatasetReader], row: int,
                     col: int) -> tuple[np.ndarray, bool]:
        """The LR output of HR tile (``row``, ``col``) of the open ``target`` with the open
        ``references`` (aligned with the recorded shift): float32 (bands, h/f, w/f), in units of
        the scale, NaN where all f x f source pixels are nodata; and whether the tile fell back
        to the no-reference model (see :meth:`reference_fits`)."""
        info, model, fallback = self.info, self.model, self.fallback_model
        t = self.tiling.tile(row, col, "hr")
        x, mask = to_float(read_window(target, t.window), info.scale, target.nodata)
        y = None
        if model.uses_reference:
            raw = _aligned_reference(references, info.target_grid, t.window, info.shift)
            if fallback is None or self.reference_fits(x, mask, raw):
                y = _downscale(model, x, _normalise(raw, model, info.source_dtype))
        else:
            y = _downscale(model, x, None)
        used_fallback = y is None
        if used_fallback:
            y = _downscale(fallback, x, None)
        if target.nodata is not None:
            y[_block_all(mask, info.factor)] = np.nan
        return y, used_fallback


def plan_onboard(
    target: DatasetReader,
    references: Sequence[DatasetReader],
    *,
    model: Rescaler,
    target_name: str = "target",
    reference_ids: Sequence[str] = (),
    reference_sha256: Sequence[str] = (),
    reference_names: Sequence[str] | None = None,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    correct_shift: bool = True,
    shift: tuple[float, float] | None = None,
    shift_error: float | None = None,
    fallback_model: Rescaler | None = None,
    min_agreement: float = MIN_AGREEMENT,
    min_coverage: float = MIN_COVERAGE,
) -> OnboardPlan:
    """Check an open target and open references against ``model`` (InputError naming the file)
    and decide how the scene is made: the reference shift (estimated with :func:`scene_shift`
    unless given as ``shift`` / ``shift_error``, e.g. by a client that estimated it once for
    all its tile tasks; (0, 0) without references or ``correct_shift``), the LR tags and the
    fallback model (dropped for models that use no reference)."""
    _check_factor(model.factor)
    grid = Grid.from_dataset(target)
    dtype = target.dtypes[0]
    scale = _scale(model, dtype, target_name)
    names = list(reference_names or [f"reference {i + 1}" for i in range(len(references))])
    _check_inputs(target, references, model, grid, target_name, names)
    if model.uses_reference and not references:
        raise InputError(f"{target_name}: model {model.name} needs a reference image")
    if fallback_model is not None and not model.uses_reference:
        fallback_model = None
    if shift is None:
        shift, shift_error = (0.0, 0.0), None
        if references and correct_shift:
            shift, shift_error = scene_shift(target, references, grid)
    info = LRInfo(
        factor=model.factor,
        model=model.name,
        reference_ids=tuple(reference_ids),
        reference_sha256=tuple(reference_sha256),
        shift=tuple(shift),
        shift_error=shift_error,
        source_dtype=dtype,
        scale=scale,
        target_grid=grid,
        tile=tile,
        halo=halo,
        bands=tuple(d or "" for d in target.descriptions) if any(target.descriptions) else (),
        fallback_model=fallback_model.name if fallback_model is not None else None,
    )
    return OnboardPlan(model, fallback_model, info, min_coverage, min_agreement)


def write_lr(
    plan: OnboardPlan,
    target: DatasetReader,
    out: PathLike,
    tiles: Iterable[tuple[int, int, np.ndarray, bool]],
    *,
    cog: bool = False,
) -> tuple[int, ...]:
    """The single writer of an LR GeoTIFF: ``tiles`` yields ``(row, col, lr, fell_back)`` as
    :meth:`OnboardPlan.onboard_tile` makes them, in row-major order (they may be computed
    anywhere); written atomically to ``out`` with the target's tags, band names and nodata plus
    the plan's ``GEOREFSCALE_*`` tags and the fallback tile list. Returns that list."""
    check_output(out)
    info, tiling = plan.info, plan.tiling
    grid, dtype, scale, nodata = info.target_grid, info.source_dtype, info.scale, target.nodata
    fallback: list[int] = []
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
        ) as writer,
    ):
        stitcher = Stitcher(
            tiling,
            target.count,
            lambda rows, r0: writer.write_rows(from_float(rows, dtype, scale, nodata), r0),
            level="lr",
        )
        for row, col, y, fell_back in tiles:
            if fell_back:
                fallback.append(plan.tile_index(row, col))
            stitcher.add(tiling.tile(row, col, "lr"), y)
        stitcher.close()
        if fallback:  # known only now; GDAL writes the tags when the file is closed
            writer.update_tags(GEOREFSCALE_FALLBACK_TILES=encode_ranges(fallback))
    return tuple(fallback)


def onboard_datasets(
    target: DatasetReader,
    references: Sequence[DatasetReader],
    *,
    model: Rescaler,
    out: PathLike,
    target_name: str = "target",
    reference_ids: Sequence[str] = (),
    reference_sha256: Sequence[str] = (),
    reference_names: Sequence[str] | None = None,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    correct_shift: bool = True,
    fallback_model: Rescaler | None = None,
    min_agreement: float = MIN_AGREEMENT,
    min_coverage: float = MIN_COVERAGE,
    progress: bool | None = False,
) -> Path:
    """:func:`onboard` on an open target dataset and open reference datasets (GeoTIFF out):
    :func:`plan_onboard`, every tile's :meth:`OnboardPlan.onboard_tile`, :func:`write_lr`.

    With ``fallback_model`` (a no-reference model), tiles where the reference covers less than
    ``min_coverage`` of the window, or whose detail agreement with the target is below
    ``min_agreement`` (0 disables that test), are made without the reference.
    """
    check_output(out)
    plan = plan_onboard(
        target, references, model=model, target_name=target_name, reference_ids=reference_ids,
        reference_sha256=reference_sha256, reference_names=reference_names, tile=tile,
        halo=halo, correct_shift=correct_shift, fallback_model=fallback_model,
        min_agreement=min_agreement, min_coverage=min_coverage,
    )
    tiles = (
        (t.row, t.col, *plan.onboard_tile(target, references, t.row, t.col))
        for t in _progress(plan.tiling, "onboard", progress)
    )
    fallback = write_lr(plan, target, out, tiles, cog=cog)
    if fallback:
        log.info("%s: %d of %d tiles made without the reference", target_name, len(fallback),
                 len(plan.tiling))
    return Path(out)


def _alpha_warning(lr_name: str, alpha: float, model: Rescaler) -> str:
    """Why alpha above 1 is risky, with what the model's card measured on validation crops."""
    text = (f"{lr_name}: alpha {alpha:g} is above the latent temperature the models were "
            "trained with (1)")
    if model.temperature:
        psnr = model.temperature["psnr"]
        text += (f"; {model.name} on its validation crops: "
                 + ", ".join(f"alpha {a} {v:.1f} dB" for a, v in psnr.items())
                 + f" (forward latent RMS {model.temperature['latent_rms']:.2f})")
    return text


def ground_datasets(
    lr: DatasetReader,
    references: Sequence[DatasetReader],
    info: LRInfo,
    *,
    model: Rescaler,
    out: PathLike | None,
    lr_name: str = "LR product",
    alpha: float = 1.0,
    seed: int = 0,
    tile: int | None = None,
    halo: int | None = None,
    cog: bool = False,
    fallback_model: Rescaler | None = None,
    relevance_out: PathLike | None = None,
    progress: bool | None = False,
) -> Path | None:
    """:func:`ground` on an open LR dataset (with its parsed tags) and open references.

    ``out`` None writes only the relevance map ``relevance_out``. Tiles listed in
    ``info.fallback_tiles`` use ``fallback_model`` without the reference."""
    if out is not None:
        check_output(out)
        if alpha > 1:
            warnings.warn(_alpha_warning(lr_name, alpha, model), UserWarning, stacklevel=2)
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
    fallback = set(info.fallback_tiles)
    if fallback and ((tile or info.tile) != info.tile or (halo is not None and halo != info.halo)):
        raise InputError(
            f"{lr_name}: {len(fallback)} tiles were made without the reference for tile "
            f"{info.tile} / halo {info.halo}; ground with the recorded tiling"
        )
    if fallback and out is not None and fallback_model is None:
        raise InputError(f"{lr_name}: needs the no-reference model {info.fallback_model}")
    tiling = Tiling(
        grid.height,
        grid.width,
        factor=f,
        tile=tile or info.tile,
        halo=info.halo if halo is None else halo,
    )
    if fallback and max(fallback) >= len(tiling):
        raise InputError(f"{lr_name}: fallback tile {max(fallback)} outside the {len(tiling)} "
                         "tiles of the recorded tiling")
    nodata, dtype, scale = lr.nodata, info.source_dtype, info.scale
    descriptions = lr.descriptions if any(lr.descriptions) else (info.bands or None)
    tags = {k: v for k, v in lr.tags().items() if not k.startswith("GEOREFSCALE_")}
    base = {"MODEL": info.model, "FACTOR": f, "REFERENCE_ID": ";".join(info.reference_ids),
            "LR": Path(lr_name).name}
    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
        hr_stitch = rel_stitch = None
        if out is not None:
            writer = stack.enter_context(GeoTIFFWriter(
                out, grid, count=lr.count, dtype=dtype, nodata=nodata,
                descriptions=descriptions, cog=cog,
                tags={**tags, **prefixed({"PRODUCT": "HR reconstruction", **base,
                                          "ALPHA": alpha, "SEED": seed})},
            ))
            hr_stitch = Stitcher(
                tiling,
                lr.count,
                lambda rows, r0: writer.write_rows(from_float(rows, dtype, scale, nodata), r0),
                level="hr",
            )
        if relevance_out is not None:
            rel_writer = stack.enter_context(GeoTIFFWriter(
                relevance_out, grid, count=1, dtype="float32", nodata=float("nan"),
                descriptions=["reference relevance (0 ignored .. 1 used)"], cog=cog,
                tags=prefixed({"PRODUCT": "reference relevance", **base,
                               "FALLBACK_TILES": encode_ranges(fallback)}),
            ))
            rel_stitch = Stitcher(tiling, 1, rel_writer.write_rows, level="hr")
        for t in _progress(tiling, "ground" if out is not None else "relevance", progress):
            lt = tiling.tile(t.row, t.col, "lr")
            y, mask = to_float(read_window(lr, lt.window), scale, nodata)
            hr_mask = np.repeat(np.repeat(mask, f, axis=1), f, axis=2)
            use_fallback = t.row * tiling.n_cols + t.col in fallback
            m, ref = (fallback_model, None) if use_fallback else (model, None)
            if not use_fallback and m.uses_reference:
                ref = _reference_tile(references, grid, t.window, info.shift, m, dtype)
            if hr_stitch is not None:
                x = _upscale(m, y, ref, alpha, tile_seed(seed, t.row, t.col))
                if nodata is not None:
                    x[hr_mask] = np.nan
                hr_stitch.add(t, x)
            if rel_stitch is not None:
                if use_fallback:
                    rel = np.zeros((1, *hr_mask.shape[1:]), np.float32)
                else:
                    rel = _relevance(m, y, ref)[None]
                if nodata is not None:
                    rel[:, hr_mask.all(axis=0)] = np.nan
                rel_stitch.add(t, rel)
        for s in (hr_stitch, rel_stitch):
            if s is not None:
                s.close()
    return Path(out) if out is not None else None


# -- helpers -----------------------------------------------------------------------------------


def _check_factor(factor: int | None) -> None:
    if factor is not None and factor not in (2, 4):
        raise InputError(f"factor must be 2 or 4, got {factor}")


def _tiling(info: LRInfo) -> Tiling:
    g = info.target_grid
    return Tiling(g.height, g.width, factor=info.factor, tile=info.tile, halo=info.halo)


def _progress(tiling: Tiling, what: str, progress: bool | None) -> Iterator:
    """The HR tiles of ``tiling``, with a tqdm bar on stderr (``progress`` None: only on a
    terminal)."""
    from tqdm import tqdm

    yield from tqdm(tiling.tiles("hr"), total=len(tiling), desc=what, unit="tile",
                    file=sys.stderr, disable=None if progress is None else not progress,
                    leave=False)


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


def _aligned_reference(references, grid: Grid, window, shift) -> np.ndarray:
    """References warped onto the tile window (shift applied), in DN, NaN where uncovered.

    Where the window leaves the target raster, the reference is mirrored exactly like the target
    (:func:`~georefscale.raster.io.read_window`), so the network never sees a reflected scene
    beside an empty reference at the scene's edges."""
    inner, rows, cols = reflect_window(window, grid.height, grid.width)
    block = align(references, grid.window_grid(inner), shift=tuple(shift))
    return block[:, rows[:, None], cols[None, :]]


def _normalise(ref: np.ndarray, model, dtype: str) -> np.ndarray:
    scale = float(model.scale) if model.scale is not None else default_scale(dtype)
    return np.nan_to_num(ref / np.float32(scale), nan=0.0)


def _reference_tile(references, grid: Grid, window, shift, model, dtype: str) -> np.ndarray:
    """References warped onto the tile window (shift applied), normalised, NaN -> 0."""
    return _normalise(_aligned_reference(references, grid, window, shift), model, dtype)


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


def _relevance(model, y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The model's relevance of ``ref`` for LR ``y``: (H, W) float32 in [0, 1] at HR size."""
    import torch

    yt = torch.from_numpy(np.ascontiguousarray(y))[None]
    rt = torch.from_numpy(np.ascontiguousarray(ref))[None]
    with torch.no_grad():
        rel = model.relevance(yt, rt)
    if rel is None:
        raise InputError(f"model {model.name} reports no relevance")
    return rel[0, 0].cpu().numpy().astype(np.float32)
