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

The encoder searches by measuring, since on board the target is known: for each LR made on
board (one per factor asked for, see :class:`BaseCandidate`), the base layer's rate on a ladder
of rates (it starts at :data:`BASE_START` and walks towards the better side while that helps),
compared on a sample of the scene's tiles (:mod:`georefscale.sample`) before one rebuild of the
whole scene at the rate that won, and, for each, the enhancement layer's rate (secant search)
or step; and coding the target directly (:mod:`georefscale.direct`), which it writes instead
when that answers the request better. Each base rate tried costs one ground rebuild of the
sample (or of the scene); each enhancement or direct trial one JPEG 2000 encode (and decode).
Whole-scene arrays (the target, one rebuild and the residual) are held in memory.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rasterio.io import DatasetReader

from georefscale import codecs
from georefscale.bandcoding import (
    BandCoding,
    BandPrediction,
    BandTransform,
    fits_int16,
    predicted_bands,
)
from georefscale.convention import REBUILD_ALPHA, REBUILD_SEED
from georefscale.direct import DirectInfo
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
from georefscale.sample import Sample

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

__all__ = [
    "BASE_RATES",
    "BaseCandidate",
    "ENH_EXT",
    "EnhancementInfo",
    "Layered",
    "describe",
    "add_residual",
    "choose_direct",
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
#: ``GEOREFSCALE_PRODUCT`` of an enhancement layer coded as it is, of one coded in decorrelated
#: bands (:class:`~georefscale.bandcoding.BandTransform`, lossy) and of one coded in predicted
#: bands (:class:`~georefscale.bandcoding.BandPrediction`, lossless); readers older than a
#: coding refuse it, as they must.
ENH_PRODUCT = "enhancement layer"
ENH_PRODUCT_DECORRELATED = "enhancement layer, decorrelated bands"
ENH_PRODUCT_PREDICTED = "enhancement layer, predicted bands"
#: JPEG 2000 rates (coded size in % of the raw LR) on the base layer's ladder for a quality
#: request (quartering down from 40 %); the search starts at :data:`BASE_START` and the next
#: rate and walks towards the better side while that helps (see :func:`choose_layers`). The
#: total is flat near its best base rate (within 1-4 % over a factor 4 on the test cities), so
#: a finer ladder costs rebuilds for little.
BASE_RATES = (0.15625, 0.625, 2.5, 10.0, 40.0)
#: The first rate the search tries for a quality request: where the best base rates of the
#: test cities lie (0.3-5 % at 38-46 dB and E = 5, refscale-s2-x4 and its codec-aware sibling).
BASE_START = 0.625
#: PSNR above the target that ``target_psnr`` may overshoot (dB): the guarantee.
PSNR_SLACK = 0.3
#: Fraction of a byte budget a ``max_bytes`` product may stay below: the guarantee.
BYTES_SLACK = 0.05
#: Where a residual search stops: within this much above the target PSNR (dB) or below the
#: budget (fraction). Tighter than the guarantees, since every 0.1 dB above the target costs
#: about 1.5 % more bytes, and base rates are compared by what their searches land on.
PSNR_AIM, BYTES_AIM = 0.1, 0.02
#: Most encodes of one enhancement-rate (or direct-rate) search.
SEARCH_STEPS = 9
#: First guess of the PSNR gained per unit of log quality when coding a residual (dB): about
#: 4 dB per doubling of the rate in the range the searches work in
PSNR_SLOPE = 6.0
#: Where a target-PSNR search of a residual starts without a better guess (JPEG 2000 quality, %
#: of the raw 16-bit residual)
PSNR_START = 3.0
#: How the base layer is rebuilt, on board and on the ground: the mean reconstruction.
REBUILD = GroundOptions(alpha=REBUILD_ALPHA, seed=REBUILD_SEED)
#: Bisection steps of the base rate when a base layer alone overshoots a target PSNR.
BASE_REFINE_STEPS = 4

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
        transform: the band coding of the residual: a transform for a lossy one, a prediction
            for a lossless one (None: coded as it is).
    """

    base_sha256: str
    reference_identity: tuple[str, ...]
    step: int
    quality: float | None
    rows_sha256: tuple[str, ...]
    tile: int
    transform: BandCoding | None = None

    def residual(self, decoded: np.ndarray) -> np.ndarray:
        """The residual (DN, times ``step`` for a quantised one) of the decoded layer."""
        return decoded if self.transform is None else self.transform.inverse(decoded)

    @property
    def max_error(self) -> int | None:
        """The promised bound (DN) of a near-lossless product, else None."""
        return (self.step - 1) // 2 if self.step else None

    def to_tags(self) -> dict[str, str]:
        if self.transform is None:
            product, extra = ENH_PRODUCT, {}
        elif isinstance(self.transform, BandPrediction):
            product, extra = ENH_PRODUCT_PREDICTED, {"ENH_PREDICTION": self.transform.to_tag()}
        else:
            product, extra = ENH_PRODUCT_DECORRELATED, {"ENH_TRANSFORM": self.transform.to_tag()}
        return prefixed({
            "PRODUCT": product, **extra, "ENH_BASE_SHA256": self.base_sha256,
            "ENH_REFERENCE_IDENTITY": ";".join(self.reference_identity) or "none",
            "ENH_STEP": self.step, "ENH_QUALITY": "" if self.quality is None else self.quality,
            "ENH_ROWS_SHA256": ";".join(self.rows_sha256), "ENH_TILE": self.tile,
            "ENH_ALPHA": REBUILD_ALPHA, "ENH_SEED": REBUILD_SEED,
        })

    @classmethod
    def from_tags(cls, tags: dict[str, str], path: PathLike, shape: tuple[int, int]
                  ) -> EnhancementInfo:
        """Parse and validate the tags of an enhancement layer (untrusted input).

        Args:
            tags: the layer's tags.
            path: the layer, for messages.
            shape: its ``(bands, rows)``.

        Raises:
            InputError: not an enhancement layer, or malformed tags.
        """
        bands, height = shape
        t = {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
        if t.get("PRODUCT") not in (ENH_PRODUCT, ENH_PRODUCT_DECORRELATED,
                                    ENH_PRODUCT_PREDICTED):
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
            transform: BandCoding | None = None
            if t["PRODUCT"] == ENH_PRODUCT_DECORRELATED:
                if step:
                    raise ValueError("a band transform on a quantised residual")
                transform = BandTransform.from_tag(t["ENH_TRANSFORM"], bands)
            elif t["PRODUCT"] == ENH_PRODUCT_PREDICTED:
                if not step:
                    raise ValueError("a band prediction on a lossy residual")
                transform = BandPrediction.from_tag(t["ENH_PREDICTION"], bands)
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path}: enhancement layer tags are incomplete or invalid "
                             f"({exc})") from exc
        return cls(t["ENH_BASE_SHA256"], refs, step, quality, rows, tile, transform)


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
    if not fits_int16(q):
        raise InputError(f"{what}: the residual leaves the 16-bit range the enhancement layer "
                         f"codes ({int(q.min())}..{int(q.max())}); code this scene directly")
    return q.astype(np.int16)


@dataclass(frozen=True)
class Layered:
    """The encoder's choice for one scene.

    Attributes:
        base_quality: JPEG 2000 quality of the base layer (None: the target coded directly).
        base: the coded base layer (bytes; empty when coded directly).
        enhancement: the coded enhancement layer (bytes; a zero residual when the base alone
            meets the target), or the directly coded product.
        step: the residual's quantisation step (0: lossy-coded residual).
        quality: JPEG 2000 quality of a lossy residual.
        rebuild: the base rebuild (DN) the enhancement was made against (zeros when coded
            directly).
        psnr_db: PSNR of the two-layer reconstruction (dB).
        max_error_dn: the largest error of a valid sample (DN).
        trials: how many encodes the search made (base rebuilds, enhancement and direct
            encodes).
        model: the model of the base layer (None when coded directly).
        sampled: rebuilds of a sample of the scene's tiles made to choose the base rate
            (:mod:`georefscale.sample`).
    """

    base_quality: float | None
    base: bytes
    enhancement: bytes
    step: int
    quality: float | None
    rebuild: np.ndarray
    psnr_db: float
    max_error_dn: float
    trials: tuple[int, int]
    model: str | None = None
    sampled: int = 0

    @property
    def direct(self) -> bool:
        """The target is coded directly (one file, no base layer)."""
        return self.base_quality is None

    @property
    def total_bytes(self) -> int:
        return len(self.base) + len(self.enhancement)


#: Makes the coded base layer at a JPEG 2000 quality and the ground's rebuild of it (DN).
BaseMaker = Callable[[float], tuple[bytes, np.ndarray]]
#: The enhancement layer's tags for (base bytes, base rebuild, step, residual quality, band
#: coding).
TagMaker = Callable[[bytes, np.ndarray, int, "float | None", "BandCoding | None"],
                    dict[str, str]]
#: The directly coded product's tags for (step, quality).
DirectTagMaker = Callable[[int, "float | None"], dict[str, str]]
#: Codes an array (the residual, or the target) for (array, step, quality, band coding).
_Coder = Callable[[np.ndarray, int, "float | None", "BandCoding | None"], bytes]


def _scaled(rate: RateTarget, sample: Sample) -> RateTarget:
    """``rate`` for a sample of the scene (a byte budget scales with the sample's share; bits per
    pixel and qualities hold as they are)."""
    if rate.max_bytes is None:
        return rate
    return replace(rate, max_bytes=max(1, round(rate.max_bytes * sample.share)))


def _budget(rate: RateTarget, target: np.ndarray) -> int | None:
    """The byte budget of ``rate`` (None for a quality request)."""
    if rate.bpp is not None:
        return int(rate.bpp * target.shape[1] * target.shape[2] / 8)
    return rate.max_bytes


def _walk(rates: Sequence[float], trial: Callable[[float], Layered | None],
          rate: RateTarget, start: int) -> list[Layered | None]:
    """Try base rates on a sorted ladder: ``rates[start]`` and the next one, then step towards
    the better one while that improves (the total cost is about unimodal in the base rate).
    Returns every trial made (None: that rate fits no product)."""
    done: dict[int, Layered | None] = {}

    def at(i: int) -> Layered | None:
        if i not in done:
            done[i] = trial(rates[i])
        return done[i]

    def wins(i: int, j: int) -> bool:
        a, b = at(i), at(j)
        return a is not None and (b is None or _better(a, b, rate))

    lo = start
    hi = min(len(rates) - 1, lo + 1)
    at(lo)
    at(hi)
    i, step = (hi, 1) if wins(hi, lo) else (lo, -1)
    while 0 <= i + step < len(rates) and wins(i + step, i):
        i += step
    if 0 <= i + step < len(rates):
        at(i + step)
    return list(done.values())


def choose_layers(target: np.ndarray, invalid: np.ndarray, nodata: float | None,
                  make_base: BaseMaker, make_tags: TagMaker, rate: RateTarget, *, factor: int,
                  peak: float, profile: dict, name: str, rates: Sequence[float] | None = None,
                  hint: Layered | None = None) -> Layered:
    """Search the two layers of one LR for ``rate`` by measuring.

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
        rates: the base-layer rates to try (None: the ladder, walked from :data:`BASE_START`
            or, for a budget, from the middle share); one rate when an estimate chose it.
        hint: the layers an estimate found (on a sample of the scene), whose lossy residual
            starts the residual searches.

    Returns:
        The chosen layers.

    Raises:
        InputError: the request cannot be met (a budget below the smallest base layer, a PSNR
            above what lossless gives, a residual outside 16 bits).
    """
    valid = ~invalid
    budget = _budget(rate, target)
    if rates is not None:
        rates, start = sorted(rates), 0
    elif budget is not None:  # base layers of a share of the budget (the LR is 1/f^2 of the HR)
        lr_raw = target.nbytes / factor**2
        rates = sorted({round(min(100.0, max(0.05, 100 * share * budget / lr_raw)), 3)
                        for share in (0.15, 0.3, 0.5, 0.8)})
        start = max(0, (len(rates) - 1) // 2)
    else:
        rates, start = list(BASE_RATES), BASE_RATES.index(BASE_START)
    overflow: list[InputError] = []
    sizes: list[int] = []
    # lossy residuals found, to start the next search from
    priors: list[Layered] = [] if hint is None or hint.quality is None else [hint]

    def trial(q1: float) -> Layered | None:
        base, rebuild = make_base(q1)
        sizes.append(len(base))
        residual = np.where(valid, target.astype(np.int64) - rebuild.astype(np.int64), 0)

        def code(q: np.ndarray, step: int, quality: float | None,
                 transform: BandCoding | None) -> bytes:
            codec = "jpeg2000" if quality is not None else "jpeg2000-lossless"
            return codecs.encode(q, codec, quality, profile=profile,
                                 tags=make_tags(base, rebuild, step, quality, transform),
                                 colour_transform=transform is None)

        decorrelate = target.shape[0] > 1 and rate.max_error is None
        try:
            found = _enhance(target, valid, nodata, rebuild, residual, base, q1, rate, budget,
                             peak, code, lambda a: _as_int16(a, name),
                             transform=BandTransform.fit(residual, valid) if decorrelate
                             else None,
                             prior=priors[-1] if priors else None)
        except InputError as exc:  # this base leaves a residual outside 16 bits
            overflow.append(exc)
            return None
        if found is not None and found.quality is not None:
            priors.append(found)
        return found

    tried = _walk(rates, trial, rate, start)
    found = [t for t in tried if t is not None]
    if not found:
        if budget is not None:
            raise InputError(f"{name}: a byte budget of {budget} is too small for even the base "
                             f"layer (the smallest tried takes {min(sizes)} bytes)")
        raise overflow[0] if overflow else InputError(f"{name}: no product meets the request")
    best = best_product(found, rate)
    if rate.target_psnr is not None and best.psnr_db > rate.target_psnr + PSNR_SLACK:
        # the cheapest is a base layer alone that overshoots: refine its rate downwards
        below = [q for q in rates if q < best.base_quality]
        tried += _settle(best, below[-1] if below else best.base_quality / 2, trial, rate)
        found = [t for t in tried if t is not None]
        within = [t for t in found if t.psnr_db <= rate.target_psnr + PSNR_SLACK]
        best = best_product(within or found, rate)
    encodes = sum(t.trials[1] for t in found)
    return replace(best, trials=(len(tried), encodes))


def _settle(best: Layered, lower: float, trial: Callable[[float], Layered | None],
            rate: RateTarget) -> list[Layered | None]:
    """Bisect the base rate (in log) between ``lower`` and ``best``'s, whose base layer alone
    overshoots the target PSNR by more than :data:`PSNR_SLACK`, for a base that lands within it;
    at most :data:`BASE_REFINE_STEPS` rebuilds. Returns the trials made."""
    ceiling = rate.target_psnr + PSNR_SLACK
    lo, hi = lower, best.base_quality
    out: list[Layered | None] = []
    for _ in range(BASE_REFINE_STEPS):
        t = trial(math.sqrt(lo * hi))
        out.append(t)
        if t is not None and t.psnr_db > ceiling:
            hi = math.sqrt(lo * hi)
        elif t is not None and t.total_bytes <= best.total_bytes:
            break
        else:
            lo = math.sqrt(lo * hi)
    return out


def choose_direct(target: np.ndarray, invalid: np.ndarray, nodata: float | None,
                  make_tags: DirectTagMaker, rate: RateTarget, *, peak: float, profile: dict,
                  beat: Layered | None = None) -> Layered | None:
    """The best product for ``rate`` that codes the target directly with JPEG 2000 (lossy at a
    searched quality, or quantised with step ``2E + 1`` and coded losslessly for ``max_error``).

    Args:
        target: the target scene (DN, ``(bands, rows, cols)``, an integer dtype).
        invalid: its invalid samples (bool, same shape).
        nodata: its nodata value (None: none, or an internal mask).
        make_tags: the product's tags (so measured sizes include them).
        rate: what is asked.
        peak: the PSNR peak (DN).
        profile: ``crs`` / ``transform`` of the target grid.
        beat: the best product found otherwise; for a target PSNR the search starts at its size
            and gives up once a direct product that size falls short of the target.

    Returns:
        The choice (``base_quality`` None), or None when no direct product fits the budget (or
        none beats ``beat``).
    """
    def code(q: np.ndarray, step: int, quality: float | None, _: None) -> bytes:
        codec = "jpeg2000" if quality is not None else "jpeg2000-lossless"
        return codecs.encode(q, codec, quality, profile=profile, tags=make_tags(step, quality))

    dtype = target.dtype
    signal = np.where(invalid, 0, target).astype(np.int64)
    found = _enhance(target, ~invalid, nodata, np.zeros_like(target), signal, b"", None, rate,
                     _budget(rate, target), peak, code, lambda a: a.astype(dtype), direct=True,
                     beat=None if beat is None or rate.target_psnr is None else beat.total_bytes)
    return None if found is None else replace(found, trials=(0, found.trials[1]))


def best_product(choices: Sequence[Layered], rate: RateTarget) -> Layered:
    """The best of the measured products for ``rate`` (the first of equals)."""
    best = choices[0]
    for c in choices[1:]:
        if _better(c, best, rate):
            best = c
    return best


def _better(a: Layered, b: Layered, rate: RateTarget) -> bool:
    if rate.max_bytes is not None or rate.bpp is not None:
        return a.psnr_db > b.psnr_db
    return a.total_bytes < b.total_bytes


def _enhance(target: np.ndarray, valid: np.ndarray, nodata: float | None, rebuild: np.ndarray,
             residual: np.ndarray, base: bytes, q1: float | None, rate: RateTarget,
             budget: int | None, peak: float, code: _Coder,
             cast: Callable[[np.ndarray], np.ndarray], *, direct: bool = False,
             transform: BandTransform | None = None, prior: Layered | None = None,
             beat: int | None = None) -> Layered | None:
    """The best enhancement layer for one base layer (None when none fits the budget, or none
    needs fewer than ``beat`` bytes for a target PSNR); with ``direct`` the "residual" is the
    target itself over a zero base, and no zero residual is tried (there is no base to stand
    alone); with ``transform`` a lossily coded residual is coded in decorrelated bands; a
    residual coded losslessly (quantised for ``max_error``) is coded in predicted bands
    (:class:`~georefscale.bandcoding.BandPrediction`) when they fit 16 bits, the target itself
    (``direct``) as it is, plain JPEG 2000. A lossy search starts from ``prior`` (a lossy
    residual found for a neighbouring base layer, or on a sample of the scene) when given: at
    its quality for a target PSNR, at the quality its bytes per pixel and quality unit give the
    room left for a budget; else at an estimate."""
    dtype = str(target.dtype)
    coded = cast(transform.forward(residual)) if transform is not None else None

    def lossy(quality: float) -> tuple[bytes, np.ndarray]:
        """The residual coded at ``quality`` and the HR it gives."""
        if transform is None:
            enh = code(r16, 0, quality, None)
            return enh, add_residual(rebuild, codecs.decode(enh), 0, dtype)
        enh = code(coded, 0, quality, transform)
        return enh, add_residual(rebuild, transform.inverse(codecs.decode(enh)), 0, dtype)

    def result(enh: bytes, step: int, quality: float | None, hr: np.ndarray,
               n: int) -> Layered:
        hr = finish_hr(hr.copy(), ~valid, nodata)
        err = np.abs(target[valid].astype(np.int64) - hr[valid])
        return Layered(q1, base, enh, step, quality, rebuild, psnr(target, hr, valid, peak),
                       float(err.max()) if err.size else 0.0, (1, n))

    def lossless(q: np.ndarray, step: int, n: int) -> Layered:
        """``q`` (the residual quantised with ``step``, already cast) coded losslessly."""
        bands, prediction = (q, None) if direct else predicted_bands(q, valid)
        enh = code(cast(bands), step, None, prediction)
        return result(enh, step, None, add_residual(rebuild, q, step, dtype), n)

    if rate.max_error is not None:
        step = 2 * rate.max_error + 1
        return lossless(cast(quantise(residual, step)), step, 1)
    r16 = cast(residual)
    raw = r16.nbytes
    tried: list[Layered] = []

    def measured(quality: float) -> Layered:
        enh, hr = lossy(quality)
        tried.append(result(enh, 0, quality, hr, len(tried) + 1))
        return tried[-1]

    if rate.target_psnr is not None:
        goal = rate.target_psnr
        if not direct and psnr(target, rebuild, valid, peak) >= goal:
            return result(code(np.zeros_like(r16), 1, None, None), 1, None, rebuild, 1)

        def reach(x: float) -> float | None:
            t = measured(math.exp(x))
            if beat is not None and t.psnr_db < goal and t.total_bytes >= beat:
                return None  # more bytes than the product to beat, still short of the goal
            return t.psnr_db

        x0 = math.log(prior.quality if prior is not None else (
            min(100.0, max(0.05, 100 * beat / raw)) if beat else PSNR_START))
        _seek(reach, x0, (math.log(0.05), math.log(100.0)), (goal, goal + PSNR_AIM),
              PSNR_SLOPE)
        reached = [t for t in tried if t.psnr_db >= goal]
        if reached:
            return replace(min(reached, key=lambda t: t.total_bytes), trials=(1, len(tried)))
        if beat is not None and tried and tried[-1].total_bytes >= beat:
            return None
        return lossless(r16, 1, len(tried) + 1)  # lossless residual: the target itself
    room = budget - len(base)
    if room <= 0:
        return None
    best: Layered | None = None
    if not direct:
        zero = code(np.zeros_like(r16), 1, None, None)
        best = result(zero, 1, None, rebuild, 1) if len(zero) <= room else None
    if prior is not None:  # coded bytes per pixel and quality unit, as the prior measured
        density = len(prior.enhancement) / (prior.quality * prior.rebuild[0].size)
        guess = room / (density * target[0].size)
    else:
        guess = 100 * room / raw
    x0 = math.log(min(100.0, max(0.01, guess)))
    _seek(lambda x: math.log(len(measured(math.exp(x)).enhancement)), x0,
          (math.log(0.01), math.log(100.0)),
          (math.log((1 - BYTES_AIM) * room), math.log(room)), 1.0)
    for t in tried:
        if t.total_bytes <= budget and (best is None or t.psnr_db > best.psnr_db):
            best = t
    return None if best is None else replace(best, trials=(1, len(tried) + (not direct)))


def _seek(measure: Callable[[float], float | None], x: float, bounds: tuple[float, float],
          goal: tuple[float, float], slope: float) -> None:
    """Drive ``x`` (a log quality) until ``measure(x)``, increasing in ``x``, lands in ``goal``:
    secant steps from the last two measurements (from ``slope`` while there is one), kept inside
    the bracket the measurements have narrowed, bisecting when a step would leave it; at most
    :data:`SEARCH_STEPS` measurements, stopping early when ``measure`` gives None."""
    lo, hi = bounds
    seen: list[tuple[float, float]] = []
    aim = (goal[0] + goal[1]) / 2
    for _ in range(SEARCH_STEPS):
        v = measure(x)
        if v is None or goal[0] <= v <= goal[1]:
            return
        if v < goal[0]:
            lo = x
        else:
            hi = x
        seen.append((x, v))
        s = slope
        if len(seen) > 1 and seen[-1][0] != seen[-2][0]:
            s = (seen[-1][1] - seen[-2][1]) / (seen[-1][0] - seen[-2][0])
            s = s if s > 0 else slope
        x = x + (aim - v) / s
        if not lo < x < hi:
            x = (lo + hi) / 2
        if hi - lo < 1e-3:
            return


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
    enh = EnhancementInfo.from_tags(tags, p, (shape[0], g.height))
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
    """The encoder's choice, for summaries and ``--json``: ``product`` (``layered`` or
    ``direct``), ``model`` of the base layer, sizes (bytes), the residual's ``step`` and JPEG 2000
    ``enhancement_quality`` (of the target itself when coded directly), ``psnr_db``,
    ``max_error_dn`` and the search's ``trials`` (over every candidate measured)."""
    return {"product": "direct" if layered.direct else "layered", "model": layered.model,
            "base_quality": layered.base_quality, "base_bytes": len(layered.base),
            "enhancement_bytes": len(layered.enhancement),
            "total_bytes": layered.total_bytes, "step": layered.step,
            "enhancement_quality": layered.quality, "psnr_db": layered.psnr_db,
            "max_error_dn": layered.max_error_dn,
            "trials": {"base_rebuilds": layered.trials[0],
                       "sample_rebuilds": layered.sampled,
                       "encodes": layered.trials[1]}}


