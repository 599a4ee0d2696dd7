"""Fig. 4 of the seed: reconstructions of the same LR product with different samples of z.

For each site the target is downscaled once (with its reference, LR quantised to the source dtype)
and rebuilt with ``alpha = 1`` and seeds 0..K-1. Statistics of the differences between samples
(DN; peak = 10000 DN for Sentinel-2):

* ``sample_std_dn``: per-pixel standard deviation over the K samples, mean over pixels and bands;
* ``pair_rms_dn`` / ``pair_psnr_db``: RMS difference of two samples and the PSNR between them;
* ``recon_rms_dn``: RMS error of sample 0 against the target (for scale);
* ``hf_fraction``: share of the power of (sample 0 - sample 1) at spatial frequencies with
  max(|fx|, |fy|) > 0.25 cycles/pixel (white noise: 0.75; smooth structure: near 0);
* ``lag1_corr``: correlation of the difference with itself one pixel right/down (white noise: 0);
* ``edge_corr``: correlation of the per-pixel sample std with the target's gradient magnitude
  (0 = the differences do not follow the image structure).

Run: ``python docs/experiments/fig4_latent_samples.py [--model NAME] [--seeds 4]``.
"""

from __future__ import annotations

import itertools

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

HF_CUTOFF = 0.25  # cycles per pixel


def hf_fraction(diff: np.ndarray) -> float:
    """Share of the power of ``diff`` (C, H, W; mean removed per band) above ``HF_CUTOFF``."""
    d = diff - diff.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(d)) ** 2
    fy = np.abs(np.fft.fftfreq(d.shape[1]))[:, None]
    fx = np.abs(np.fft.fftfreq(d.shape[2]))[None, :]
    high = np.maximum(fx, fy) > HF_CUTOFF
    total = power.sum()
    return float(power[:, high].sum() / total) if total > 0 else float("nan")


def lag1_corr(diff: np.ndarray) -> float:
    """Mean over bands of the correlation of ``diff`` with its 1-pixel right and down shifts."""
    vals = []
    for band in diff:
        for a, b in ((band[:, :-1], band[:, 1:]), (band[:-1], band[1:])):
            if a.std() > 0 and b.std() > 0:
                vals.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    return float(np.mean(vals)) if vals else float("nan")


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    """Band-mean Sobel gradient magnitude (H, W)."""
    from scipy import ndimage

    return np.mean([np.hypot(ndimage.sobel(b, 0), ndimage.sobel(b, 1)) for b in img], axis=0)


