"""The job's options as frozen value types: the only copy of every default.

The Python API, the archive and the CLI (whose click options are built from these fields, see
:mod:`georefscale.cli.options`) all take their defaults from here, and every option is checked
once, when its value type is made (:class:`~georefscale.errors.InputError` naming the option).
No heavy imports: this module is safe to import anywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from georefscale.errors import InputError

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

__all__ = [
    "AUTO",
    "DEFAULT_CODED_MODEL",
    "DEFAULT_MODEL",
    "BandSelection",
    "FACTORS",
    "ClusterOptions",
    "CodecChoice",
    "FallbackPolicy",
    "GroundOptions",
    "MASK_RULES",
    "ModelLike",
    "OnboardOptions",
    "RateTarget",
    "TilingOptions",
    "check_factor",
    "default_model",
    "parse_bands",
]

#: Model used when none is named and the LR goes down the link losslessly (a trained Sentinel-2
#: x4 RefScale network).
DEFAULT_MODEL = "refscale-s2-x4"
#: Model used when none is named and the LR is coded with lossy JPEG 2000 (``codec="jpeg2000"``,
#: or the base layer of a rate target): the same network fine-tuned with its LR through JPEG 2000,
#: which rebuilds better from what the link delivers (see docs/engine.md).
DEFAULT_CODED_MODEL = "refscale-s2-x4-jp2"
#: The rescaling factors the engine supports.
FACTORS = (2, 4)
#: ``FallbackPolicy.noref_model`` value meaning "the shipped no-reference twin of the model".
AUTO = "auto"
#: How tiles choose between the reference model and the models without it.
DECISIONS = ("agreement", "measure")
#: How a reference mask's values mark masked pixels (:mod:`georefscale.raster.refmask`):
#: ``"nonzero"`` any value but 0, ``"scl"`` the cloudy Sentinel-2 L2A scene classes and no data.
MASK_RULES = ("nonzero", "scl")
#: Smallest tile core (HR pixels): below it the halo dominates and a scene takes forever.
MIN_TILE = 32
#: Largest tile core (HR pixels): bounds a tile's memory (a crafted product cannot ask for TiB).
MAX_TILE = 8192
#: A model name or a ready rescaler object (``georefscale.engine`` interface).
ModelLike: TypeAlias = "str | Rescaler"
#: The input band for each model band, in the model's order: 1-based indexes or names.
BandSelection: TypeAlias = "tuple[int, ...] | tuple[str, ...]"


def _masks(masks: object) -> tuple[str | os.PathLike, ...]:
    """``reference_masks`` as a tuple of paths (one path alone is taken as one mask).

    Raises:
        InputError: anything but paths / URLs.
    """
    items = (masks,) if isinstance(masks, str | os.PathLike) else masks
    if not isinstance(items, Sequence) or not all(isinstance(m, str | os.PathLike) and str(m)
                                                  for m in items):
        raise InputError(f"reference_masks must be mask file paths, got {masks!r}")
    return tuple(items)


def check_factor(factor: int | None) -> None:
    """The one rule for rescaling factors.

    Args:
        factor: 2 or 4, or None (the model's own factor).

    Raises:
        InputError: for any other value.
    """
    if factor is not None and (isinstance(factor, bool) or factor not in FACTORS):
        raise InputError(f"factor must be 2 or 4, got {factor}")


def default_model(codec: CodecChoice, rate: RateTarget | None) -> str:
    """The model used when none is named: :data:`DEFAULT_CODED_MODEL` when the LR goes down the
    link coded with lossy JPEG 2000 (``codec`` jpeg2000, or a rate target, whose base layer is
    JPEG 2000), else :data:`DEFAULT_MODEL`."""
    return DEFAULT_CODED_MODEL if rate is not None or codec.name == "jpeg2000" else DEFAULT_MODEL


def parse_bands(value: str | Sequence[str | int] | None) -> BandSelection | None:
    """A band selection (:attr:`OnboardOptions.bands`) from ``--bands`` text (``"2,3,4,8"``,
    ``"B02,B03,B04,B08"``) or a sequence of 1-based indexes or names.

    Args:
        value: the selection, or None (bands by name or position, see
            :mod:`georefscale.bandmap`).

    Returns:
        A tuple of ints or of names; None for None.

    Raises:
        InputError: an empty band, an index below 1, indexes and names mixed, or a band twice.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    parsed: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text:
            raise InputError(f"bands {value!r}: {item!r} is not a band (give 1-based indexes "
                             "like 2,3,4,8 or names like B02,B03,B04,B08)")
        if isinstance(item, int) or text.isdigit():
            if int(text) < 1:
                raise InputError(f"bands {value!r}: band indexes start at 1, got {text}")
            parsed.append(int(text))
        else:
            parsed.append(text)
    if len({type(b) for b in parsed}) > 1:
        raise InputError(f"bands {value!r}: give all bands as indexes or all as names")
    keys = [str(b).lower() for b in parsed]
    if len(set(keys)) != len(keys):
        raise InputError(f"bands {value!r}: a band is given twice")
    return tuple(parsed)


def _finite(name: str, value: float, lo: float, hi: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not lo <= value <= hi:
        raise InputError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value}")


@dataclass(frozen=True)
class TilingOptions:
    """How a scene is cut into tiles.

    Attributes:
        tile: tile core size in HR pixels (a multiple of the factor, at least 32).
        halo: overlap on each side in HR pixels (a non-negative multiple of the factor).
    """

    tile: int = 512
    halo: int = 32

    def __post_init__(self) -> None:
        _check_tiling(self.tile, self.halo)


def _check_tiling(tile: int | None, halo: int | None) -> None:
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int)
                             or not MIN_TILE <= tile <= MAX_TILE):
        raise InputError(f"tile {tile} must be an integer of at least {MIN_TILE} pixels "
                         f"(at most {MAX_TILE})")
    if halo is not None and (isinstance(halo, bool) or not isinstance(halo, int) or halo < 0
                             or halo > (tile or MAX_TILE)):
        raise InputError(f"halo {halo} must be a non-negative integer no larger than the tile")