def rebuild_base(base: Path, references: ReferenceSet, models: tuple[Rescaler, Rescaler | None],
                 scratch: Callable[[str], Path], sample: Sample | None = None) -> np.ndarray:
    """The ground's rebuild of a base layer file (alpha 0, seed 0), as DN ``(bands, rows,
    cols)``: what the enhancement layer is the residual to; with ``sample``, only the sample's
    tiles, side by side (:meth:`~georefscale.sample.Sample.rebuild`)."""
    lr = exact_lr(base, scratch("base-decoded.tif"))
    with open_raster(lr, "base layer") as lds, references.open() as rdss:
        info = LRInfo.from_dataset(lds, base.name)
        plan = GroundPlan.make(lds, rdss, info, model=models[0],
                               fallback_model=models[1] if info.fallback_tiles else None,
                               options=REBUILD if sample is None else sample.options)
        if sample is not None:
            return sample.rebuild(plan, lds, rdss)
        hr = scratch("base-rebuild.tif")
        make_hr(plan, lds, rdss, out=hr)
    with open_raster(hr, "base rebuild") as ds:
        return ds.read()


@dataclass(frozen=True)
class BaseCandidate:
    """An LR made on board that the encoder may code as the base layer.

    Attributes:
        lr_file: the LR GeoTIFF (tagged as the base of two layers).
        info: its tags.
        models: its model and no-reference fallback.
    """

    lr_file: Path
    info: LRInfo
    models: tuple[Rescaler, Rescaler | None]