def radial_power(diff: np.ndarray, bins: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Band-summed power of ``diff`` averaged in rings of max(|fx|, |fy|): (centres, power)."""
    d = diff - diff.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(d)) ** 2).sum(axis=0) / d[0].size
    fy = np.abs(np.fft.fftfreq(d.shape[1]))[:, None]
    fx = np.abs(np.fft.fftfreq(d.shape[2]))[None, :]
    f = np.maximum(fx, fy)
    edges = np.linspace(0, 0.5, bins + 1)
    idx = np.clip(np.digitize(f, edges) - 1, 0, bins - 1)
    sums = np.bincount(idx.ravel(), power.ravel(), bins)
    counts = np.bincount(idx.ravel(), minlength=bins)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1)


def latent_samples(model, scene, seeds=(0, 1, 2, 3), alpha: float = 1.0) -> dict:
    """Statistics (see the module docstring) and the sample images of one scene."""
    y = downscale(model, scene, scene.reference)
    samples = np.stack([upscale(model, scene, y, scene.reference, alpha, s) for s in seeds])
    v = scene.valid
    std = samples.std(axis=0)
    pairs = [samples[i] - samples[j] for i, j in itertools.combinations(range(len(seeds)), 2)]
    pair_mse = float(np.mean([np.mean(p[:, v] ** 2) for p in pairs]))
    diff = samples[0] - samples[1]
    recon = scores(scene, samples[0])
    grad = gradient_magnitude(scene.target)
    s = std.mean(axis=0)
    edge = float(np.corrcoef(s[v], grad[v])[0, 1]) if s[v].std() > 0 else float("nan")
    stats = {
        "site": scene.name,
        "seeds": list(seeds),
        "alpha": alpha,
        "sample_std_dn": float(std[:, v].mean()),
        "pair_rms_dn": float(np.sqrt(pair_mse)),
        "pair_max_abs_dn": float(max(np.abs(p[:, v]).max() for p in pairs)),
        "pair_psnr_db": float(10 * np.log10(scene.peak**2 / pair_mse)) if pair_mse else None,
        "recon_rms_dn": float(np.sqrt(np.mean((samples[0] - scene.target)[:, v] ** 2))),
        "recon_psnr_db": recon["psnr"],
        "hf_fraction": hf_fraction(diff),
        "lag1_corr": lag1_corr(diff),
        "edge_corr": edge,
    }
    return {"stats": stats, "samples": samples, "std": std, "diff": diff}


def figure(scene, run: dict, crop: int = 128):
    """Target, two samples, their difference (enhanced), the sample std and its spectrum."""
    plt = pyplot()
    h, w = scene.target.shape[1:]
    r0, c0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    sl = (slice(None), slice(r0, r0 + crop), slice(c0, c0 + crop))
    diff = run["diff"][sl].mean(axis=0)
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    std = run["std"][sl].mean(axis=0)
    fig, axes = plt.subplots(1, 6, figsize=(17, 3.2))
    panels = [
        (rgb(scene.target[sl], scene.peak), "target", None),
        (rgb(run["samples"][0][sl], scene.peak), "seed 0", None),
        (rgb(run["samples"][1][sl], scene.peak), "seed 1", None),
        (diff, f"seed 0 - seed 1 (band mean, ±{lim:.0f} DN)", ("RdBu", -lim, lim)),
        (std, "std over seeds (DN)", ("magma", 0, float(np.percentile(std, 99.5)) or 1)),
    ]
    for ax, (img, title, cmap) in zip(axes, panels, strict=False):
        if cmap is None:
            ax.imshow(img)
        else:
            im = ax.imshow(img, cmap=cmap[0], vmin=cmap[1], vmax=cmap[2])
            fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    f, p = radial_power(run["diff"])
    axes[5].semilogy(f, p, "o-", ms=3)
    axes[5].set_xlabel("max(|fx|, |fy|) (cycles/pixel)")
    axes[5].set_ylabel("power of seed 0 - seed 1")
    axes[5].set_title("difference spectrum (white noise = flat)", fontsize=9)
    axes[5].grid(alpha=0.3)
    fig.suptitle(f"{scene.name}: {crop}x{crop} px centre crop, alpha = {run['stats']['alpha']}")
    fig.tight_layout()
    return fig


def main() -> None:
    args = parse(__doc__.splitlines()[0], lambda p: p.add_argument("--seeds", type=int, default=4))
    model = get_model(args.model)
    seeds = tuple(range(args.seeds))
    rows, fig = [], None
    for site in sites(args.data, args.site):
        scene = load_scene(site, model.factor, args.crop)
        run = latent_samples(model, scene, seeds)
        rows.append(run["stats"])
        if fig is None:
            fig = figure(scene, run)
        print(run["stats"])
    keys = ["sample_std_dn", "pair_rms_dn", "pair_max_abs_dn", "pair_psnr_db", "recon_rms_dn",
            "recon_psnr_db", "hf_fraction", "lag1_corr", "edge_corr"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    result = {"experiment": "fig4_latent_samples", "model": args.model, "data": args.data,
              "crop": args.crop, "seeds": list(seeds), "sites": rows, "mean": mean,
              "notes": __doc__}
    table = md_table(["site", *keys], [[r["site"], *(r[k] for k in keys)] for r in rows]
                     + [["mean", *(mean[k] for k in keys)]])
    md = (f"Different samples of z: model `{args.model}`, {args.data}, seeds {list(seeds)}, "
          f"alpha = 1 (DN; white noise: hf_fraction 0.75, lag1_corr 0)\n\n{table}")
    write_outputs(args.out, stem("fig4_latent_samples", args.model, args.data), result, md, fig)


if __name__ == "__main__":
    main()
