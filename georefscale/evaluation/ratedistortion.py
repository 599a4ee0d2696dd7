"""Rate-distortion evaluation: direct coding of the HR target against rescale + code + rebuild.

For every site of a folder of ``<site>_<YYYYMMDD>.tif`` files (latest date = target, the one before
= reference, aligned onto the target grid and shift-corrected as on board), the whole target scene
(cropped to a multiple of the factor at its bottom/right) is

* coded directly with the codec at a ladder of rates -> decoded -> PSNR against the target, and
* for each rescaling method: downscaled -> quantised to the source dtype -> coded at a ladder of
  rates -> decoded -> upscaled (``alpha=1``, ``seed=0``, with the reference if the model uses
  one) -> PSNR against the target.

Rates are bits per pixel of the original HR scene (:func:`georefscale.codecs.bits_per_pixel`).
PSNR: ``10 log10(peak^2 / MSE)`` in dB, MSE pooled over all bands and valid target pixels, peak =
the model's DN scale (10000 for uint16 = reflectance 1.0, 255 for uint8).  The BD-rate of each
method is taken against direct coding (:func:`georefscale.metrics.bd_rate`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rasterio import Affine

from georefscale import codecs, metrics
from georefscale.atomic import atomic_output
from georefscale.errors import GeoRefScaleError, InputError
from georefscale.evaluation.sites import Site, evaluation_sites

if TYPE_CHECKING:  # torch is imported only when a model is loaded
    from georefscale.engine.rescaler import Rescaler

log = logging.getLogger(__name__)


#: Rate ladder in bits per HR pixel for rate-controlled codecs (jpeg2000).
__all__ = [
    "DEFAULT_BPP",
    "DEFAULT_QUALITIES",
    "MIN_GAIN_DB",
    "PSNR_CONVENTION",
    "align_reference",
    "direct_curve",
    "evaluate",
    "ladder",
    "load_methods",
    "method_curve",
    "plot",
    "rising",
]

DEFAULT_BPP = (0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.2, 3.2)
#: Rates added to the ladder for the layered comparison, which reaches high PSNRs.
HIGH_BPP = (4.5, 6.4, 9.0, 12.8, 18.0)
#: Quality ladder for codecs controlled by a quality number (jpeg, webp).
DEFAULT_QUALITIES = (5, 10, 20, 35, 50, 65, 80, 90, 95)

#: Points gaining less PSNR than this over a cheaper point are left out of BD-rate fits.
MIN_GAIN_DB = 0.05

PSNR_CONVENTION = (
    "PSNR = 10 log10(peak^2 / MSE) dB, MSE pooled over all bands and valid pixels of the target "
    "cropped to a multiple of the factor; peak = DN of reflectance 1.0 (10000 for uint16) or 255 "
    "for uint8; rate = coded bytes * 8 / HR pixels (rows x cols of the cropped target); "
    "BD-rate (Bjontegaard, cubic fit of ln(rate) vs PSNR over the common PSNR range) on the "
    "points of each curve that gain > 0.05 dB over every cheaper point"
)


def align_reference(site: Site, shape: tuple[int, int]) -> np.ndarray:
    """The reference of ``site`` on the top-left ``shape`` (rows, cols) window of the target grid,
    shift-corrected as on board (:func:`~georefscale.raster.align.align_to_target`), float32 DN
    (C, H, W); NaN where no reference data covers the target."""
    from rasterio.windows import Window

    from georefscale.raster.align import align_to_target
    from georefscale.raster.grid import Grid
    from georefscale.raster.io import open_raster

    with (open_raster(site.target, "target") as t,
          open_raster(site.reference, "reference") as r):
        grid = Grid.from_dataset(t).window_grid(Window(0, 0, shape[1], shape[0]))
        return align_to_target(t, [r], grid)


def _load_target(site: Site, factor: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Target DN cropped to a multiple of ``factor``, its valid-pixel mask, its profile."""
    from georefscale.raster.io import open_raster

    with open_raster(site.target, "target") as src:
        rows, cols = (src.height // factor) * factor, (src.width // factor) * factor
        if rows == 0 or cols == 0:
            raise InputError(f"{site.target}: {src.height}x{src.width} is smaller than x{factor}")
        arr = src.read(window=((0, rows), (0, cols)))
        valid = (src.read_masks(window=((0, rows), (0, cols))) > 0).all(axis=0)
        profile = {"crs": src.crs, "transform": src.transform, "nodata": src.nodata,
                   "dtype": src.dtypes[0]}
    return arr, valid, profile


def _psnr(a: np.ndarray, b: np.ndarray, valid: np.ndarray, peak: float) -> float:
    return metrics.psnr(a[:, valid], b[:, valid], peak)


def ladder(codec: str, coded_shape: Sequence[int], hr_shape: Sequence[int], dtype: str,
           bpp: Sequence[float] = DEFAULT_BPP,
           qualities: Sequence[float] = DEFAULT_QUALITIES) -> list[float]:
    """Codec qualities to sweep for an array of ``coded_shape`` (C, h, w) from an HR scene.

    jpeg2000 (quality = % of raw size): the ``bpp`` targets in bits per HR pixel are converted, so
    direct and rescaled coding are sampled at the same rates; targets above 100 % are dropped.
    Other lossy codecs: ``qualities`` as given.
    """
    spec = codecs.get_codec(codec)
    if spec.lossless:
        raise InputError(f"codec {codec!r} is lossless: no rate-distortion curve to sweep")
    if spec.name != "jpeg2000":
        return [float(q) for q in qualities]
    raw_bits = np.dtype(dtype).itemsize * 8 * coded_shape[0] * coded_shape[1] * coded_shape[2]
    hr_pixels = hr_shape[-2] * hr_shape[-1]
    pct = [100.0 * b * hr_pixels / raw_bits for b in bpp]
    return [round(p, 4) for p in pct if 0 < p <= 100]


def direct_curve(target: np.ndarray, valid: np.ndarray, codec: str, peak: float,
                 qualities: Sequence[float], profile: dict | None = None) -> list[list[float]]:
    """``[[bpp, psnr], ...]`` of coding the HR ``target`` itself (georeferenced by ``profile``)."""
    curve = []
    for q in qualities:
        data = codecs.encode(target, codec, q, profile=profile)
        rec = codecs.decode(data)
        curve.append([codecs.bits_per_pixel(len(data), target.shape),
                      _psnr(target, rec, valid, peak)])
    return curve


def method_curve(model: Rescaler, target: np.ndarray, valid: np.ndarray, ref: np.ndarray | None,
                 codec: str, peak: float, qualities: Sequence[float] | None = None,
                 bpp: Sequence[float] = DEFAULT_BPP,
                 profile: dict | None = None) -> tuple[list[list[float]], dict]:
    """``([[bpp, psnr], ...], figures without coding)`` of rescaling ``target`` with ``model``
    (the figures of :func:`~georefscale.metrics.figures`: pooled PSNR, the ceiling of the
    curve, and SSIM, per-band PSNR and SSIM, spectral angle).

    The LR product is quantised to the target dtype (as written on board), coded (georeferenced
    on the target grid of ``profile`` scaled by the factor), decoded and rebuilt with
    ``alpha=1, seed=0``; ``ref`` is float32 DN on the target grid or None.
    """
    from georefscale.engine.run import downscale, upscale

    dtype = str(target.dtype)
    scale = float(model.scale or peak)
    info = np.iinfo(dtype)
    r = None
    if model.uses_reference:
        r = np.nan_to_num(ref, nan=0.0) / np.float32(scale)
    y = downscale(model, target.astype(np.float32) / np.float32(scale), r)
    # the DN grid of the target dtype, rounded in float32 as the engine's quantize does
    lr = np.clip(np.rint(y * np.float32(scale)), info.min, info.max).astype(dtype)

    def rebuild(lr_dn: np.ndarray) -> np.ndarray:
        hr = upscale(model, lr_dn.astype(np.float32) / np.float32(scale), r, 1.0, 0)
        return np.clip(np.rint(hr.astype(np.float64) * scale), info.min, info.max)

    uncoded = metrics.figures(target, rebuild(lr), valid, peak)
    if qualities is None:
        qualities = ladder(codec, lr.shape, target.shape, dtype, bpp=bpp)
    lr_profile = None
    if profile is not None:
        lr_profile = {**profile,
                      "transform": profile["transform"] @ Affine.scale(model.factor)}
    curve = []
    for q in qualities:
        data = codecs.encode(lr, codec, q, profile=lr_profile)
        curve.append([codecs.bits_per_pixel(len(data), target.shape),
                      _psnr(target, rebuild(codecs.decode(data)), valid, peak)])
    return curve, uncoded


def rising(curve: Sequence[Sequence[float]], min_gain_db: float = MIN_GAIN_DB) -> list[list[float]]:
    """The points of ``curve`` (sorted by rate) that each gain more than ``min_gain_db`` over the
    last point kept: plateaus (a rescaler's PSNR ceiling, a codec past lossless) carry no rate
    information and would bend the cubic fit of the BD-rate."""
    kept: list[list[float]] = []
    for r, p in sorted(curve):
        if not kept or p > kept[-1][1] + min_gain_db:
            kept.append([r, p])
    return kept


def _bd(anchor: list[list[float]], test: list[list[float]],
        within: tuple[float, float] | None = None) -> float | None:
    try:
        value = metrics.bd_rate(rising(anchor), rising(test), within)
    except InputError as exc:
        log.warning("BD-rate not computed: %s", exc)
        return None
    return None if math.isnan(value) else value


def load_methods(names: Sequence[str], factor: int) -> dict:
    """Models by name that ``georefscale.engine.load`` accepts for ``factor``; others skipped
    with a warning."""
    from georefscale.engine import load

    models = {}
    for name in names:
        try:
            model = load(name, factor=factor)
        except GeoRefScaleError as exc:
            log.warning("method %s skipped: %s", name, exc)
            continue
        if model.factor != factor:
            log.warning("method %s skipped: it rescales x%d, not x%d", name, model.factor, factor)
            continue
        models[name] = model
    if not models:
        raise InputError(f"none of the methods {', '.join(names)} can be loaded for x{factor}")
    return models


def evaluate(pairs: str | Path, factor: int, codec: str, methods: Sequence[str],
             bpp: Sequence[float] = DEFAULT_BPP,
             qualities: Sequence[float] = DEFAULT_QUALITIES, *,
             sites: list[str] | None = None, include_seen: bool = False,
             layered: bool = False) -> dict:
    """Run the rate-distortion comparison over the sites of ``pairs`` (optionally only
    ``sites``; those whose target a method's model was trained or validated on are left out
    unless ``include_seen``, and listed under ``skipped_seen``); the JSON-ready result.

    ``{"codec", "factor", "psnr", "curves": {method: [[bpp, psnr], ...]}, "bd_rate": {method:
    fraction}, "sites": {site: {"curves", "bd_rate", "ceiling", "uncoded"}}}`` (``uncoded``: per
    method the figures of the reconstruction without coding, pooled and per band, and the
    spectral angle, :func:`~georefscale.metrics.figures`).  The top-level curves are the
    per-rate-step means over sites (bpp and PSNR averaged), the top-level BD-rate the mean of
    the per-site BD-rates (null where a site's curves do not overlap in PSNR).

    With ``layered`` (JPEG 2000 only) the two-layer product of the first method that uses a
    reference is added as the method ``layered`` (see :mod:`georefscale.evaluation.layered`),
    the direct ladder is extended to the rates high PSNRs need, and each site (and the mean)
    gains ``savings`` (bits saved against direct coding at 36, 40 and 44 dB, per method) and
    ``near_lossless`` (bytes for every valid sample within E DN, against lossless and quantised
    direct coding). A site whose residual leaves 16 bits at every base rate (the product
    refuses it) is left out of the layered results with a warning.
    """
    spec = codecs.get_codec(codec)
    if spec.lossless:
        raise InputError(f"codec {codec!r} is lossless: no rate-distortion curve to sweep")
    if factor not in (2, 4):
        raise InputError(f"factor must be 2 or 4, got {factor}")
    if layered and codec != "jpeg2000":
        raise InputError("the layered product codes both layers with jpeg2000 (--codec jpeg2000)")
    chosen, skipped = evaluation_sites(pairs, methods, sites, include_seen)
    models = load_methods(methods, factor)
    if layered:
        bpp = tuple(bpp) + tuple(b for b in HIGH_BPP if b > max(bpp))
    per_site: dict[str, dict] = {}
    for site in chosen:
        target, valid, profile = _load_target(site, factor)
        dtype = str(target.dtype)
        if spec.dtypes is not None and dtype not in spec.dtypes:
            raise InputError(f"{site.target}: codec {codec!r} takes {'/'.join(spec.dtypes)}, "
                             f"the target is {dtype}")
        from georefscale.raster.io import default_scale

        peak = default_scale(dtype)
        ref = None
        if any(m.uses_reference for m in models.values()):
            ref = align_reference(site, target.shape[1:])
        q_direct = ladder(codec, target.shape, target.shape, dtype, bpp, qualities)
        curves = {"direct": direct_curve(target, valid, codec, peak, q_direct, profile)}
        ceiling, uncoded = {}, {}
        for name, model in models.items():
            if model.bands is not None and model.bands != target.shape[0]:
                log.warning("%s: method %s skipped: %d bands, model takes %d", site.name, name,
                            target.shape[0], model.bands)
                continue
            q = None if spec.name == "jpeg2000" else list(qualities)
            curves[name], uncoded[name] = method_curve(model, target, valid, ref, codec, peak,
                                                       q, bpp, profile)
            ceiling[name] = uncoded[name]["psnr_db"]
        extra = {}
        if layered:
            from georefscale.evaluation.layered import BD_RANGE, FIXED_PSNR, layered_site

            ref_model = next((m for m in models.values() if m.uses_reference), None)
            if ref_model is None:
                raise InputError("--layered needs a RefScale method (one that uses a reference)")
            lay = layered_site(ref_model, target, valid, ref, peak, profile)
            if lay is None:
                log.warning("%s: left out of the layered results: its residual leaves the "
                            "16 bits of the enhancement layer at every base rate (the product "
                            "refuses this scene; code it directly)", site.target)
            else:
                curves["layered"] = lay["layered"]
                extra = {"near_lossless": lay["near_lossless"], "savings": {
                    name: {f"{p:g}": _saving(curves["direct"], c, p) for p in FIXED_PSNR}
                    for name, c in curves.items() if name != "direct"},
                    "bd_rate_range": {n: _bd(curves["direct"], c, BD_RANGE)
                                      for n, c in curves.items() if n != "direct"}}
        per_site[site.name] = {
            **extra,
            "curves": curves,
            "bd_rate": {n: _bd(curves["direct"], c) for n, c in curves.items() if n != "direct"},
            "ceiling": ceiling,
            "uncoded": uncoded,
            "peak": peak,
            "target": site.target.name,
            "reference": site.reference.name,
        }
        log.info("%s: %s", site.name, per_site[site.name]["bd_rate"])
    result = {
        "codec": codec,
        "factor": factor,
        "psnr": PSNR_CONVENTION,
        "curves": _mean_curves(per_site),
        "bd_rate": _mean_bd(per_site),
        "sites": per_site,
        "skipped_seen": skipped,
    }
    coded = [s for s in per_site.values() if "near_lossless" in s]
    if layered and coded:
        from georefscale.evaluation.layered import BD_RANGE

        result["bd_rate_range"] = {"psnr_db": list(BD_RANGE), **_mean_nested(
            s["bd_rate_range"] for s in coded)}
        result["savings"] = _mean_nested(s["savings"] for s in coded)
        result["near_lossless"] = _mean_nested(s["near_lossless"] for s in coded)
    return result


def _saving(direct: list, test: list, psnr_db: float) -> float | None:
    from georefscale.evaluation.layered import savings_at

    return savings_at(direct, test, psnr_db)


def _mean_nested(rows) -> dict:
    """Mean of the numbers of nested dicts of the same shape (None values left out)."""
    rows = list(rows)
    out: dict = {}
    for key in rows[0]:
        values = [r[key] for r in rows if key in r]
        if isinstance(values[0], dict):
            out[key] = _mean_nested(values)
        else:
            nums = [v for v in values if isinstance(v, int | float)]
            out[key] = float(np.mean(nums)) if nums else None
    return out


def _mean_curves(per_site: dict[str, dict]) -> dict[str, list[list[float]]]:
    """Per-rate-step means of the curves swept on the common ladder (the layered envelopes are
    not on one ladder: they are compared per site)."""
    names = {n for s in per_site.values() for n in s["curves"]} - {"layered"}
    out = {}
    for name in sorted(names, key=lambda n: (n != "direct", n)):
        curves = [s["curves"][name] for s in per_site.values() if name in s["curves"]]
        n = min(len(c) for c in curves)
        out[name] = np.mean([c[:n] for c in curves], axis=0).tolist()
    return out


def _mean_bd(per_site: dict[str, dict]) -> dict[str, float | None]:
    names = {n for s in per_site.values() for n in s["bd_rate"]}
    out = {}
    for name in sorted(names):
        vals = [s["bd_rate"].get(name) for s in per_site.values()]
        vals = [v for v in vals if v is not None]
        out[name] = float(np.mean(vals)) if vals else None
    return out


def plot(result: dict, path: str | Path) -> None:
    """PSNR vs bits per HR pixel: mean curves and one panel per site; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("mean over sites", result["curves"], result["bd_rate"])] + [
        (name, s["curves"], s["bd_rate"]) for name, s in result["sites"].items()]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 4 * nrows), squeeze=False)
    for ax, (title, curves, bd) in zip(axes.flat, panels, strict=False):
        for name, pts in curves.items():
            pts = np.asarray(pts)
            label = name if name == "direct" or bd.get(name) is None else (
                f"{name} (BD-rate {100 * bd[name]:+.1f} %)")
            ax.plot(pts[:, 0], pts[:, 1], "o-", ms=3, label=label)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("bits per HR pixel")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{result['codec']}, x{result['factor']}")
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path, ".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