@dataclass(frozen=True)
class FallbackPolicy:
    """When a tile is made without its reference, by the model's no-reference twin.

    A tile falls back when less than ``min_coverage`` of its window is covered by valid
    reference pixels, or when the reference does not show the target's detail (its
    :func:`~georefscale.metrics.detail_agreement` with the target tile is below
    ``min_agreement``; 0 disables that test). Real co-registered references of the Sentinel-2
    test cities score 0.33-0.71 per tile; the same references moved by 20 px, turned by 5
    degrees, of another city or missing score -0.03-0.04. Cheap: no network pass.

    With ``decide="measure"`` these tests are only a pre-filter: every tile is made by
    whichever of the reference model (when the tests let its reference through), the
    no-reference twin and plain bicubic rebuilds it best, measured on board through the
    quantised LR exactly as the ground rebuilds it at alpha 0 (the mean reconstruction), and the
    product records the decision and the reference's measured gain per tile. It costs about
    two extra network passes per candidate and tile.

    Attributes:
        noref_model: the no-reference model: :data:`AUTO` (the shipped twin, if any), a name or
            rescaler object, or None (never fall back).
        min_agreement: detail agreement threshold, -1..1 (0: off).
        min_coverage: reference coverage threshold, 0..1 (fraction of the tile window).
        decide: ``"agreement"`` (the tests alone) or ``"measure"`` (see above).
    """

    noref_model: ModelLike | None = AUTO
    min_agreement: float = 0.2
    min_coverage: float = 0.5
    decide: str = "agreement"

    def __post_init__(self) -> None:
        _finite("min_agreement", self.min_agreement, -1.0, 1.0)
        _finite("min_coverage", self.min_coverage, 0.0, 1.0)
        if self.decide not in DECISIONS:
            raise InputError(f"decide must be one of {', '.join(DECISIONS)}, got "
                             f"{self.decide!r}")

    @property
    def enabled(self) -> bool:
        """Whether tiles may fall back at all."""
        return self.noref_model is not None


