"""The two-layer downlink product: a RefScale base layer and a residual enhancement layer.

The base layer is the LR product coded with JPEG 2000 (a valid georeferenced LR raster, readable
by any viewer). The enhancement layer is the residual between the target and the reconstruction
the ground will make from the *decoded* base layer (on board runs the ground's decoder: decode,
upscale with the same reference, alpha 0 and seed 0), a signed 16-bit raster on the HR grid coded
with JPEG 2000, in ``<base>.enh.jp2`` beside the base. Its tags bind it to its base (SHA-256 of
the base file), to the references, and record a SHA-256 of every tile row of the on-board base
rebuild, which the ground verifies before adding the residual (the residual only cancels when
the ground rebuilds the base bit for bit).

Modes (see :class:`~georefscale.options.RateTarget`):

* ``max_error`` E: the residual is quantised uniformly with step ``2E + 1`` and coded losslessly,
  so every valid sample of the HR is within E DN of the target (E = 0: lossless);
* ``target_psnr`` Q: the fewest bytes whose reconstruction reaches Q dB;
* ``max_bytes`` N / ``bpp``: the best PSNR whose two files together are at most N bytes.

The encoder searches the base layer's rate among a few candidates and, for each, the
enhancement layer's rate (or step) by measuring, since on board the target is known. Each base
candidate costs one ground rebuild; each enhancement trial one JPEG 2000 encode and decode of the
residual. Whole-scene arrays (the target, one rebuild and the residual) are held in memory.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rasterio.io import DatasetReader

from georefscale import codecs
from georefscale.convention import REBUILD_ALPHA, REBUILD_SEED
from georefscale.errors import InputError
from georefscale.link import encode_lr, exact_lr
from georefscale.masks import MaskRows
from georefscale.options import CodecChoice, GroundOptions, RateTarget
from georefscale.plans.ground import GroundPlan, make_hr
from georefscale.product import LRInfo
from georefscale.raster.grid import Grid
from georefscale.raster.io import (
    TAG_PREFIX,
    has_dataset_mask,
    open_raster,
    prefixed,
    read_masked,
    sha256_file,
    write_geotiff,
)
from georefscale.references import ReferenceSet

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

__all__ = [
    "BASE_RATES",
    "ENH_EXT",
    "EnhancementInfo",
    "Layered",
    "describe",
    "add_residual",
    "choose_layers",
    "enhancement_path",
    "ground_layered",
    "read_enhancement",
    "rebuild_base",
    "row_digests",
    "write_layered",
]

#: Suffix of the enhancement layer beside its base layer (``lr.jp2`` -> ``lr.enh.jp2``).
ENH_EXT = ".enh.jp2"
#: JPEG 2000 rates (coded size in % of the raw LR) tried for the base layer.
BASE_RATES = (5.0, 10.0, 20.0, 40.0)
#: PSNR above the target that ``target_psnr`` may overshoot before the search refines (dB).
PSNR_SLACK = 0.3
#: Fraction of a byte budget a ``max_bytes`` product may stay below before the search refines.
BYTES_SLACK = 0.05
#: Bisection steps of an enhancement-rate search.
SEARCH_STEPS = 9
_INT16 = np.iinfo(np.int16)

PathLike = str | os.PathLike


def enhancement_path(base: PathLike) -> Path:
    """Where the enhancement layer of ``base`` lives: beside it, ``<stem>.enh.jp2``."""
    p = Path(base)
    return p.with_name(p.name.removesuffix(p.suffix) + ENH_EXT)


def row_digests(hr: np.ndarray, tile: int) -> tuple[str, ...]:
    """SHA-256 (first 16 hex digits) of every band of ``tile`` rows of a DN array, top down."""
    return tuple(hashlib.sha256(np.ascontiguousarray(hr[:, r:r + tile]).tobytes()).hexdigest()[:16]
                 for r in range(0, hr.shape[1], tile))


@dataclass(frozen=True)
class EnhancementInfo:
    """What an enhancement layer records (its ``GEOREFSCALE_ENH_*`` tags).

    Attributes:
        base_sha256: SHA-256 of the base layer file it belongs to.
        reference_identity: the references' identities (as in the base).
        step: quantisation step of the residual (``2E + 1``), or 0 for a lossy-coded residual.
        quality: JPEG 2000 quality of a lossy residual (None when lossless).
        rows_sha256: digests of the on-board base rebuild, one per tile row (see
            :func:`row_digests`).
        tile: rows per digest.
    """

    base_sha256: str
    reference_identity: tuple[str, ...]
    step: int
    quality: float | None
    rows_sha256: tuple[str, ...]
    tile: int

    @property
    def max_error(self) -> int | None:
        """The promised bound (DN) of a near-lossless product, else None."""
        return (self.step - 1) // 2 if self.step else None

    def to_tags(self) -> dict[str, str]:
        return prefixed({
            "PRODUCT": "enhancement layer", "ENH_BASE_SHA256": self.base_sha256,
            "ENH_REFERENCE_IDENTITY": ";".join(self.reference_identity) or "none",
            "ENH_STEP": self.step, "ENH_QUALITY": "" if self.quality is None else self.quality,
            "ENH_ROWS_SHA256": ";".join(self.rows_sha256), "ENH_TILE": self.tile,
            "ENH_ALPHA": REBUILD_ALPHA, "ENH_SEED": REBUILD_SEED,
        })

    @classmethod
    def from_tags(cls, tags: dict[str, str], path: PathLike, height: int) -> EnhancementInfo:
        """Parse and validate the tags of an enhancement layer (untrusted input).

        Raises:
            InputError: not an enhancement layer, or malformed tags.
        """
        t = {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
        if t.get("PRODUCT") != "enhancement layer":
            raise InputError(f"{path}: not a georefscale enhancement layer")
        try:
            step, tile = int(t["ENH_STEP"]), int(t["ENH_TILE"])
            rows = tuple(t["ENH_ROWS_SHA256"].split(";"))
            refs = () if t["ENH_REFERENCE_IDENTITY"] == "none" else tuple(
                t["ENH_REFERENCE_IDENTITY"].split(";"))
            quality = float(t["ENH_QUALITY"]) if t.get("ENH_QUALITY") else None
            if step < 0 or step > 2**15 or (step and step % 2 == 0) or tile < 1:
                raise ValueError("bad step or tile")
            if len(rows) != math.ceil(height / tile):
                raise ValueError("row digests do not cover the scene")
            if (float(t["ENH_ALPHA"]), int(t["ENH_SEED"])) != (REBUILD_ALPHA, REBUILD_SEED):
                raise ValueError("unknown latent rule")
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path}: enhancement layer tags are incomplete or invalid "
                             f"({exc})") from exc
        return cls(t["ENH_BASE_SHA256"], refs, step, quality, rows, tile)


def psnr(target: np.ndarray, hr: np.ndarray, valid: np.ndarray, peak: float) -> float:
    """PSNR (dB) over the valid samples; ``inf`` when exact."""
    d = target[valid].astype(np.float64) - hr[valid]
    mse = float(np.mean(d * d)) if d.size else 0.0
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def _clip_dn(x: np.ndarray, dtype: str) -> np.ndarray:
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(x, info.min, info.max)
    return x


def add_residual(base: np.ndarray, residual: np.ndarray, step: int, dtype: str) -> np.ndarray:
    """The HR: base rebuild + decoded residual (times ``step`` for a quantised one), in DN."""
    r = residual.astype(np.int64) * (step or 1)
    return _clip_dn(base.astype(np.int64) + r, dtype).astype(dtype)


def finish_hr(hr: np.ndarray, masked: np.ndarray, nodata: float | None) -> np.ndarray:
    """Both sides' last step: the target's nodata samples (``masked``) set to ``nodata``, and a
    valid sample that landed on the nodata value moved one DN inward (so it stays valid)."""
    if nodata is None:
        return hr
    hr[masked] = nodata
    if not np.isnan(nodata):
        nudge = 1 if nodata < np.iinfo(hr.dtype).max else -1
        hr[(hr == nodata) & ~masked] = nodata + nudge
    return hr


def quantise(residual: np.ndarray, step: int) -> np.ndarray:
    """Uniform quantisation with step ``2E + 1`` (rounding to the nearest multiple): the
    reconstruction ``q * step`` is within E of ``residual``."""
    e = (step - 1) // 2
    return (np.sign(residual) * ((np.abs(residual) + e) // step)).astype(np.int64)


def _as_int16(q: np.ndarray, what: str) -> np.ndarray:
    if q.size and (q.min() < _INT16.min or q.max() > _INT16.max):
        raise InputError(f"{what}: the residual leaves the 16-bit range the enhancement layer "
                         f"codes ({int(q.min())}..{int(q.max())}); code this scene directly")
    return q.astype(np.int16)


@dataclass(frozen=True)
class Layered:
    """The encoder's choice for one scene.

    Attributes:
        base_quality: JPEG 2000 quality of the base layer.
        base: the coded base layer (bytes).
        enhancement: the coded enhancement layer (bytes; a zero residual when the base alone
            meets the target).
        step: the residual's quantisation step (0: lossy-coded residual).
        quality: JPEG 2000 quality of a lossy residual.
        rebuild: the base rebuild (DN) the enhancement was made against.
        psnr_db: PSNR of the two-layer reconstruction (dB).
        max_error_dn: the largest error of a valid sample (DN).
        trials: how many encodes the search made (base rebuilds, enhancement encodes).
    """

    base_quality: float
    base: bytes
    enhancement: bytes
    step: int
    quality: float | None
    rebuild: np.ndarray
    psnr_db: float
    max_error_dn: float
    trials: tuple[int, int]

    @property
    def total_bytes(self) -> int:
        return len(self.base) + len(self.enhancement)


#: Makes the coded base layer at a JPEG 2000 quality and the ground's rebuild of it (DN).
BaseMaker = Callable[[float], tuple[bytes, np.ndarray]]
#: The enhancement layer's tags for (base bytes, base rebuild, step, residual quality).
TagMaker = Callable[[bytes, np.ndarray, int, "float | None"], dict[str, str]]


def choose_layers(target: np.ndarray, invalid: np.ndarray, nodata: float | None,
                  make_base: BaseMaker, make_tags: TagMaker, rate: RateTarget, *, factor: int,
                  peak: float, profile: dict, name: str) -> Layered:
    """Search the two layers for ``rate`` by measuring.

    Args:
        target: the target scene (DN, ``(bands, rows, cols)``).
        invalid: its invalid samples (bool, same shape; see
            :func:`~georefscale.raster.io.read_masked`).
        nodata: its nodata value (None: the invalid samples are those of an internal mask).
        make_base: codes the base layer at a quality and rebuilds it as the ground will.
        make_tags: the enhancement layer's tags (so measured sizes include them).
        rate: what is asked.
        factor: the rescaling factor (the LR is ``1 / factor**2`` of the HR).
        peak: the PSNR peak (the model's DN scale).
        profile: ``crs`` / ``transform`` of the HR grid (the enhancement layer's georeferencing).
        name: the target, for messages.

    Returns:
        The chosen layers.

    Raises:
        InputError: the request cannot be met (a budget below the smallest base layer, a PSNR
            above what lossless gives, a residual outside 16 bits).
    """
    valid = ~invalid
    hr_pixels = target.shape[1] * target.shape[2]
    budget = rate.max_bytes
    if rate.bpp is not None:
        budget = int(rate.bpp * hr_pixels / 8)
    if budget is not None:  # base layers of a share of the budget (the LR is 1/f^2 of the HR)
        lr_raw = target.nbytes / factor**2
        rates = sorted({round(min(100.0, max(0.05, 100 * share * budget / lr_raw)), 3)
                        for share in (0.15, 0.3, 0.5, 0.8)})
    else:
        rates = list(BASE_RATES)
    best: Layered | None = None
    overflow: InputError | None = None
    rebuilds = encodes = 0
    smallest_base = math.inf
    for q1 in rates:
        base, rebuild = make_base(q1)
        rebuilds += 1
        smallest_base = min(smallest_base, len(base))
        residual = np.where(valid, target.astype(np.int64) - rebuild.astype(np.int64), 0)
        def code(q: np.ndarray, step: int, quality: float | None, base: bytes = base,
                 rebuild: np.ndarray = rebuild) -> bytes:
            codec = "jpeg2000" if quality is not None else "jpeg2000-lossless"
            return codecs.encode(q, codec, quality, profile=profile,
                                 tags=make_tags(base, rebuild, step, quality))

        try:
            trial = _enhance(target, valid, nodata, rebuild, residual, base, q1, rate, budget,
                             peak, code, name)
        except InputError as exc:  # this base leaves a residual outside 16 bits
            overflow = exc
            continue
        if trial is None:
            continue
        encodes += trial.trials[1]
        if best is None or _better(trial, best, rate):
            best = trial
    if best is None:
        if budget is not None:
            raise InputError(f"{name}: a byte budget of {budget} is too small for even the base "
                             f"layer (the smallest tried takes {smallest_base:.0f} bytes)")
        raise overflow or InputError(f"{name}: no product meets the request")
    return Layered(best.base_quality, best.base, best.enhancement, best.step, best.quality,
                   best.rebuild, best.psnr_db, best.max_error_dn, (rebuilds, encodes))


def _better(a: Layered, b: Layered, rate: RateTarget) -> bool:
    if rate.max_bytes is not None or rate.bpp is not None:
        return a.psnr_db > b.psnr_db
    return a.total_bytes < b.total_bytes


def _enhance(target: np.ndarray, valid: np.ndarray, nodata: float | None, rebuild: np.ndarray,
             residual: np.ndarray, base: bytes, q1: float, rate: RateTarget, budget: int | None,
             peak: float,
             code: Callable[[np.ndarray, int, float | None], bytes],
             name: str) -> Layered | None:
    """The best enhancement layer for one base layer (None when none fits the budget)."""
    dtype = str(target.dtype)

    def result(enh: bytes, step: int, quality: float | None, hr: np.ndarray,
               n: int) -> Layered:
        hr = finish_hr(hr.copy(), ~valid, nodata)
        err = np.abs(target[valid].astype(np.int64) - hr[valid])
        return Layered(q1, base, enh, step, quality, rebuild, psnr(target, hr, valid, peak),
                       float(err.max()) if err.size else 0.0, (1, n))

    if rate.max_error is not None:
        step = 2 * rate.max_error + 1
        q = _as_int16(quantise(residual, step), name)
        enh = code(q, step, None)
        return result(enh, step, None, add_residual(rebuild, q, step, dtype), 1)
    base_psnr = psnr(target, rebuild, valid, peak)
    r16 = _as_int16(residual, name)
    raw = r16.nbytes
    if rate.target_psnr is not None:
        goal = rate.target_psnr
        if base_psnr >= goal:
            return result(code(np.zeros_like(r16), 1, None), 1, None, rebuild, 1)
        trials: list[Layered] = []
        lo, hi = math.log(0.05), math.log(100.0)
        for n in range(1, SEARCH_STEPS + 1):  # bisection on log(quality)
            quality = math.exp((lo + hi) / 2)
            enh = code(r16, 0, quality)
            hr = add_residual(rebuild, codecs.decode(enh), 0, dtype)
            trial = result(enh, 0, quality, hr, n)
            if trial.psnr_db >= goal:
                trials.append(trial)
                if trial.psnr_db <= goal + PSNR_SLACK:
                    break
                hi = math.log(quality)
            else:
                lo = math.log(quality)
        if trials:
            return min(trials, key=lambda t: t.total_bytes)
        enh = code(r16, 1, None)  # lossless residual: the target itself
        return result(enh, 1, None, add_residual(rebuild, r16, 1, dtype), SEARCH_STEPS + 1)
    room = budget - len(base)
    if room <= 0:
        return None
    zero = code(np.zeros_like(r16), 1, None)
    best: Layered | None = (result(zero, 1, None, rebuild, 1) if len(zero) <= room else None)
    quality = min(100.0, max(0.05, 100 * room / raw))
    lo, hi = math.log(0.01), math.log(100.0)
    for n in range(1, SEARCH_STEPS + 1):  # estimate, then refine by bisection
        enh = code(r16, 0, quality)
        if len(enh) <= room:
            hr = add_residual(rebuild, codecs.decode(enh), 0, dtype)
            trial = result(enh, 0, quality, hr, n)
            if best is None or trial.psnr_db > best.psnr_db:
                best = trial
            if len(enh) >= (1 - BYTES_SLACK) * room:
                break
            lo = math.log(quality)
        else:
            hi = math.log(quality)
        quality = math.exp((lo + hi) / 2)
    return best


def read_enhancement(path: PathLike, info: LRInfo, base_file: PathLike,
                     references: Sequence[str]) -> tuple[EnhancementInfo, np.ndarray]:
    """Read and check an enhancement layer against its base and references.

    Raises:
        InputError: it is missing, not an enhancement layer, of another base, scene or
            reference.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{base_file}: the product has an enhancement layer, {p} is missing "
                         "(give it, or ground the base layer alone with --base-only)")
    with open_raster(p, "enhancement layer") as ds:
        tags = ds.tags()
        shape = (ds.count, ds.height, ds.width)
        grid_ok = ds.transform.almost_equals(info.target_grid.transform)
    g = info.target_grid
    enh = EnhancementInfo.from_tags(tags, p, g.height)
    if shape[1:] != (g.height, g.width) or not grid_ok:
        raise InputError(f"{p}: enhancement layer is not on the grid of {base_file}'s scene")
    if enh.base_sha256 != sha256_file(base_file):
        raise InputError(f"{p}: enhancement layer belongs to another base layer than "
                         f"{base_file} (SHA-256)")
    if tuple(references) != enh.reference_identity:
        raise InputError(f"{p}: enhancement layer was made with other references")
    residual = codecs.read_compressed(p).array
    if residual.shape != shape or residual.dtype != np.int16:
        raise InputError(f"{p}: enhancement layer is not a 16-bit residual of {shape[0]} bands")
    return enh, residual


def describe(layered: Layered) -> dict:
    """The encoder's choice, for summaries and ``--json``."""
    return {"base_quality": layered.base_quality, "base_bytes": len(layered.base),
            "enhancement_bytes": len(layered.enhancement),
            "total_bytes": layered.total_bytes, "step": layered.step,
            "enhancement_quality": layered.quality, "psnr_db": layered.psnr_db,
            "max_error_dn": layered.max_error_dn,
            "trials": {"base_rebuilds": layered.trials[0],
                       "enhancement_encodes": layered.trials[1]}}


def rebuild_base(base: Path, references: ReferenceSet, models: tuple[Rescaler, Rescaler | None],
                 scratch: Callable[[str], Path]) -> np.ndarray:
    """The ground's rebuild of a base layer file (alpha 0, seed 0), as DN ``(bands, rows,
    cols)``: what the enhancement layer is the residual to."""
    lr = exact_lr(base, scratch("base-decoded.tif"))
    with open_raster(lr, "base layer") as lds, references.open() as rdss:
        info = LRInfo.from_dataset(lds, base.name)
        plan = GroundPlan.make(lds, rdss, info, model=models[0],
                               fallback_model=models[1] if info.fallback_tiles else None,
                               options=GroundOptions(alpha=REBUILD_ALPHA, seed=REBUILD_SEED))
        hr = scratch("base-rebuild.tif")
        make_hr(plan, lds, rdss, out=hr)
    with open_raster(hr, "base rebuild") as ds:
        return ds.read()


def write_layered(lr_file: Path, out: Path, target: Path, info: LRInfo,
                  references: ReferenceSet, models: tuple[Rescaler, Rescaler | None],
                  rate: RateTarget, scratch: Callable[[str], Path]) -> Layered:
    """Choose the two layers of ``target`` for ``rate`` and write them: the base layer to
    ``out`` (``.jp2``), the enhancement layer beside it (:func:`enhancement_path`).

    Args:
        lr_file: the LR GeoTIFF made on board (tagged as the base of two layers).
        out: the base layer to write.
        target: the target GeoTIFF.
        info: the LR product's tags.
        references: its references.
        models: the model and its no-reference fallback.
        rate: what is asked.
        scratch: fresh temporary paths by name.

    Raises:
        InputError: the request cannot be met.
    """
    from georefscale.atomic import atomic_output, guard_outputs

    enh_file = enhancement_path(out)
    guard_outputs([out, enh_file], [target, lr_file, *(r.path for r in references)])
    with open_raster(target, "target") as tds:
        (scene, invalid), nodata = read_masked(tds, name=str(target)), tds.nodata
        profile = {"crs": tds.crs, "transform": tds.transform}

    def make_base(quality: float) -> tuple[bytes, np.ndarray]:
        base = scratch(f"base-{quality:g}.jp2")
        encode_lr(lr_file, base, CodecChoice("jpeg2000", quality))
        return base.read_bytes(), rebuild_base(base, references, models, scratch)

    def make_tags(base: bytes, rebuild: np.ndarray, step: int,
                  quality: float | None) -> dict[str, str]:
        return EnhancementInfo(hashlib.sha256(base).hexdigest(), info.reference_identity, step,
                               quality, row_digests(rebuild, info.tile), info.tile).to_tags()

    layered = choose_layers(scene, invalid, nodata, make_base, make_tags, rate, factor=info.factor,
                            peak=info.scale, profile=profile, name=str(target))
    for path, data in ((out, layered.base), (enh_file, layered.enhancement)):
        with atomic_output(path, ".tmp.jp2") as tmp:
            tmp.write_bytes(data)
    return layered


def ground_layered(lr: DatasetReader, datasets: list[DatasetReader], info: LRInfo, *,
                   models: tuple[Rescaler, Rescaler | None], base_file: Path,
                   enhancement: Path | None, options: GroundOptions, out: Path,
                   scratch: Callable[[str], Path]) -> EnhancementInfo:
    """The HR of a two-layer product: the base rebuilt exactly as on board (checked tile row by
    tile row against the recorded digests), plus the decoded residual.

    Args:
        lr: the open (decoded) base layer.
        datasets: the open references.
        info: the base layer's tags.
        models: the recorded model and no-reference model.
        base_file: the base layer as received (its SHA-256 binds the enhancement layer).
        enhancement: the enhancement layer (default: beside the base).
        options: COG; alpha and seed are the recorded latent rule, not these.
        out: the HR GeoTIFF to write.
        scratch: fresh temporary paths by name.

    Returns:
        The enhancement layer's record (``max_error`` is the bound now guaranteed).

    Raises:
        InputError: the enhancement layer is missing or foreign, or the base rebuild differs
            from the one made on board.
    """
    enh_file = enhancement or enhancement_path(base_file)
    enh, residual = read_enhancement(enh_file, info, base_file, info.reference_identity)
    plan = GroundPlan.make(lr, datasets, info, model=models[0],
                           fallback_model=models[1] if info.fallback_tiles else None,
                           options=GroundOptions(alpha=REBUILD_ALPHA, seed=REBUILD_SEED),
                           lr_name=base_file.name)
    rebuilt = scratch("base-rebuild.tif")
    make_hr(plan, lr, datasets, out=rebuilt, lr_name=base_file.name)
    with open_raster(rebuilt, "base rebuild") as ds:
        base, tags, descriptions, nodata = ds.read(), ds.tags(), ds.descriptions, ds.nodata
        grid, internal = Grid.from_dataset(ds), has_dataset_mask(ds)
    bad = [i for i, (a, b) in enumerate(zip(row_digests(base, enh.tile), enh.rows_sha256,
                                            strict=True)) if a != b]
    if bad:
        raise InputError(
            f"{base_file}: the base rebuild differs from the one made on board in tile rows "
            f"{', '.join(map(str, bad[:10]))} (another engine build or device?): the "
            f"enhancement layer {enh_file.name} cannot be applied; ground with --base-only")
    g = info.target_grid
    # the target's exact invalid samples: a lossy base may decode valid samples to nodata
    masked = (MaskRows(info.nodata_mask, base.shape[0], g.width, g.height).rows(0, g.height)
              if info.nodata_mask else np.zeros(base.shape, bool))
    hr = finish_hr(add_residual(base, residual, enh.step, info.source_dtype), masked, nodata)
    layer_tags = prefixed({"LAYERS": 2, "ENHANCEMENT": enh_file.name,
                           "MAX_ERROR": "" if enh.max_error is None else enh.max_error,
                           "ALPHA": REBUILD_ALPHA, "SEED": REBUILD_SEED})
    write_geotiff(out, hr, grid, nodata=nodata, mask=masked if internal else None,
                  descriptions=descriptions, tags={**tags, **layer_tags}, meta=info.meta,
                  cog=options.cog)
    return enh
