"""Co-registration of derived references on the Sentinel-2 test cities: warp accuracy, the
roundtrip's PSNR against the aligned reference's, and the co-registration's share of the
on-board time.

For each city the target is the later date and the reference the earlier one, as recorded
(``clean``), and derived from it (:func:`derive`): ``cloud`` (a bright, textured cloud over a
third of the reference), ``haze`` (a haze layer over most of the scene: up to 50 % opacity,
brightening by up to ~1000 DN and halving the contrast under its core), ``changed`` (a block of
a fifth of the scene replaced by the scene's opposite corner), ``rot5`` / ``rot10`` (its
georeferencing rotated by 5 / 10 degrees about the scene centre: pixels untouched), ``affine``
(moved 1.5 px, rotated 0.7 degree and stretched 0.5 % along the columns), ``bent`` (resampled
with a smooth local bump of 2 px, as relief displacement: no affine explains it). The true warp
of a derived reference is known from the clean one's: ``M * clean`` (``M`` the pixel-space map
its transform was given; for ``bent`` the clean warp followed by the inverse bump). Measured per
case: the warp error (the largest distance between the estimated warp, shift field included, and
the true one: over the target's corners, for ``bent`` over a 16-px grid of the target, with the
RMS there, and also without the field), the roundtrip's PSNR (refscale-s2-x4, lossless LR) and
its difference to ``clean``, the PSNR outside the cloud / the changed block, for ``bent`` also
the same product grounded with the global warp alone, the windows used / rejected, and the
median time of :func:`~georefscale.raster.coreg.coregister` (with the cloud test, as on board)
against the median on-board time of the case (``--repeat`` runs each); per city, the
no-reference model's PSNR (noref-s2-x4, what a scene that falls back gets).

Prints a table, writes ``benchmarks/results/coregistration.json`` and the figure
``docs/figures/coregistration_field.png`` (the window shifts of the cloud case, rejected
windows marked, and of the bent case with its shift field)::

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
#: haze DN (the same bands) at full opacity
HAZE_DN = (2000.0, 1700.0, 1500.0, 1200.0)
#: peak displacement (px) of the ``bent`` case's bump
BEND_PX = 2.0
CASES = ("clean", "cloud", "haze", "changed", "rot5", "rot10", "affine", "bent")


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


def haze_alpha(height: int, width: int) -> np.ndarray:
    """Opacity 0..0.5 of a haze layer: a broad Gaussian (sigma 35 % of the shorter side) centred
    at 60 % / 45 % of the image."""
    rows, cols = np.mgrid[0:height, 0:width]
    r2 = (cols - 0.6 * width) ** 2 + (rows - 0.45 * height) ** 2
    return 0.5 * np.exp(-r2 / (2 * (0.35 * min(height, width)) ** 2))


def changed_block(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the ``changed`` case's block (45 % of each side, bottom right)."""
    return (slice(round(0.5 * height), round(0.95 * height)),
            slice(round(0.5 * width), round(0.95 * width)))


