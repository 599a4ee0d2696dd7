"""The demo's figure: target, reference, LR, bicubic and RefScale side by side, zoomed insets and
the PSNR / bits numbers, one row per acquisition (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from georefscale.atomic import atomic_output
from georefscale.raster.align import align
from georefscale.raster.grid import Grid
from georefscale.raster.io import open_raster

RGB_NAMES = ("red", "green", "blue")


def rgb_bands(descriptions: tuple[str | None, ...]) -> list[int]:
    """0-based indices of the red, green and blue bands from band descriptions (S2 B04/B03/B02
    or names containing red/green/blue); the first three bands otherwise."""
    desc = [(d or "").lower() for d in descriptions]
    s2 = {"red": "b04", "green": "b03", "blue": "b02"}
    idx = []
    for name in RGB_NAMES:
        hit = [i for i, d in enumerate(desc) if name in d or d.startswith(s2[name])]
        if not hit:
            return [0, 1, 2][: len(desc)]
        idx.append(hit[0])
    return idx


def _stretch(img: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((img - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1).transpose(1, 2, 0)


def _read(path: Path, bands: list[int], grid: Grid | None = None) -> np.ndarray:
    with open_raster(path, "raster") as ds:
        if grid is None:
            return ds.read([b + 1 for b in bands]).astype(np.float32)
        return align([ds], grid)[bands]


def figure(results: dict, out_dir: Path, path: Path) -> Path:
    """Write the comparison figure for the demo ``results`` to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results.values())
    fig, axes = plt.subplots(len(rows), 5, figsize=(20, 4.3 * len(rows)), squeeze=False)
    for ax_row, res in zip(axes, rows, strict=True):
        target = Path(res["target_used"])
        with open_raster(target, "target") as ds:
            grid = Grid.from_dataset(ds)
            bands = rgb_bands(ds.descriptions)
        tgt = _read(target, bands)
        lo, hi = np.nanpercentile(tgt, 1, axis=(1, 2)), np.nanpercentile(tgt, 99, axis=(1, 2))
        panels = [
            ("target (new acquisition)", tgt),
            (f"reference {Path(res['reference']).stem}", _read(Path(res["reference"]), bands,
                                                               grid)),
            (f"LR x{res['factor']} sent: {res['refscale']['bytes'] / 1024:.1f} kB JPEG 2000",
             _read(out_dir / res["refscale"]["lr"], bands)),
            (f"bicubic: {res['bicubic']['psnr']:.2f} dB @ {res['bicubic']['bpp_hr']:.3f} bpp",
             _read(out_dir / res["bicubic"]["hr"], bands)),
            (f"{res['model']}: {res['refscale']['psnr']:.2f} dB @ "
             f"{res['refscale']['bpp_hr']:.3f} bpp", _read(out_dir / res["refscale"]["hr"], bands)),
        ]
        h, w = tgt.shape[1:]
        zoom = (slice(h // 2 - h // 8, h // 2 + h // 8), slice(w // 2 - w // 8, w // 2 + w // 8))
        for ax, (title, img) in zip(ax_row, panels, strict=True):
            rgb = _stretch(np.nan_to_num(img), lo, hi)
            extent = (0, w, h, 0)
            ax.imshow(rgb, extent=extent, interpolation="nearest")
            inset = ax.inset_axes([0.58, 0.0, 0.42, 0.42])
            zh, zw = zoom
            sy, sx = rgb.shape[0] / h, rgb.shape[1] / w
            inset.imshow(rgb[int(zh.start * sy): int(zh.stop * sy),
                             int(zw.start * sx): int(zw.stop * sx)], interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
            for s in inset.spines.values():
                s.set_edgecolor("yellow")
            ax.add_patch(plt.Rectangle((zw.start, zh.start), zw.stop - zw.start,
                                       zh.stop - zh.start, fill=False, edgecolor="yellow"))
            ax.set_title(title, fontsize=10)
            ax.set_axis_off()
        ax_row[0].set_title(f"{res['label'] if 'label' in res else ''}target "
                            f"{target.stem}", fontsize=10)
    fig.suptitle("georefscale demo: on board x4 + JPEG 2000, ground reconstruction "
                 "(PSNR vs the target; bits per HR pixel)", fontsize=12)
    fig.tight_layout()
    with atomic_output(path, ".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
