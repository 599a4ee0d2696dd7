"""Fig. 6 of the seed: a misaligned, missing or unrelated reference.

The reference (warped onto the target grid) is translated by 20 and 40 pixels (along the rows,
eastwards) or rotated by 5 and 10 degrees about the scene centre with cubic-spline resampling
(``scipy.ndimage``); pixels it no longer covers are 0, as on board. The perturbed reference is used

* (a) ``ground``: on the ground only (the LR product was made with the aligned reference), or
* (b) ``both``: on board and on the ground, or
* (c) ``checked``: as the pipeline does it by default: on board and on the ground if the
  reference's detail agreement with the target
  (:func:`georefscale.metrics.detail_agreement`) reaches ``pipeline.MIN_AGREEMENT``, else
  without it, by the no-reference model (decided here once per scene; the pipeline decides per
  512-pixel tile, and these scenes are one to four tiles).

Also: ``zeros`` (an all-zero reference), ``other city`` (the reference of the next test city,
cropped / mirrored to this scene's size), the no-reference network and bicubic. Reported per case:
the detail agreement of reference and target, the reference relevance (mean over the scene of
``model.relevance(y, ref)``, the gate in [0, 1]), PSNR (dB, peak = 10000 DN for Sentinel-2)
and SSIM over valid pixels (alpha = 1, seed 0), and the shift that
:func:`georefscale.raster.align.estimate_shift` (as used on board by the pipeline) finds for the
translated references.

Run: ``python docs/experiments/fig6_misalignment.py [--model NAME] [--noref NAME]``.
"""

from __future__ import annotations

import numpy as np
from _common import (
    downscale,
    get_model,
    load_scene,
    md_table,
    parse,
    pyplot,
    relevance,
    scores,
    sites,
    stem,
    upscale,
    write_outputs,
)

TRANSLATIONS = (20, 40)  # pixels
ROTATIONS = (5.0, 10.0)  # degrees


def _resample(ref: np.ndarray, fn) -> np.ndarray:
    """Apply the geometric ``fn`` (on a 2-D array, order, cval) to every band of ``ref``; NaN
    where the moved reference does not cover the grid."""
    covered = fn(np.isfinite(ref).all(axis=0).astype(np.float32), 0, 0.0) > 0.5
    filled = np.nan_to_num(ref, nan=0.0)
    out = np.stack([fn(b, 3, 0.0) for b in filled]).astype(np.float32)
    out[:, ~covered] = np.nan
    return out


def translate(ref: np.ndarray, pixels: float) -> np.ndarray:
    """``ref`` moved ``pixels`` columns to the east (cubic spline)."""
    from scipy import ndimage

    return _resample(ref, lambda b, order, cval: ndimage.shift(
        b, (0.0, pixels), order=order, mode="constant", cval=cval))


def rotate(ref: np.ndarray, degrees: float) -> np.ndarray:
    """``ref`` rotated by ``degrees`` (counter-clockwise) about the grid centre (cubic spline)."""
    from scipy import ndimage

    return _resample(ref, lambda b, order, cval: ndimage.rotate(
        b, degrees, reshape=False, order=order, mode="constant", cval=cval))


