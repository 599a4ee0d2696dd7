"""``georefscale evaluate``: bicubic, no-reference and RefScale through the full file pipeline.

For every site of a folder (``<site>_<YYYYMMDD>.tif``; latest date = target, the date before =
reference) each method runs ``onboard`` (tiler, reference alignment, LR written in the source
dtype) and ``ground`` (alpha = 1 by default, fixed seed); the HR GeoTIFF is compared with the
target.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from georefscale import metrics
from georefscale.api import roundtrip
from georefscale.errors import GeoRefScaleError, InputError
from georefscale.evaluation.sites import evaluation_sites
from georefscale.options import GroundOptions, OnboardOptions
from georefscale.raster.io import default_scale, open_raster, read_masked

__all__ = ["CONVENTION", "default_methods", "evaluate", "lr_psnr", "score_files"]

log = logging.getLogger(__name__)

CONVENTION = (
    "PSNR = 10 log10(peak^2 / MSE) dB and SSIM (mean over bands, 7x7 window, data_range = peak) "
    "over all bands and pixels valid in the target; peak = reflectance 1.0 = 10000 DN for uint16 "
    "Sentinel-2, 255 for uint8; reconstruction with alpha = {alpha} and seed = {seed}; lr_psnr = "
    "PSNR of each LR product against the bicubic method's LR product (same peak, valid pixels); "
    "bands: PSNR and SSIM of each band; spectral_angle_deg: mean angle between target and "
    "reconstruction band vectors over the valid pixels (degrees); mean: over sites"
)


def default_methods(factor: int, family: str = "s2") -> dict[str, str]:
    """Method label -> model name for a model family (``s2`` or ``naip``)."""
    return {
        "bicubic": "bicubic",
        "noref": f"noref-{family}-x{factor}",
        "refscale": f"refscale-{family}-x{factor}",
    }


def score_files(target: Path, hr: Path) -> dict:
    """The figures (:func:`~georefscale.metrics.figures`) of the HR GeoTIFF against the target
    over the target's valid pixels, peak = the dtype's scale (10000 DN for uint16, 255 for
    uint8).

    Returns:
        ``psnr_db`` (dB), ``ssim``, ``bands`` (per band ``psnr_db`` and ``ssim``) and
        ``spectral_angle_deg`` (degrees).
    """
    with open_raster(target, "target") as t, open_raster(hr, "HR product") as h:
        raw, invalid = read_masked(t)
        a, b = raw.astype(np.float64), h.read().astype(np.float64)
        valid = ~invalid.any(axis=0)
        peak = default_scale(t.dtypes[0])
    return metrics.figures(a, b, valid, peak)


def lr_psnr(bicubic_lr: Path, lr: Path) -> float:
    """PSNR (dB) of an LR GeoTIFF against the bicubic LR product of the same target, over pixels
    valid in both, peak = the dtype's scale (``inf`` when identical)."""
    with open_raster(bicubic_lr, "bicubic LR product") as b, open_raster(lr, "LR product") as m:
        (a, bad_a), (c, bad_c) = read_masked(b), read_masked(m)
        a, c = a.astype(np.float64), c.astype(np.float64)
        valid = ~(bad_a | bad_c).any(axis=0)
        peak = default_scale(b.dtypes[0])
    return metrics.psnr(a[:, valid], c[:, valid], peak)


def evaluate(
    pairs: str | Path,
    factor: int,
    methods: dict[str, str] | None = None,
    *,
    sites: list[str] | None = None,
    seed: int = 0,
    alpha: float = 1.0,
    include_seen: bool = False,
    workdir: str | Path | None = None,
) -> dict:
    """Per-site and mean PSNR / SSIM of each method; methods whose model cannot be loaded for
    the data (missing, other factor, other bands) are skipped with a warning. Sites whose target
    a model was trained or validated on are left out (listed under ``skipped_seen``) unless
    ``include_seen``."""
    if factor not in (2, 4):
        raise InputError(f"factor must be 2 or 4, got {factor}")
    methods = methods or default_methods(factor)
    chosen, skipped = evaluation_sites(pairs, methods.values(), sites, include_seen)
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for site in chosen:
            row = {"site": site.name, "target": site.target.name,
                   "reference": site.reference.name, "psnr": {}, "ssim": {}, "lr_psnr": {},
                   "bands": {}, "spectral_angle_deg": {}}
            for label, model in methods.items():
                lr, hr = Path(tmp) / f"{site.name}_{label}_lr.tif", Path(tmp) / "hr.tif"
                try:
                    roundtrip(site.target, site.reference, lr_out=lr, hr_out=hr,
                              options=(OnboardOptions(model=model, factor=factor),
                                       GroundOptions(alpha=alpha, seed=seed)))
                except GeoRefScaleError as exc:
                    log.warning("%s: %s skipped: %s", site.name, label, exc)
                    continue
                fig = score_files(site.target, hr)
                row["psnr"][label], row["ssim"][label] = fig["psnr_db"], fig["ssim"]
                row["bands"][label] = fig["bands"]
                row["spectral_angle_deg"][label] = fig["spectral_angle_deg"]
                log.info("%s %s: %.2f dB", site.name, label, row["psnr"][label])
                if label != "bicubic" and "bicubic" in row["psnr"]:
                    row["lr_psnr"][label] = lr_psnr(Path(tmp) / f"{site.name}_bicubic_lr.tif", lr)
            rows.append(row)
    labels = [m for m in methods if all(m in r["psnr"] for r in rows)]
    mean = {k: {m: float(np.mean([r[k][m] for r in rows])) for m in labels}
            for k in ("psnr", "ssim")}
    mean["lr_psnr"] = {m: float(np.mean([r["lr_psnr"][m] for r in rows])) for m in labels
                       if all(m in r["lr_psnr"] for r in rows)}
    mean["spectral_angle_deg"] = {
        m: float(np.mean([r["spectral_angle_deg"][m] for r in rows])) for m in labels
        if all(r["spectral_angle_deg"][m] is not None for r in rows)}
    mean["bands"] = {m: [{k: float(np.mean([r["bands"][m][i][k] for r in rows]))
                          for k in ("psnr_db", "ssim")}
                         for i in range(len(rows[0]["bands"][m]))]
                     for m in labels if len({len(r["bands"][m]) for r in rows}) == 1}
    return {"factor": factor, "models": methods, "alpha": alpha,
            "convention": CONVENTION.format(alpha=alpha, seed=seed),
            "sites": rows, "mean": mean, "skipped_seen": skipped}
