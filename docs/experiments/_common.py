"""Shared pieces of the experiment scripts: scenes, models, round trips, outputs.

A scene is a target (the latest date of a site) and its reference (the date before) warped onto
the target grid and shift-corrected as on board (:func:`georefscale.raster.align.align_to_target`),
both float32 DN ``(bands, rows, cols)`` cropped to a multiple of the factor. Metrics are in DN
with ``peak`` = the DN of the nominal white (10000 for Sentinel-2 uint16, 255 for NAIP uint8),
over valid target pixels.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(os.environ.get("GEOREFSCALE_DATA", REPO.parent / "shared" / "data"))
#: The OSCD test cities (never trained on); see the data README.
OSCD_TEST = ("brasilia", "montpellier", "norcia", "rio", "saclay_w")
#: Figures are saved at the first of these resolutions that stays under PNG_MAX_BYTES.
PNG_DPI = (64, 56, 48, 40)
PNG_MAX_BYTES = 300_000
#: Shipped model per data set (the default of ``--model``).
DEFAULT_MODEL = {"oscd": "refscale-s2-x4", "naip": "refscale-naip-x4"}


@dataclass
class Scene:
    """One site: target and aligned reference in DN (NaN = no reference), valid target mask."""

    name: str
    target: np.ndarray  # float32 (C, H, W) DN
    reference: np.ndarray  # float32 (C, H, W) DN, NaN where the reference does not cover
    valid: np.ndarray  # bool (H, W)
    dtype: str
    peak: float
    target_file: str
    reference_file: str


def sites(data: str, names: Sequence[str] | None = None):
    """The evaluation sites of ``data`` (``oscd``: the five test cities; ``naip``: the series)."""
    from georefscale.evaluation.sites import find_sites

    if data == "oscd":
        return find_sites(DATA / "oscd", list(names or OSCD_TEST))
    if data == "naip":
        return find_sites(DATA / "naip", list(names) if names else None)
    raise SystemExit(f"unknown data set {data!r} (oscd or naip)")


def load_scene(site, factor: int, crop: int | None = None) -> Scene:
    """Read ``site`` (a :class:`georefscale.evaluation.sites.Site`), optionally only the central
    ``crop`` x ``crop`` window, cropped to a multiple of ``factor``."""
    from rasterio.windows import Window

    from georefscale.raster.align import align_to_target
    from georefscale.raster.grid import Grid
    from georefscale.raster.io import default_scale, open_raster

    with (open_raster(site.target, "target") as src,
          open_raster(site.reference, "reference") as ref):
        h, w = src.height, src.width
        if crop is not None:
            h, w = min(h, crop), min(w, crop)
        h, w = h // factor * factor, w // factor * factor
        win = Window((src.width - w) // 2, (src.height - h) // 2, w, h)
        target = src.read(window=win).astype(np.float32)
        valid = (src.read_masks(window=win) > 0).all(axis=0)
        dtype = src.dtypes[0]
        reference = align_to_target(src, [ref], Grid.from_dataset(src).window_grid(win))
    return Scene(site.name, target, reference, valid, dtype, default_scale(dtype),
                 site.target.name, site.reference.name)


def get_model(name: str):
    """A shipped model by name, or ``untrained-x2`` / ``untrained-x4`` (a fresh RefScale network
    of the shipped architecture, for developing and testing the scripts without weights) and
    ``untrained-noref-x4`` (its no-reference twin). Torch runs on ``EXPERIMENT_THREADS``
    threads (default 1: the machine is shared with training)."""
    import torch

    from georefscale.engine import InvertibleRescaler, NetConfig, RefScaleNet, load

    torch.set_num_threads(int(os.environ.get("EXPERIMENT_THREADS", "1")))

    if name.startswith("untrained"):
        factor = int(name.rsplit("x", 1)[1])
        use_ref = "noref" not in name
        net = RefScaleNet(NetConfig(factor=factor, use_reference=use_ref))
        return InvertibleRescaler(name, net, dtype="uint16", scale=10000.0)
    if name == "bicubic":
        return load("bicubic", factor=4)
    return load(name)


def model_scale(model, scene: Scene) -> float:
    return float(model.scale) if model.scale is not None else scene.peak


def to_tensor(arr: np.ndarray | None, scale: float):
    """DN ``(C, H, W)`` -> normalised float32 torch ``(1, C, H, W)`` (NaN -> 0, as on board)."""
    import torch

    if arr is None:
        return None
    return torch.from_numpy(np.nan_to_num(arr, nan=0.0).astype(np.float32) / np.float32(scale))[
        None
    ]


def downscale(model, scene: Scene, ref_dn: np.ndarray | None):
    """On board: the LR image quantised to the source dtype (as written in the product), a
    normalised torch ``(1, C, h, w)``."""
    from georefscale.engine import quantize

    scale = model_scale(model, scene)
    ref = to_tensor(ref_dn, scale) if model.uses_reference else None
    y, _ = model.downscale(to_tensor(scene.target, scale), ref)
    return quantize(y, scale, scene.dtype)


def upscale(model, scene: Scene, y, ref_dn: np.ndarray | None, alpha: float = 1.0,
            seed: int = 0) -> np.ndarray:
    """On the ground: the HR reconstruction in DN, rounded and clipped to the source dtype."""
    scale = model_scale(model, scene)
    ref = to_tensor(ref_dn, scale) if model.uses_reference else None
    x = model.upscale(y, ref, alpha=alpha, seed=seed)[0].numpy().astype(np.float64)
    info = np.iinfo(scene.dtype)
    return np.clip(np.rint(x * scale), info.min, info.max).astype(np.float32)


def relevance(model, scene: Scene, y, ref_dn: np.ndarray | None) -> float | None:
    """Mean of ``model.relevance(y, ref)`` over the scene (None for models without a gate)."""
    if not model.uses_reference:
        return None
    rel = model.relevance(y, to_tensor(ref_dn, model_scale(model, scene)))
    return None if rel is None else float(rel.mean())


def scores(scene: Scene, hr: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``hr`` against the target over valid pixels (and ``mask``)."""
    from georefscale import metrics

    valid = scene.valid if mask is None else scene.valid & mask
    a, b = scene.target, hr.copy()
    b[:, ~valid] = a[:, ~valid]  # invalid pixels are not part of the score
    return {"psnr": metrics.psnr(a[:, valid], b[:, valid], scene.peak),
            "ssim": metrics.ssim(a, b, scene.peak)}


