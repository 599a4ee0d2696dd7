"""Co-registration of derived references on the Sentinel-2 test cities: warp accuracy, the
roundtrip's PSNR against the aligned reference's, and the co-registration's share of the
on-board time.

For each city the target is the later date and the reference the earlier one, as recorded
(``clean``), and derived from it (:func:`derive`): ``cloud`` (a bright, textured cloud over a
third of the reference), ``rot5`` / ``rot10`` (its georeferencing rotated by 5 / 10 degrees
about the scene centre: pixels untouched), ``affine`` (moved 1.5 px, rotated 0.7 degree and
stretched 0.5 % along the columns). The true warp of a derived reference is known from the clean
one's: ``M * clean`` (``M`` the pixel-space map its transform was given). Measured per case:
the largest distance over the target's corners between the estimated warp and the true one
(px), the roundtrip's PSNR (refscale-s2-x4, lossless LR) and its difference to ``clean``, the
PSNR outside the cloud for ``cloud``, and the windows used / rejected; per city, the
no-reference model's PSNR (noref-s2-x4, what a scene that falls back gets) and the median time
of :func:`~georefscale.raster.coreg.coregister` (with the cloud test, as on board) against the
median on-board time of the same run (3 repetitions).

Prints a table, writes ``benchmarks/results/coregistration.json`` and the figure
``docs/figures/coregistration_field.png`` (the window shifts of the cloud case, rejected
windows marked)::

    python benchmarks/coregistration.py [--cities montpellier rio] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data")) / "oscd"
#: cloud DN (B02 B03 B04 B08, reflectance x 10000) at full opacity
CLOUD_DN = (5600.0, 5400.0, 5300.0, 5900.0)
CASES = ("clean", "cloud", "rot5", "rot10", "affine")


def pair(city: str) -> tuple[Path, Path]:
    """(target, reference): the later and the earlier OSCD date of ``city``."""
    old, new = sorted(DATA.glob(f"{city}_2*.tif"))
    return new, old


def cloud_alpha(height: int, width: int, fraction: float = 1 / 3) -> np.ndarray:
    """Opacity 0..1 of a round cloud covering ``fraction`` of a ``height x width`` image
    (opaque core of that area, a 12-pixel soft edge), centred at 45 % / 50 % of the image."""
    radius = math.sqrt(fraction * height * width / math.pi)
    rows, cols = np.mgrid[0:height, 0:width]
    r = np.hypot(cols - 0.45 * width, rows - 0.5 * height)
    return np.clip((radius + 12 - r) / 12, 0, 1) ** 2 * (r > radius) + (r <= radius)


def pixel_map(case: str, width: int, height: int) -> Affine:
    """The pixel-space map given to the reference's transform for ``case`` (identity for
    ``clean`` and ``cloud``)."""
    centre = (width / 2, height / 2)
    if case in ("rot5", "rot10"):
        return Affine.rotation(float(case[3:]), pivot=centre)
    if case == "affine":
        stretch = Affine.translation(*centre) * Affine.scale(1.005, 1.0) * \
            Affine.translation(-centre[0], -centre[1])
        return Affine.translation(1.5, 0.0) * Affine.rotation(0.7, pivot=centre) * stretch
    return Affine.identity()


def derive(reference: Path, case: str, out: Path) -> Path:
    """Write the derived reference ``case`` of ``reference`` to ``out``."""
    with rasterio.open(reference) as src:
        profile, arr = src.profile, src.read()
        desc, tags = src.descriptions, src.tags()
    if case == "cloud":
        alpha = cloud_alpha(*arr.shape[1:])
        texture = 1 + 0.08 * ndimage.gaussian_filter(
            np.random.default_rng(1).standard_normal(arr.shape[1:]), 6) / 0.04
        cloud = np.asarray(CLOUD_DN)[:, None, None] * texture
        arr = np.clip((1 - alpha) * arr + alpha * cloud, 0, 28000).round().astype(arr.dtype)
    profile["transform"] = profile["transform"] * pixel_map(case, arr.shape[2], arr.shape[1])
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(arr)
        dst.descriptions = desc
        dst.update_tags(**tags)
    return out


def corner_error(est: Affine, true: Affine, width: int, height: int) -> float:
    """Largest distance (target pixels) between two warps over the target's corners."""
    return max(math.dist(est @ q, true @ q)
               for q in [(0, 0), (width, 0), (0, height), (width, height)])


def outside_cloud_psnr(target: Path, hr: Path, scale: float) -> float:
    """PSNR (dB over ``scale``) of ``hr`` against ``target`` where the cloud's opacity is 0."""
    with rasterio.open(target) as t, rasterio.open(hr) as h:
        a, b = t.read().astype(np.float64), h.read().astype(np.float64)
    clear = cloud_alpha(*a.shape[1:]) == 0
    rmse = math.sqrt(float(((a - b)[:, clear] ** 2).mean()))
    return 20 * math.log10(scale / rmse)


