"""Per-band figures of ``evaluate`` and ``rd``: PSNR and SSIM per band and the spectral angle
beside the pooled numbers, one implementation with ``roundtrip --json``
(:mod:`georefscale.metrics`), on a real Montpellier crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from georefscale.evaluation import ratedistortion, scores

CROP = 128


def _pairs(oscd_dir: Path, folder: Path, crop) -> Path:
    folder.mkdir()
    for name in ("montpellier_20150812.tif", "montpellier_20171030.tif"):
        crop(oscd_dir / name, folder / name, CROP)
    return folder


def test_evaluate_and_rd_report_per_band_figures(oscd_dir, tmp_path, crop):
    pairs = _pairs(oscd_dir, tmp_path / "pairs", crop)
    ev = scores.evaluate(pairs, 4, {"bicubic": "bicubic"})
    row = ev["sites"][0]
    bands = row["bands"]["bicubic"]
    assert len(bands) == 4 and all(set(b) == {"psnr_db", "ssim"} for b in bands)
    # the pooled PSNR is the per-band MSEs pooled; the SSIM their mean
    mse = np.mean([10 ** (-b["psnr_db"] / 10) for b in bands])
    assert abs(-10 * np.log10(mse) - row["psnr"]["bicubic"]) < 1e-9
    assert abs(np.mean([b["ssim"] for b in bands]) - row["ssim"]["bicubic"]) < 1e-12
    assert 0 < row["spectral_angle_deg"]["bicubic"] < 20
    assert ev["mean"]["bands"]["bicubic"] == bands
    rd = ratedistortion.evaluate(pairs, 4, "jpeg2000", ["bicubic"], bpp=(0.5, 1, 2, 4))
    site = rd["sites"]["montpellier"]
    fig = site["uncoded"]["bicubic"]
    assert fig["psnr_db"] == site["ceiling"]["bicubic"]
    assert len(fig["bands"]) == 4 and 0 < fig["spectral_angle_deg"] < 20
    assert np.mean([b["ssim"] for b in fig["bands"]]) == pytest.approx(fig["ssim"])