def fit_to(ref: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Another scene's reference cropped (top left) or mirrored to ``shape``."""
    h, w = shape
    pad = ((0, 0), (0, max(0, h - ref.shape[1])), (0, max(0, w - ref.shape[2])))
    return np.pad(np.nan_to_num(ref, nan=0.0), pad, mode="symmetric")[:, :h, :w]


def perturbations(scene, other_ref: np.ndarray | None) -> dict[str, np.ndarray]:
    """Case name -> perturbed reference (DN, NaN = not covered)."""
    cases = {f"translate {d} px": translate(scene.reference, d) for d in TRANSLATIONS}
    cases.update({f"rotate {a:g} deg": rotate(scene.reference, a) for a in ROTATIONS})
    cases["zeros"] = np.zeros_like(scene.reference)
    if other_ref is not None:
        cases["other city"] = fit_to(other_ref, scene.target.shape[1:])
    return cases


def misalignment(model, scene, other_ref: np.ndarray | None = None, noref=None,
                 seed: int = 0) -> dict:
    """Rows ``{"case", "where", "relevance", "psnr", "ssim", "psnr_covered", ...}`` for one
    scene, and the relevance maps of the aligned / perturbed (both sides) cases."""
    from georefscale.engine import load
    from georefscale.metrics import detail_agreement
    from georefscale.options import FallbackPolicy

    MIN_AGREEMENT = FallbackPolicy().min_agreement
    from georefscale.raster.align import estimate_shift

    rows, maps = [], {}
    y0 = downscale(model, scene, scene.reference)
    target = np.where(scene.valid, scene.target, np.nan)

    def row(case, where, y, ref, extra=None):
        hr = upscale(model, scene, y, ref, seed=seed)
        covered = np.isfinite(ref).all(axis=0)
        r = {"case": case, "where": where, "relevance": relevance(model, scene, y, ref),
             "agreement": detail_agreement(target, ref, model.factor), **scores(scene, hr)}
        cov = scores(scene, hr, covered)
        r.update(psnr_covered=cov["psnr"], ssim_covered=cov["ssim"],
                 covered_fraction=float(covered.mean()), **(extra or {}))
        rows.append(r)
        return r

    row("aligned", "both", y0, scene.reference)
    if model.uses_reference:
        rel = model.relevance(y0, _t(model, scene, scene.reference))
        maps["aligned"] = rel[0, 0].numpy()
    for case, ref in perturbations(scene, other_ref).items():
        extra = None
        if case.startswith("translate"):
            dx, dy, err = estimate_shift(scene.target, ref, target_mask=~scene.valid)
            extra = {"estimated_shift_px": [dx, dy], "shift_error": err}
        row(case, "ground", y0, ref, extra)
        y = downscale(model, scene, ref)
        row(case, "both", y, ref, extra)
        if model.uses_reference:
            maps[case] = model.relevance(y, _t(model, scene, ref))[0, 0].numpy()
    for name, other in (("no-reference model", noref),
                        ("bicubic", load("bicubic", factor=model.factor))):
        if other is None:
            continue
        hr = upscale(other, scene, downscale(other, scene, None), None, seed=seed)
        s = scores(scene, hr)
        rows.append({"case": name, "where": "both", "relevance": None, **s,
                     "psnr_covered": s["psnr"], "ssim_covered": s["ssim"],
                     "covered_fraction": 1.0, "model": other.name})
    fallback = next((r for r in rows if r["case"] == "no-reference model"), None)
    for r in [r for r in rows if r["where"] == "both" and "agreement" in r]:
        used = r["agreement"] >= MIN_AGREEMENT or fallback is None
        rows.append({**(r if used else fallback), "case": r["case"], "where": "checked",
                     "agreement": r["agreement"], "reference_used": used})
    base = rows[0]["psnr"]
    for r in rows:
        r["delta_psnr_db"] = r["psnr"] - base
    return {"site": scene.name, "rows": rows, "maps": maps}


def _t(model, scene, ref):
    from _common import model_scale, to_tensor

    return to_tensor(ref, model_scale(model, scene))


def mean_rows(runs: list[dict]) -> list[dict]:
    """Rows averaged over sites (PSNR, SSIM, relevance, delta), keyed by (case, where)."""
    keys = ["agreement", "relevance", "psnr", "ssim", "psnr_covered", "ssim_covered",
            "delta_psnr_db", "reference_used"]
    out = []
    for i, r0 in enumerate(runs[0]["rows"]):
        rows = [run["rows"][i] for run in runs]
        m = {"case": r0["case"], "where": r0["where"]}
        for k in keys:
            vals = [float(r[k]) for r in rows if r.get(k) is not None]
            m[k] = float(np.mean(vals)) if vals else None
        out.append(m)
    return out


def _value(mean: list[dict], case: str, where: str, key: str) -> float:
    """``key`` of the (case, where) row; cases run only once (aligned, baselines) fill both."""
    rows = [r for r in mean if r["case"] == case]
    row = next((r for r in rows if r["where"] == where), rows[0])
    return np.nan if row[key] is None else row[key]


def figure(mean: list[dict], maps: dict[str, np.ndarray], site: str):
    """Bars of PSNR, SSIM and relevance per case (mean over sites); relevance maps of a site."""
    plt = pyplot()
    cases = list(dict.fromkeys(r["case"] for r in mean))
    fig = plt.figure(figsize=(16, 9), layout="constrained")
    for k, (key, label) in enumerate((("psnr", "PSNR (dB)"), ("ssim", "SSIM"),
                                      ("relevance", "reference relevance"))):
        ax = fig.add_subplot(2, 3, k + 1)
        x = np.arange(len(cases))
        labels = {"ground": "(a) ground only", "both": "(b) on board + ground",
                  "checked": "(c) pipeline default (agreement check)"}
        for j, (where, label_) in enumerate(labels.items()):
            vals = [_value(mean, c, where, key) for c in cases]
            ax.bar(x + (j - 1) * 0.28, vals, 0.28, label=label_)
        ax.set_xticks(x, cases, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel(label)
        if key != "relevance":
            finite = [r[key] for r in mean if r[key] is not None]
            lo, hi = min(finite), max(finite)
            ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
        else:
            ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    show = [c for c in ("aligned", "translate 40 px", "rotate 10 deg", "zeros", "other city")
            if c in maps]
    lo, hi = (np.percentile(np.concatenate([maps[c].ravel() for c in show]), (1, 99))
              if show else (0, 1))
    for k, c in enumerate(show):
        ax = fig.add_subplot(2, len(show), len(show) + k + 1)
        im = ax.imshow(maps[c], cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"{site}: relevance, {c}", fontsize=9)
        ax.axis("off")
    if show:
        fig.colorbar(im, ax=fig.axes[-len(show):], fraction=0.02)
    fig.suptitle("Misaligned / missing / unrelated reference (mean over sites; alpha = 1, seed 0)")
    return fig


def main() -> None:
    def extra(p):
        p.add_argument("--noref", default=None,
                       help="no-reference model (default the model's shipped twin, as on board; "
                            "'none' to skip)")

    args = parse(__doc__.splitlines()[0], extra)
    model = get_model(args.model)
    noref = _noref(args, model)
    site_list = sites(args.data, args.site)
    scenes = [load_scene(s, model.factor, args.crop) for s in site_list]
    runs = []
    for i, scene in enumerate(scenes):
        other = scenes[(i + 1) % len(scenes)] if len(scenes) > 1 else None
        run = misalignment(model, scene, other.reference if other else None, noref)
        run["other_city"] = other.name if other else None
        for r in run["rows"]:
            print(scene.name, r)
        runs.append(run)
    maps = runs[0].pop("maps")
    for run in runs[1:]:
        run.pop("maps")
    mean = mean_rows(runs)
    result = {"experiment": "fig6_misalignment", "model": args.model,
              "noref": noref.name if noref else None, "data": args.data, "crop": args.crop,
              "seed": 0, "alpha": 1.0, "sites": runs, "mean": mean, "notes": __doc__}
    header = ["case", "where", "agreement", "relevance", "PSNR", "ΔPSNR", "SSIM",
              "PSNR covered", "SSIM covered"]
    table = md_table(header, [[r["case"], r["where"], r["agreement"], r["relevance"], r["psnr"],
                               r["delta_psnr_db"], r["ssim"], r["psnr_covered"],
                               r["ssim_covered"]] for r in mean])
    md = (f"Misalignment: model `{args.model}`, {args.data}, mean over "
          f"{', '.join(r['site'] for r in runs)}; PSNR in dB, ΔPSNR against the aligned "
          f"reference; 'covered' = only pixels the moved reference still covers; 'checked' = "
          f"the reference used only where its detail agreement reaches the pipeline's "
          f"threshold, else the no-reference model\n\n{table}")
    write_outputs(args.out, stem("fig6_misalignment", args.model, args.data), result, md,
                  figure(mean, maps, runs[0]["site"]))


def _noref(args, model):
    """The no-reference twin of ``model`` if it exists (or the one named by ``--noref``)."""
    from georefscale.engine.run import noref_twin
    from georefscale.errors import GeoRefScaleError

    if args.noref == "none":
        return None
    if args.noref is None and not args.model.startswith("untrained"):
        return noref_twin(model)  # the shipped twin, found as on board (None if absent)
    name = args.noref or f"untrained-noref-x{model.factor}"
    try:
        return get_model(name)
    except GeoRefScaleError as exc:
        print(f"no-reference model skipped: {exc}")
        return None


if __name__ == "__main__":
    main()