def write_layered(candidates: Sequence[BaseCandidate], out: Path, target: Path,
                  references: ReferenceSet, rate: RateTarget, scratch: Callable[[str], Path],
                  *, direct: bool = True) -> Layered:
    """Choose the product of ``target`` for ``rate`` and write it: the base layer to ``out``
    (``.jp2``) and the enhancement layer beside it (:func:`enhancement_path`), or, when coding
    the target directly answers better, the directly coded product to ``out`` alone
    (:mod:`georefscale.direct`; a stale enhancement layer beside ``out`` is then removed).

    Args:
        candidates: the LRs made on board (one per factor tried; at least one).
        out: the product to write.
        target: the target GeoTIFF.
        references: the references.
        rate: what is asked.
        scratch: fresh temporary paths by name.
        direct: also consider coding the target directly.

    Returns:
        The choice (``direct`` says which kind was written).

    Raises:
        InputError: the request cannot be met.
    """
    from georefscale.atomic import atomic_output, guard_outputs

    enh_file = enhancement_path(out)
    guard_outputs([out, enh_file], [target, *(c.lr_file for c in candidates),
                                    *(r.path for r in references)])
    first = candidates[0].info
    with open_raster(target, "target") as tds:
        (scene, invalid), nodata = read_masked(tds, name=str(target)), tds.nodata
        profile = {"crs": tds.crs, "transform": tds.transform}
        plain = DirectInfo(0, None, first.source_dtype, nodata, has_dataset_mask(tds),
                           first.nodata_mask, first.bands, first.meta, first.scale,
                           first.offset)
    choices: list[Layered] = []
    errors: list[InputError] = []
    for c in candidates:
        try:
            choices.append(_choose_for(c, scene, invalid, nodata, profile, str(target),
                                       references, rate, scratch))
        except InputError as exc:
            errors.append(exc)
    if direct:
        found = choose_direct(
            scene, invalid, nodata,
            lambda step, quality: replace(plain, step=step, quality=quality).to_tags(), rate,
            peak=first.scale, profile=profile,
            beat=best_product(choices, rate) if choices else None)
        if found is not None:
            choices.append(found)
    if not choices:
        raise errors[0]
    best = replace(best_product(choices, rate),
                   trials=(sum(c.trials[0] for c in choices), sum(c.trials[1] for c in choices)),
                   sampled=sum(c.sampled for c in choices))
    if best.direct:
        with atomic_output(out, ".tmp.jp2") as tmp:
            tmp.write_bytes(best.enhancement)
        enh_file.unlink(missing_ok=True)
        return best
    for path, data in ((out, best.base), (enh_file, best.enhancement)):
        with atomic_output(path, ".tmp.jp2") as tmp:
            tmp.write_bytes(data)
    return best