@dataclass(frozen=True)
class CodecChoice:
    """The link codec of the LR product.

    Attributes:
        name: a codec of :mod:`georefscale.codecs` (e.g. ``"jpeg2000"``), or None for a
            lossless GeoTIFF.
        quality: the codec's quality in its own units (jpeg2000: coded size in % of raw,
            0-100); None for the codec's default. Needs ``name``.
    """

    name: str | None = None
    quality: float | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.quality is not None:
            raise InputError("a quality needs a codec (codec=..., CLI: --codec)")
        if self.quality is not None:
            _finite("quality", self.quality, 0.0, math.inf)


@dataclass(frozen=True)
class RateTarget:
    """What the operator asks of the downlink product; exactly one field is set. With a rate
    target the product has two layers (see :mod:`georefscale.layers`): the RefScale base layer
    (JPEG 2000) and an enhancement layer (the residual to the target, JPEG 2000).

    Attributes:
        max_bytes: the best PSNR whose whole product (both files) is at most this many bytes.
        bpp: the same, as bits per HR pixel (all bands together).
        target_psnr: the fewest bytes whose reconstruction reaches this PSNR (dB, peak = the
            model's DN scale, valid pixels only).
        max_error: every valid HR sample within this many DN of the target (0: lossless); the
            residual is quantised with step ``2 * max_error + 1`` and coded losslessly.
        factors: other factors (2, 4) whose base layers the search also measures, with the
            model's family for that factor (each costs one more on-board LR and its base
            rebuilds); the model's own factor is always measured.
        direct: also measure coding the target directly (JPEG 2000, no base layer), and write
            that product when it answers the request better (see :mod:`georefscale.direct`).
    """

    max_bytes: int | None = None
    bpp: float | None = None
    target_psnr: float | None = None
    max_error: int | None = None
    factors: tuple[int, ...] = ()
    direct: bool = True

    def __post_init__(self) -> None:
        given = [k for k in ("max_bytes", "bpp", "target_psnr", "max_error")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise InputError("give exactly one of max_bytes, bpp, target_psnr, max_error "
                             f"(got {', '.join(given) or 'none'})")
        if self.max_bytes is not None and (isinstance(self.max_bytes, bool) or not isinstance(
                self.max_bytes, int) or self.max_bytes < 1):
            raise InputError(f"max_bytes must be a positive integer, got {self.max_bytes}")
        if self.bpp is not None:
            _finite("bpp", self.bpp, 1e-6, 64.0)
        if self.target_psnr is not None:
            _finite("target_psnr", self.target_psnr, 1.0, 200.0)
        if self.max_error is not None and (isinstance(self.max_error, bool) or not isinstance(
                self.max_error, int) or self.max_error < 0):
            raise InputError(f"max_error must be a non-negative integer (DN), got "
                             f"{self.max_error}")
        if not isinstance(self.factors, tuple) or None in self.factors:
            raise InputError(f"factors must be a tuple of 2 and/or 4, got {self.factors!r}")
        for f in self.factors:
            check_factor(f)


@dataclass(frozen=True)
class OnboardOptions:
    """Everything that decides how a target becomes an LR product (besides its reference).

    Attributes:
        model: model name (``georefscale.engine.available_models()``) or rescaler object; None
            (the default) for :func:`default_model` of ``codec`` and ``rate``, set at creation.
        factor: 2 or 4, or None for the model's factor.
        tiling: tile and halo.
        fallback: the per-tile no-reference fallback.
        codec: the link codec (default: a lossless GeoTIFF).
        rate: a rate target: makes the two-layer product (the base layer is then JPEG 2000 at a
            rate the encoder chooses; ``codec`` must be None or ``jpeg2000`` without quality).
        correct_shift: estimate and correct the reference's residual shift.
        allow_noref: with no usable reference, use the model's no-reference twin instead of
            failing.
        cog: write a Cloud-Optimized GeoTIFF.
        bands: the input band for each of the model's bands, in the model's order, as 1-based
            indexes (``(2, 3, 4, 8)``) or names (``("B02", "B03", "B04", "B08")``), or the
            same as text (``"2,3,4,8"``); it applies to the target and its references alike.
            None: found by the band descriptions (see :mod:`georefscale.bandmap`).
        reference_masks: a cloud / shadow mask raster for each reference, in the references'
            order (paths or URLs; empty: the references' own mask assets, else the spectral
            test); replaces the mask asset and the spectral test of its reference.
        reference_mask_rule: how the values of ``reference_masks`` mark masked pixels, one of
            :data:`MASK_RULES`.
    """

    model: ModelLike | None = None
    factor: int | None = None
    tiling: TilingOptions = field(default_factory=TilingOptions)
    fallback: FallbackPolicy = field(default_factory=FallbackPolicy)
    codec: CodecChoice = field(default_factory=CodecChoice)
    rate: RateTarget | None = None
    correct_shift: bool = True
    allow_noref: bool = False
    cog: bool = False
    bands: BandSelection | str | None = None
    reference_masks: tuple[str | os.PathLike, ...] = ()
    reference_mask_rule: str = "nonzero"

    def __post_init__(self) -> None:
        check_factor(self.factor)
        object.__setattr__(self, "bands", parse_bands(self.bands))
        object.__setattr__(self, "reference_masks", _masks(self.reference_masks))
        if self.reference_mask_rule not in MASK_RULES:
            raise InputError(f"reference_mask_rule must be one of {', '.join(MASK_RULES)}, got "
                             f"{self.reference_mask_rule!r}")
        if self.rate is not None and (self.codec.name not in (None, "jpeg2000")
                                      or self.codec.quality is not None):
            raise InputError(
                f"a rate target codes the base layer with JPEG 2000 at a rate it chooses; it "
                f"contradicts codec {self.codec.name!r}"
                + (f" at quality {self.codec.quality:g}" if self.codec.quality is not None
                   else ""))
        if self.model is None:
            object.__setattr__(self, "model", default_model(self.codec, self.rate))


@dataclass(frozen=True)
class GroundOptions:
    """How an LR product is rebuilt.

    Attributes:
        alpha: latent temperature, relative to the model's latent: ``z ~ N(0, (alpha *
            s)^2)``, ``s`` the model card's ``sampling_scale`` (1 unless the model's forward
            latent is weaker than N(0, 1)); 0 gives the mean (smoothest)
            reconstruction. Finite, 0..10.
        seed: latent seed; each tile draws from ``(seed, row, col)``.
        tile: tile core size in HR pixels, None for the one recorded in the product.
        halo: tile overlap in HR pixels, None for the one recorded in the product.
        cog: write Cloud-Optimized GeoTIFFs.
        base_only: of a two-layer product, rebuild the base layer alone (its enhancement
            layer is then not needed).
        reference_masks: the mask raster of each reference the product records as masked by a
            file, in the references' order (its rule is the recorded one); empty: the masks of
            the references' assets.
    """

    alpha: float = 1.0
    seed: int = 0
    tile: int | None = None
    halo: int | None = None
    cog: bool = False
    base_only: bool = False
    reference_masks: tuple[str | os.PathLike, ...] = ()

    def __post_init__(self) -> None:
        _finite("alpha", self.alpha, 0.0, 10.0)
        object.__setattr__(self, "reference_masks", _masks(self.reference_masks))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed}")
        _check_tiling(self.tile, self.halo)

    def tiling_for(self, tile: int, halo: int) -> TilingOptions:
        """The tiling to use for a product recorded with ``tile`` and ``halo``."""
        return TilingOptions(self.tile or tile, halo if self.halo is None else self.halo)


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how an archive runs.

    Attributes:
        workers: LocalCluster process workers (None: one per core; 0: serial, no Dask).
        scheduler: address of a running Dask scheduler (instead of a LocalCluster).
        split_pixels: scenes with more pixels are split into tile bands across workers.
        band_rows: tile rows per task of a split scene.
        connect_timeout: seconds to wait for the scheduler.
    """

    workers: int | None = None
    scheduler: str | None = None
    split_pixels: int = 64_000_000
    band_rows: int = 2
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.scheduler is not None:
            raise InputError("give either --workers or --scheduler, not both")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers {self.workers} must be >= 0 (0: serial, no Dask)")
        if self.split_pixels < 1 or self.band_rows < 1:
            raise InputError("split_pixels and band_rows must be positive")
        _finite("connect_timeout", self.connect_timeout, 0.0, 3600.0)