def parse(description: str, extra=None):
    """The common command line: ``--model``, ``--data``, ``--site``, ``--crop``, ``--out``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=None,
                   help="shipped model name, or untrained-x4 / untrained-x2 (default: the shipped "
                        "RefScale model of --data)")
    p.add_argument("--data", default="oscd", choices=("oscd", "naip"))
    p.add_argument("--site", action="append", default=None, help="only these sites")
    p.add_argument("--crop", type=int, default=None, help="central crop (pixels) of each scene")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    if extra is not None:
        extra(p)
    args = p.parse_args()
    args.model = args.model or DEFAULT_MODEL[args.data]
    return args


def stem(base: str, model: str, data: str) -> str:
    """Output name: ``base`` for the shipped default, else tagged with model and data."""
    if model == DEFAULT_MODEL[data] and data == "oscd":
        return base
    return f"{base}_{model}" if data == "oscd" else f"{base}_{data}_{model}"


def write_outputs(out: Path, name: str, result: dict, markdown: str, fig=None) -> list[Path]:
    """Write ``name``.json, ``name``.md (and ``name``.png from a matplotlib figure), each
    atomically."""
    from georefscale.atomic import atomic_output

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_output(out / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.chmod(0o644)
    written.append(out / f"{name}.json")
    with atomic_output(out / f"{name}.md") as tmp:
        tmp.write_text(markdown.rstrip() + "\n")
        tmp.chmod(0o644)
    written.append(out / f"{name}.md")
    if fig is not None:
        import matplotlib.pyplot as plt

        with atomic_output(out / f"{name}.png", suffix=".png") as tmp:
            for dpi in PNG_DPI:  # the first resolution that keeps the PNG under PNG_MAX_BYTES
                fig.savefig(tmp, dpi=dpi)
                if tmp.stat().st_size <= PNG_MAX_BYTES:
                    break
            tmp.chmod(0o644)
        plt.close(fig)
        written.append(out / f"{name}.png")
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return written


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rgb(dn: np.ndarray, peak: float) -> np.ndarray:
    """True-colour preview in [0, 1]: Sentinel-2 (peak 10000; bands B02 B03 B04 B08) with gain 3,
    NAIP (peak 255; bands R G B N) as is."""
    arr = np.asarray(dn, dtype=np.float32)
    order, gain = ((2, 1, 0), 3.0) if peak > 255 else ((0, 1, 2), 1.0)
    img = np.stack([arr[i] for i in order], axis=-1) / peak * gain
    return np.clip(img, 0.0, 1.0)


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats with 3 significant decimals where sensible."""

    def fmt(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