def run_city(city: str, work: Path, repeat: int) -> tuple[list[dict], dict, dict]:
    """The cases of one city: rows of the table, the timing, the cloud case's windows."""
    import georefscale
    from georefscale.raster.clouds import cloud_mask
    from georefscale.raster.coreg import coregister, measured_windows
    from georefscale.raster.grid import Grid

    clouds = partial(cloud_mask, kind="s2", scale=10000.0)

    target, reference = pair(city)
    with rasterio.open(target) as t:
        width, height = t.width, t.height
    rows, clean = [], None
    for case in CASES:
        ref = reference if case == "clean" else derive(reference, case, work / f"{city}_{case}.tif")
        res = georefscale.roundtrip(target, ref, lr_out=work / f"{city}_{case}_lr.tif",
                                    hr_out=work / f"{city}_{case}_hr.tif")
        co = res["coregistration"]
        est = Affine(*co["matrix"]) if co["matrix"] else Affine.identity()
        if case == "clean":
            clean = {"warp": est, "psnr": res["psnr_db"]}
        row = {"city": city, "case": case, "model": co["model"], "windows": co["windows"],
               "rejected": co["rejected"], "rms_px": co["rms_px"],
               "fallback_tiles": res["fallback_tiles"], "tiles": res["tiles"],
               "psnr_db": res["psnr_db"], "psnr_vs_clean_db": res["psnr_db"] - clean["psnr"],
               "warp_error_px": corner_error(
                   est, pixel_map(case, width, height) * clean["warp"], width, height)}
        if case == "cloud":
            scale = res["scale"]
            row["psnr_outside_cloud_db"] = outside_cloud_psnr(target, res["hr"], scale)
            row["clean_psnr_outside_cloud_db"] = outside_cloud_psnr(
                target, work / f"{city}_clean_hr.tif", scale)
        rows.append(row)
    onboard_s, coreg_s = [], []
    grid_ref = work / f"{city}_cloud.tif"
    for i in range(repeat):
        t0 = time.perf_counter()
        georefscale.onboard(target, reference, out=work / f"{city}_time{i}.tif")
        onboard_s.append(time.perf_counter() - t0)
        with rasterio.open(target) as t, rasterio.open(reference) as r:
            t0 = time.perf_counter()
            coregister(t, [r], Grid.from_dataset(t), mask=clouds)
            coreg_s.append(time.perf_counter() - t0)
    noref = georefscale.roundtrip(target, None, lr_out=work / f"{city}_noref_lr.tif",
                                  hr_out=work / f"{city}_noref_hr.tif", model="noref-s2-x4")
    timing = {"city": city, "onboard_s": float(np.median(onboard_s)),
              "coregistration_s": float(np.median(coreg_s)), "noref_psnr_db": noref["psnr_db"]}
    timing["share"] = timing["coregistration_s"] / timing["onboard_s"]
    with rasterio.open(target) as t, rasterio.open(grid_ref) as r:
        field = measured_windows(t, [r], Grid.from_dataset(t), mask=clouds)
    field["city"], field["width"], field["height"] = city, width, height
    return rows, timing, field


def figure(field: dict, out: Path) -> None:
    """The cloud case's window shifts (residuals to the fitted warp, arrows x20), rejected
    windows in red, over the cloud's outline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.6))
    alpha = cloud_alpha(field["height"], field["width"])
    ax.contourf(alpha, levels=[0.5, 1.01], colors=["#cfd8e3"])
    for w in field["windows"]:
        (cx, cy), (rx, ry) = w["centre"], w["residual"] or (math.inf, math.inf)
        colour = "tab:blue" if w["used"] else "tab:red"
        ax.plot(cx, cy, "o" if w["used"] else "x", color=colour, ms=5)
        if math.hypot(rx, ry) <= 1.5:
            ax.arrow(cx, cy, 20 * rx, 20 * ry, color=colour, width=0.6, head_width=5)
    ax.set_xlim(0, field["width"])
    ax.set_ylim(field["height"], 0)
    ax.set_aspect("equal")
    ax.set_title(f"{field['city']}, reference under a cloud (grey): window shifts\n"
                 f"against the fitted {field['model']} warp (x20, up to 1.5 px);\n"
                 "used blue, rejected red", fontsize=10)
    ax.set_xlabel("target column (px)")
    ax.set_ylabel("target row (px)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cities", nargs="+", default=["montpellier", "rio"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/coregistration.json")
    parser.add_argument("--figure", type=Path,
                        default=ROOT / "docs/figures/coregistration_field.png")
    args = parser.parse_args()
    rows, timings, fields = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for city in args.cities:
            r, t, f = run_city(city, Path(tmp), args.repeat)
            rows += r
            timings.append(t)
            fields.append(f)
    print(f"{'city':12} {'case':7} {'model':11} {'used':>4} {'rej':>4} {'rms px':>7} "
          f"{'warp err px':>11} {'fallback':>8} {'PSNR dB':>8} {'vs clean':>8}")
    for r in rows:
        print(f"{r['city']:12} {r['case']:7} {r['model']:11} {r['windows']:4d} {r['rejected']:4d} "
              f"{r['rms_px'] if r['rms_px'] is not None else float('nan'):7.3f} "
              f"{r['warp_error_px']:11.3f} {r['fallback_tiles']:4d}/{r['tiles']:<3d} "
              f"{r['psnr_db']:8.2f} {r['psnr_vs_clean_db']:+8.2f}")
        if "psnr_outside_cloud_db" in r:
            print(f"{'':12} outside the cloud: {r['psnr_outside_cloud_db']:.2f} dB "
                  f"(clean reference {r['clean_psnr_outside_cloud_db']:.2f} dB)")
    for t in timings:
        print(f"{t['city']}: co-registration {t['coregistration_s']:.2f} s of an onboard of "
              f"{t['onboard_s']:.2f} s ({100 * t['share']:.1f} %); no-reference model "
              f"{t['noref_psnr_db']:.2f} dB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": rows, "timing": timings}, indent=1) + "\n")
    figure(fields[0], args.figure)


if __name__ == "__main__":
    main()
