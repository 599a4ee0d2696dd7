"""Fig. 5 of the seed: reconstruction quality against the latent temperature alpha.

Each site is downscaled once (with its reference, LR quantised to the source dtype) and rebuilt
with ``z ~ N(0, alpha^2)``, ``alpha`` in 0, 1, 3, 5, 7, 9 (seed 0). PSNR (dB, peak = 10000 DN for
Sentinel-2) and SSIM (mean over bands, 7x7 window) against the target over valid pixels; the
bicubic round trip of the same scene is given for reference.

Run: ``python docs/experiments/fig5_temperature.py [--model NAME] [--alphas 0,1,3,5,7,9]``.
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
    rgb,
    scores,
    sites,
    stem,
    upscale,
    write_outputs,
)

ALPHAS = (0.0, 1.0, 3.0, 5.0, 7.0, 9.0)


def temperature_sweep(model, scene, alphas=ALPHAS, seed: int = 0) -> dict:
    """``{"site", "alpha", "psnr", "ssim", "bicubic"}`` and the reconstructions (DN)."""
    from georefscale.engine import load

    y = downscale(model, scene, scene.reference)
    rows, images = [], []
    for a in alphas:
        hr = upscale(model, scene, y, scene.reference, alpha=a, seed=seed)
        rows.append(scores(scene, hr))
        images.append(hr)
    bic = load("bicubic", factor=model.factor)
    bic_hr = upscale(bic, scene, downscale(bic, scene, None), None)
    return {
        "site": scene.name,
        "alpha": [float(a) for a in alphas],
        "psnr": [r["psnr"] for r in rows],
        "ssim": [r["ssim"] for r in rows],
        "bicubic": scores(scene, bic_hr),
        "images": images,
    }


def figure(runs: list[dict], scene, images: list[np.ndarray], alphas, crop: int = 128):
    """PSNR and SSIM against alpha (every site and the mean) and crops of the first site."""
    plt = pyplot()
    show = [i for i, a in enumerate(alphas) if a in (0.0, 1.0, 5.0, 9.0)][:4]
    fig, axes = plt.subplots(1, 2 + len(show), figsize=(5 + 5 + 2.6 * len(show), 3.4),
                             gridspec_kw={"width_ratios": [2, 2] + [1] * len(show)})
    for k, ax in zip(("psnr", "ssim"), axes[:2], strict=True):
        for r in runs:
            ax.plot(r["alpha"], r[k], "o-", ms=3, lw=1, alpha=0.6, label=r["site"])
        mean = np.mean([r[k] for r in runs], axis=0)
        ax.plot(runs[0]["alpha"], mean, "k-", lw=2.5, label="mean")
        ax.axhline(np.mean([r["bicubic"][k] for r in runs]), color="k", ls="--", lw=1,
                   label="bicubic (mean)")
        ax.set_xlabel("alpha")
        ax.set_ylabel("PSNR (dB)" if k == "psnr" else "SSIM")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    h, w = scene.target.shape[1:]
    r0, c0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    sl = (slice(None), slice(r0, r0 + crop), slice(c0, c0 + crop))
    for ax, i in zip(axes[2:], show, strict=True):
        ax.imshow(rgb(images[i][sl], scene.peak))
        ax.set_title(f"{scene.name}, alpha = {alphas[i]:g}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def main() -> None:
    args = parse(__doc__.splitlines()[0], lambda p: p.add_argument(
        "--alphas", default=",".join(f"{a:g}" for a in ALPHAS)))
    alphas = tuple(float(a) for a in args.alphas.split(","))
    model = get_model(args.model)
    runs, first = [], None
    for site in sites(args.data, args.site):
        scene = load_scene(site, model.factor, args.crop)
        run = temperature_sweep(model, scene, alphas)
        if first is None:
            first = (scene, run["images"])
        run.pop("images")
        runs.append(run)
        print(run)
    mean = {k: np.mean([r[k] for r in runs], axis=0).tolist() for k in ("psnr", "ssim")}
    mean["bicubic"] = {k: float(np.mean([r["bicubic"][k] for r in runs]))
                       for k in ("psnr", "ssim")}
    result = {"experiment": "fig5_temperature", "model": args.model, "data": args.data,
              "crop": args.crop, "alpha": list(alphas), "seed": 0, "sites": runs, "mean": mean,
              "notes": __doc__}
    header = ["site", *(f"a={a:g}" for a in alphas), "bicubic"]
    rows = []
    for k in ("psnr", "ssim"):
        rows += [[f"{r['site']} {k}", *r[k], r["bicubic"][k]] for r in runs]
        rows.append([f"**mean {k}**", *mean[k], mean["bicubic"][k]])
    md = (f"Temperature: model `{args.model}`, {args.data}, seed 0; PSNR in dB (peak = nominal "
          f"white), SSIM mean over bands\n\n{md_table(header, rows)}")
    write_outputs(args.out, stem("fig5_temperature", args.model, args.data), result, md,
                  figure(runs, first[0], first[1], alphas))


if __name__ == "__main__":
    main()