def _choose_for(c: BaseCandidate, scene: np.ndarray, invalid: np.ndarray, nodata: float | None,
                profile: dict, name: str, references: ReferenceSet, rate: RateTarget,
                scratch: Callable[[str], Path]) -> Layered:
    """The two layers of one LR for ``rate``: base rates compared on a sample of the scene's
    tiles when it has one (then one rebuild of the whole scene at the rate that won, the ladder
    when that rate does not serve it), else on the whole scene. Raises InputError as
    :func:`choose_layers`."""
    def make_base(quality: float, sample: Sample | None = None) -> tuple[bytes, np.ndarray]:
        base = scratch(f"base-x{c.info.factor}-{quality:g}.jp2")
        encode_lr(c.lr_file, base, CodecChoice("jpeg2000", quality))
        rebuild = rebuild_base(base, references, c.models, scratch, sample)
        if sample is None:
            return base.read_bytes(), rebuild
        # the sample's share of the base layer: a stand-in of that size, never written
        return bytes(round(base.stat().st_size * sample.share)), rebuild

    def make_tags(base: bytes, rebuild: np.ndarray, step: int, quality: float | None,
                  transform: BandCoding | None) -> dict[str, str]:
        return EnhancementInfo(hashlib.sha256(base).hexdigest(), c.info.reference_identity,
                               step, quality, row_digests(rebuild, c.info.tile), c.info.tile,
                               transform).to_tags()

    def choose(target: np.ndarray, bad: np.ndarray, maker: BaseMaker, asked: RateTarget,
               estimate: Layered | None = None) -> Layered:
        return choose_layers(target, bad, nodata, maker, make_tags, asked,
                             factor=c.info.factor, peak=c.info.scale, profile=profile,
                             name=name,
                             rates=None if estimate is None else [estimate.base_quality],
                             hint=estimate)

    sample, estimate = Sample.make(c.info, REBUILD), None
    if sample is not None:
        try:
            estimate = choose(sample.cut(scene), sample.cut(invalid),
                              lambda q: make_base(q, sample), _scaled(rate, sample))
        except InputError:  # decide on the whole scene, which says why it fails
            estimate = None
    try:
        found = choose(scene, invalid, make_base, rate, estimate)
    except InputError:
        if estimate is None:
            raise
        found = choose(scene, invalid, make_base, rate)  # the estimate's rate does not serve
    sampled = (0, 0) if estimate is None else estimate.trials
    return replace(found, model=c.info.model, sampled=sampled[0],
                   trials=(found.trials[0], found.trials[1] + sampled[1]))


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
                           options=REBUILD, lr_name=base_file.name)
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
    hr = finish_hr(add_residual(base, enh.residual(residual), enh.step, info.source_dtype),
                   masked, nodata)
    layer_tags = prefixed({"LAYERS": 2, "ENHANCEMENT": enh_file.name,
                           "MAX_ERROR": "" if enh.max_error is None else enh.max_error,
                           "ALPHA": REBUILD_ALPHA, "SEED": REBUILD_SEED})
    write_geotiff(out, hr, grid, nodata=nodata, mask=masked if internal else None,
                  descriptions=descriptions, tags={**tags, **layer_tags}, meta=info.meta,
                  cog=options.cog)
    return enh