def bend(cols: np.ndarray, rows: np.ndarray, height: int, width: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """The ``bent`` case's displacement ``(dx, dy)`` (px) at pixel positions ``(cols, rows)`` of
    a ``height x width`` image: a Gaussian bump (sigma a fifth of the shorter side,
    :data:`BEND_PX` at its peak at 35 % / 40 % of the image); the derived reference at ``p``
    shows the recorded one at ``p + (dx, dy)``."""
    g = BEND_PX * np.exp(-((cols - 0.35 * width) ** 2 + (rows - 0.4 * height) ** 2)
                         / (2 * (0.2 * min(height, width)) ** 2))
    return 0.8 * g, -0.6 * g


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
    elif case == "haze":
        alpha = haze_alpha(*arr.shape[1:])
        hazy = (1 - alpha) * arr + alpha * np.asarray(HAZE_DN)[:, None, None]
        arr = np.clip(hazy, 0, 28000).round().astype(arr.dtype)
    elif case == "changed":
        rows, cols = changed_block(*arr.shape[1:])
        h, w = arr.shape[1:]
        arr = arr.copy()
        arr[:, rows, cols] = arr[:, h - rows.stop:h - rows.start, w - cols.stop:w - cols.start]
    elif case == "bent":
        rr, cc = np.mgrid[0:arr.shape[1], 0:arr.shape[2]].astype(float)
        dx, dy = bend(cc, rr, *arr.shape[1:])
        out_arr = [ndimage.map_coordinates(b.astype(float), [rr + dy, cc + dx], order=3,
                                           mode="nearest") for b in arr]
        arr = np.clip(np.stack(out_arr).round(), 0, 28000).astype(arr.dtype)
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


def bent_error(est: Affine, field, clean: Affine, width: int, height: int
               ) -> tuple[float, float]:
    """Largest and RMS distance (target pixels) over a 16-px grid of the target between the
    estimated
    sample positions (``est`` plus ``field``, a :class:`~georefscale.raster.field.ShiftField` or
    None) and the true ones of the ``bent`` reference: ``q`` with ``q + bend(q) = clean * p``
    (the derived reference has the recorded one's grid, which is the target's)."""
    cols, rows = (a.ravel() for a in np.mgrid[0:width + 1:16, 0:height + 1:16].astype(float))
    a, b, c, d, e, f = clean[:6]
    sx, sy = a * cols + b * rows + c, d * cols + e * rows + f
    qx, qy = sx.copy(), sy.copy()
    for _ in range(10):  # fixed point: the bump moves by < 0.05 px per px
        dx, dy = bend(qx, qy, height, width)
        qx, qy = sx - dx, sy - dy
    err = []
    for col, row, x, y in zip(cols, rows, qx, qy, strict=True):
        ex, ey = est @ (col, row)
        if field is not None:
            (fx, fy), _ = field.at(col, row)
            ex, ey = ex + fx, ey + fy
        err.append(math.hypot(ex - x, ey - y))
    return max(err), math.sqrt(float(np.mean(np.square(err))))


def psnr_where(target: Path, hr: Path, scale: float, keep: np.ndarray) -> float:
    """PSNR (dB over ``scale``) of ``hr`` against ``target`` where ``keep`` (rows, cols)."""
    with rasterio.open(target) as t, rasterio.open(hr) as h:
        a, b = t.read().astype(np.float64), h.read().astype(np.float64)
    rmse = math.sqrt(float(((a - b)[:, keep] ** 2).mean()))
    return 20 * math.log10(scale / rmse)


def outside(case: str, height: int, width: int) -> np.ndarray | None:
    """Pixels outside the ``cloud`` / the ``changed`` block (None for the other cases)."""
    if case == "cloud":
        return cloud_alpha(height, width) == 0
    if case == "changed":
        keep = np.ones((height, width), bool)
        keep[changed_block(height, width)] = False
        return keep
    return None


def without_field(lr: Path, out: Path) -> Path:
    """A copy of the product ``lr`` whose ``COREG`` has no shift field (tags digest renewed)."""
    from georefscale.product import tags_digest
    from georefscale.raster.io import georefscale_tags

    out.write_bytes(lr.read_bytes())
    with rasterio.open(out, "r+") as ds:
        coreg = json.loads(georefscale_tags(ds)["COREG"])
        coreg.pop("field")
        ds.update_tags(GEOREFSCALE_COREG=json.dumps(coreg))
        ds.update_tags(GEOREFSCALE_TAGS_SHA256=tags_digest(georefscale_tags(ds)))
    return out


def run_city(city: str, work: Path, repeat: int) -> tuple[list[dict], dict, dict]:
    """The cases of one city: rows of the table, the no-reference PSNR, the windows of the
    cloud and bent cases."""
    import georefscale
    from georefscale.product import LRInfo
    from georefscale.raster.clouds import cloud_mask
    from georefscale.raster.coreg import coregister, measured_windows
    from georefscale.raster.grid import Grid

    clouds = partial(cloud_mask, kind="s2", scale=10000.0)

    target, reference = pair(city)
    with rasterio.open(target) as t:
        width, height = t.width, t.height
    rows, clean, refs = [], None, {}
    for case in CASES:
        ref = reference if case == "clean" else derive(reference, case, work / f"{city}_{case}.tif")
        refs[case] = ref
        lr = work / f"{city}_{case}_lr.tif"
        res = georefscale.roundtrip(target, ref, lr_out=lr, hr_out=work / f"{city}_{case}_hr.tif")
        with rasterio.open(lr) as ds:
            co = LRInfo.from_dataset(ds, lr).coreg
        if case == "clean":
            clean = {"warp": co.warp, "psnr": res["psnr_db"], "hr": res["hr"]}
        scale = res["scale"]
        row = {"city": city, "case": case, "model": co.kind, "windows": co.windows,
               "rejected": co.rejected, "rms_px": co.rms, "matrix": list(co.matrix),
               "field": None if co.field is None else {
                   "spacing_px": co.field.spacing, "windows": co.field.windows,
                   "rms_px": co.field.rms,
                   "nodes": [len(co.field.dx), len(co.field.dx[0])]},
               "fallback_tiles": res["fallback_tiles"], "tiles": res["tiles"],
               "psnr_db": res["psnr_db"], "psnr_vs_clean_db": res["psnr_db"] - clean["psnr"]}
        if case == "bent":
            row["warp_error_px"], row["warp_rms_px"] = bent_error(
                co.warp, co.field, clean["warp"], width, height)
            row["warp_error_global_only_px"], row["warp_rms_global_only_px"] = bent_error(
                co.warp, None, clean["warp"], width, height)
            if co.field is not None:
                hr = georefscale.ground(without_field(lr, work / f"{city}_global_lr.tif"), ref,
                                        out=work / f"{city}_global_hr.tif")
                row["psnr_global_only_db"] = psnr_where(target, hr, scale,
                                                        np.ones((height, width), bool))
        else:
            row["warp_error_px"] = corner_error(
                co.warp, pixel_map(case, width, height) * clean["warp"], width, height)
        keep = outside(case, height, width)
        if keep is not None:
            row["psnr_outside_db"] = psnr_where(target, res["hr"], scale, keep)
            row["clean_psnr_outside_db"] = psnr_where(target, clean["hr"], scale, keep)
        onboard_s, coreg_s = [], []
        for i in range(repeat):
            t0 = time.perf_counter()
            georefscale.onboard(target, ref, out=work / f"{city}_time{i}.tif")
            onboard_s.append(time.perf_counter() - t0)
            with rasterio.open(target) as t, rasterio.open(ref) as r:
                t0 = time.perf_counter()
                coregister(t, [r], Grid.from_dataset(t), mask=clouds)
                coreg_s.append(time.perf_counter() - t0)
        row["onboard_s"] = float(np.median(onboard_s))
        row["coregistration_s"] = float(np.median(coreg_s))
        row["share"] = row["coregistration_s"] / row["onboard_s"]
        rows.append(row)
    noref = georefscale.roundtrip(target, None, lr_out=work / f"{city}_noref_lr.tif",
                                  hr_out=work / f"{city}_noref_hr.tif", model="noref-s2-x4")
    fields = {}
    for case in ("cloud", "bent"):
        with rasterio.open(target) as t, rasterio.open(refs[case]) as r:
            fields[case] = measured_windows(t, [r], Grid.from_dataset(t), mask=clouds)
        fields[case].update(city=city, width=width, height=height, case=case)
    return rows, {"city": city, "noref_psnr_db": noref["psnr_db"]}, fields


def _panel(ax, field: dict) -> None:
    """One case's window shifts (residuals to the fitted warp, x20), rejected windows red; the
    shift field's node values (x20) green."""
    if field["case"] == "cloud":
        alpha = cloud_alpha(field["height"], field["width"])
        ax.contourf(alpha, levels=[0.5, 1.01], colors=["#cfd8e3"])
    for w in field["windows"]:
        (cx, cy), (rx, ry) = w["centre"], w["residual"] or (math.inf, math.inf)
        colour = "tab:blue" if w["used"] else "tab:red"
        ax.plot(cx, cy, "o" if w["used"] else "x", color=colour, ms=5)
        if math.hypot(rx, ry) <= 2.5:
            ax.arrow(cx, cy, 20 * rx, 20 * ry, color=colour, width=0.6, head_width=5)
    f = field["field"]
    if f is not None:
        for i, (rdx, rdy) in enumerate(zip(f.dx, f.dy, strict=True)):
            for j, (vx, vy) in enumerate(zip(rdx, rdy, strict=True)):
                ax.arrow(j * f.spacing, i * f.spacing, 20 * vx, 20 * vy, color="tab:green",
                         width=0.4, head_width=4, alpha=0.8)
    ax.set_xlim(0, field["width"])
    ax.set_ylim(field["height"], 0)
    ax.set_aspect("equal")
    what = ("reference under a cloud (grey)" if field["case"] == "cloud" else
            "reference bent by a 2 px bump; shift field green")
    ax.set_title(f"{field['city']}, {what}:\nwindow shifts against the fitted "
                 f"{field['model']} warp (x20);\nused blue, rejected red", fontsize=9)
    ax.set_xlabel("target column (px)")
    ax.set_ylabel("target row (px)")


def figure(fields: dict, out: Path) -> None:
    """The cloud and the bent cases' window shifts side by side (:func:`_panel`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4))
    for ax, case in zip(axes, ("cloud", "bent"), strict=True):
        _panel(ax, fields[case])
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
    rows, norefs, fields = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for city in args.cities:
            r, n, f = run_city(city, Path(tmp), args.repeat)
            rows += r
            norefs.append(n)
            fields.append(f)
    print(f"{'city':12} {'case':7} {'model':11} {'field':5} {'used':>4} {'rej':>4} "
          f"{'rms px':>6} {'warp err':>8} {'fallback':>8} {'PSNR dB':>7} {'vs clean':>8} "
          f"{'coreg':>6}")
    for r in rows:
        print(f"{r['city']:12} {r['case']:7} {r['model']:11} "
              f"{'yes' if r['field'] else 'no':5} {r['windows']:4d} {r['rejected']:4d} "
              f"{r['rms_px'] if r['rms_px'] is not None else float('nan'):6.3f} "
              f"{r['warp_error_px']:8.3f} {r['fallback_tiles']:4d}/{r['tiles']:<3d} "
              f"{r['psnr_db']:7.2f} {r['psnr_vs_clean_db']:+8.2f} {100 * r['share']:5.1f}%")
        if "psnr_outside_db" in r:
            print(f"{'':12} outside the {'cloud' if r['case'] == 'cloud' else 'block'}: "
                  f"{r['psnr_outside_db']:.2f} dB (clean reference "
                  f"{r['clean_psnr_outside_db']:.2f} dB)")
        if r["field"]:
            print(f"{'':12} field: {r['field']['nodes'][0]} x {r['field']['nodes'][1]} nodes "
                  f"every {r['field']['spacing_px']} px, {r['field']['windows']} windows, "
                  f"rms {r['field']['rms_px']:.3f} px")
        if "warp_error_global_only_px" in r:
            print(f"{'':12} warp RMS {r['warp_rms_px']:.3f} px; global warp alone: warp error "
                  f"{r['warp_error_global_only_px']:.3f} px, RMS "
                  f"{r['warp_rms_global_only_px']:.3f} px"
                  + (f", PSNR {r['psnr_global_only_db']:.2f} dB"
                     if "psnr_global_only_db" in r else ""))
    for n in norefs:
        print(f"{n['city']}: no-reference model {n['noref_psnr_db']:.2f} dB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": rows, "noref": norefs}, indent=1) + "\n")
    figure(fields[0], args.figure)


if __name__ == "__main__":
    main()
