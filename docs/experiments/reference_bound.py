"""How much can the reference's own detail add? An oracle bound for linear detail transfer.

For each site the target ``x`` is downscaled with antialiased bicubic and brought back with
bicubic (``b``, the bicubic round trip); its missing detail is ``d = x - b``. The reference's detail
``r`` is the same residual of the aligned reference. Reconstructions ``b + g * r``:

- ``ref detail``: ``g = 1`` everywhere (paste the reference's detail);
- ``oracle on/off``: per band and ``4f x 4f`` block, ``g`` in {0, 1}, whichever is closer to the
  target (needs the target: an upper bound for "use the reference where it agrees");
- ``oracle gain``: per band and block the least-squares ``g`` in [0, 2] (needs the target: the
  best any per-block linear use of the reference's detail can do).

No network, no hidden information in the LR: the gap between bicubic and ``oracle gain`` is what
the reference alone can add; the rest of a model's gain has to come from what the LR carries.
PSNR in dB (peak 10000 DN for Sentinel-2) over pixels valid in the target and covered by the
reference.

Run: ``python docs/experiments/reference_bound.py [--factors 2,4]``.
"""

from __future__ import annotations

import numpy as np
from _common import load_scene, md_table, parse, pyplot, sites, write_outputs

METHODS = ("bicubic", "ref detail", "oracle on/off", "oracle gain")


def detail(img: np.ndarray, factor: int) -> np.ndarray:
    """``img`` minus its antialiased bicubic round trip, float32 ``(C, H, W)`` DN."""
    import torch

    from georefscale.engine import BicubicRescaler

    bicubic = BicubicRescaler(factor)
    t = torch.from_numpy(img)[None]
    back = bicubic.upscale(bicubic.downscale(t)[0])
    return (t - back)[0].numpy()


def bound(scene, factor: int) -> dict[str, float]:
    """PSNR (dB) of the four reconstructions of ``scene`` (see the module docstring)."""
    block = 4 * factor
    c, h, w = scene.target.shape
    hb, wb = h // block * block, w // block * block
    covered = np.isfinite(scene.reference).all(axis=0)
    keep = (scene.valid & covered)[:hb, :wb]

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:, :hb, :wb].reshape(c, hb // block, block, wb // block, block)

    d = blocks(detail(scene.target, factor))
    r = blocks(detail(np.nan_to_num(scene.reference), factor))
    def energy(a: np.ndarray) -> np.ndarray:
        return (a * a).sum(axis=(2, 4), keepdims=True)

    gain = np.clip((d * r).sum(axis=(2, 4), keepdims=True) / np.maximum(energy(r), 1e-6), 0, 2)
    errors = {
        "bicubic": d,
        "ref detail": d - r,
        "oracle on/off": np.where(energy(d - r) < energy(d), d - r, d),
        "oracle gain": d - gain * r,
    }
    out = {}
    for name, err in errors.items():
        mse = np.mean(err.reshape(c, hb, wb)[:, keep].astype(np.float64) ** 2)
        out[name] = float(10 * np.log10(scene.peak**2 / mse)) if mse > 0 else float("inf")
    return out


def main() -> None:
    args = parse(__doc__.splitlines()[0], lambda p: p.add_argument("--factors", default="2,4"))
    factors = [int(f) for f in args.factors.split(",")]
    result: dict = {"data": args.data, "peak": "DN of reflectance 1.0 (10000)", "factors": {}}
    md = [__doc__.splitlines()[0], ""]
    for factor in factors:
        rows = []
        for site in sites(args.data, args.site):
            rows.append({"site": site.name, **bound(load_scene(site, factor, args.crop), factor)})
            print(factor, rows[-1])
        mean = {m: float(np.mean([r[m] for r in rows])) for m in METHODS}
        result["factors"][str(factor)] = {"sites": rows, "mean": mean}
        md += [f"## x{factor} (blocks {4 * factor} x {4 * factor} px)", "",
               md_table(["site", *METHODS],
                        [[r["site"], *(r[m] for m in METHODS)] for r in rows]
                        + [["mean", *(mean[m] for m in METHODS)]]), ""]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(factors), figsize=(5.5 * len(factors), 3.4), squeeze=False)
    for ax, factor in zip(axes[0], factors, strict=True):
        rows = result["factors"][str(factor)]["sites"]
        pos = np.arange(len(rows))
        for k, m in enumerate(METHODS):
            ax.bar(pos + (k - 1.5) * 0.2, [r[m] for r in rows], 0.2, label=m)
        ax.set_xticks(pos, [r["site"] for r in rows], fontsize=8)
        ax.set_ylim(min(r["bicubic"] for r in rows) - 2, None)
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"x{factor}: bicubic + reference detail")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    name = "reference_bound" if args.data == "oscd" else f"reference_bound_{args.data}"
    write_outputs(args.out, name, result, "\n".join(md), fig)


if __name__ == "__main__":
    main()
