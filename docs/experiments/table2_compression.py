"""Table 2 of the seed: bits and quality with and without rescaling in front of the codec.

Calls the rate-distortion evaluator
(:func:`georefscale.evaluation.ratedistortion.evaluate`, the engine of
``georefscale rd``) on the five OSCD test cities: each whole target scene is coded directly with
JPEG 2000 at a ladder of rates, and downscaled x4 by each method (LR quantised to uint16), coded,
decoded and rebuilt (alpha = 1, seed 0, with the reference for RefScale). From its curves:

* the total bits over the five scenes each route needs to reach a given PSNR on every scene (per
  scene, ln(bits) interpolated linearly in PSNR on the rising part of its curve; the lowest rung's
  bits where that rung is already above the level; "–" where a route never reaches it on some
  scene, e.g. above a rescaler's ceiling);
* PSNR at each rung of the rate ladder (mean over scenes), the ceiling (rescaling without a
  codec) and the BD-rate against direct coding (negative = fewer bits for the same PSNR).

PSNR in dB with peak 10000 DN (reflectance 1.0); rate in bits per HR pixel.

Run: ``python docs/experiments/table2_compression.py [--methods bicubic,noref-s2-x4,...]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import DATA, OSCD_TEST, RESULTS, md_table, write_outputs

METHODS = ("bicubic", "noref-s2-x4", "refscale-s2-x4")
PSNR_LEVELS = (30.0, 31.0, 32.0, 33.0, 36.0, 39.0)


def run_rd(folder: Path, names: Sequence[str], factor: int, codec: str,
           methods: Sequence[str], bpp: Sequence[float] | None = None) -> dict:
    """``ratedistortion.evaluate`` on the sites ``names`` of ``folder``, plus each site's HR
    pixel count."""
    import rasterio

    from georefscale.evaluation import ratedistortion

    kwargs = {} if bpp is None else {"bpp": tuple(bpp)}
    result = ratedistortion.evaluate(folder, factor, codec, list(methods), sites=list(names),
                                     **kwargs)
    for s in result["sites"].values():
        with rasterio.open(folder / s["target"]) as ds:
            s["hr_pixels"] = (ds.height // factor * factor) * (ds.width // factor * factor)
    return result


def bits_at_psnr(curve: Sequence[Sequence[float]], psnr: float, pixels: int) -> float | None:
    """Bits to reach ``psnr`` on the rising part of ``[[bpp, psnr], ...]``; None if never."""
    from georefscale.evaluation.ratedistortion import rising

    pts = np.asarray(rising(curve), dtype=np.float64)
    if len(pts) == 0 or psnr > pts[-1, 1]:
        return None
    if psnr <= pts[0, 1]:
        return float(pts[0, 0] * pixels)
    log_bpp = np.interp(psnr, pts[:, 1], np.log(pts[:, 0]))
    return float(np.exp(log_bpp) * pixels)


def summary(result: dict, levels: Sequence[float] = PSNR_LEVELS) -> dict:
    """Total bits per route and PSNR level, and the per-rung / ceiling / BD-rate summaries."""
    routes = list(result["curves"])
    totals = {}
    for level in levels:
        totals[f"{level:g}"] = {}
        for route in routes:
            bits = [bits_at_psnr(s["curves"][route], level, s["hr_pixels"])
                    for s in result["sites"].values() if route in s["curves"]]
            ok = bits and all(b is not None for b in bits)
            totals[f"{level:g}"][route] = float(sum(bits)) if ok else None
    ceiling = {m: float(np.mean([s["ceiling"][m] for s in result["sites"].values()
                                 if m in s["ceiling"]]))
               for m in routes if m != "direct"}
    return {"total_bits_at_psnr": totals, "ceiling_psnr": ceiling,
            "bd_rate": result["bd_rate"], "mean_curves": result["curves"],
            "hr_pixels_total": int(sum(s["hr_pixels"] for s in result["sites"].values()))}


def markdown(summ: dict) -> str:
    routes = list(summ["mean_curves"])
    label = {r: "direct (no rescaling)" if r == "direct" else r for r in routes}
    rows = [[f"{lv} dB", *(None if b is None else f"{b / 1e3:.0f}" for b in t.values())]
            for lv, t in summ["total_bits_at_psnr"].items()]
    part1 = md_table(["PSNR on every scene", *(f"kbit, {label[r]}" for r in routes)], rows)
    n = min(len(c) for c in summ["mean_curves"].values())
    rung = [[f"{summ['mean_curves']['direct'][i][0]:.3f}",
             *(summ["mean_curves"][r][i][1] for r in routes)] for i in range(n)]
    part2 = md_table(["bpp (mean, direct coding)", *(f"PSNR {label[r]}" for r in routes)], rung)
    others = [r for r in routes if r != "direct"]
    part3 = md_table(["method", "ceiling PSNR (no codec)", "BD-rate vs direct"],
                     [[r, summ["ceiling_psnr"].get(r),
                       None if summ["bd_rate"].get(r) is None
                       else f"{100 * summ['bd_rate'][r]:+.1f} %"] for r in others])
    return (f"Total bits over the scenes ({summ['hr_pixels_total']} HR pixels) to reach a PSNR "
            f"on every scene:\n\n{part1}\n\nPSNR (dB) at each rung of the rate ladder (mean over "
            f"scenes):\n\n{part2}\n\n{part3}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--codec", default="jpeg2000")
    p.add_argument("--site", action="append", default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    import torch

    from georefscale.evaluation import ratedistortion

    torch.set_num_threads(1)
    result = run_rd(DATA / "oscd", args.site or OSCD_TEST, args.factor, args.codec,
                    args.methods.split(","))
    summ = summary(result)
    out = {"experiment": "table2_compression", "codec": args.codec, "factor": args.factor,
           "methods": args.methods.split(","), "summary": summ, "rd": result, "notes": __doc__}
    name = "table2_compression" if args.factor == 4 else f"table2_compression_x{args.factor}"
    write_outputs(args.out, name, out, f"{args.codec}, x{args.factor}, OSCD test cities\n\n"
                  + markdown(summ))
    ratedistortion.plot(result, args.out / f"{name}.png")


if __name__ == "__main__":
    main()
