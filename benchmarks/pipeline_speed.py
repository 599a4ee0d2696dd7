"""Scene throughput of the file pipeline with the models on the CPU and on a CUDA GPU, same run.

``onboard`` (refscale-s2-x4, reference aligned and shift-corrected, LR GeoTIFF) and ``ground``
(HR GeoTIFF, alpha 1, seed 0) of each OSCD city neither model was trained or validated on (the
five test cities), with the RefScale model and its no-reference twin loaded on each device
(``georefscale.engine.load(name, device=...)``).
Reports seconds per scene, megapixels (HR) per second and the ratio CUDA / CPU; everything but
the network (reading, alignment, shift estimation, stitching, writing) stays on the CPU.

    python benchmarks/pipeline_speed.py [--device cpu --device cuda] [--site NAME] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from georefscale.api import ground, onboard
from georefscale.engine import load
from georefscale.evaluation.sites import evaluation_sites

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", REPO.parent / "shared" / "data"))
MODELS = ("refscale-s2-x4", "noref-s2-x4")


def scene_seconds(site, device: str, tmp: Path) -> tuple[float, float, int]:
    """(onboard s, ground s, HR pixels) for one site with the models on ``device``."""
    import rasterio

    model, noref = (load(name, device=device) for name in MODELS)
    target, reference = site.target, site.reference
    t0 = time.perf_counter()
    lr = onboard(target, reference, out=tmp / f"{site.name}_{device}_lr.tif", model=model,
                 noref_model=noref)
    t1 = time.perf_counter()
    ground(lr, reference, out=tmp / f"{site.name}_{device}_hr.tif", model=model,
           noref_model=noref)
    t2 = time.perf_counter()
    with rasterio.open(target) as ds:
        pixels = ds.width * ds.height
    return t1 - t0, t2 - t1, pixels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", dest="devices", action="append", choices=["cpu", "cuda"])
    ap.add_argument("--site", dest="sites", action="append", help="test city (repeatable)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline_speed.json"))
    args = ap.parse_args()
    devices = args.devices or ["cpu"]
    sites, _ = evaluation_sites(DATA / "oscd", MODELS, args.sites)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scene_seconds(sites[0], devices[-1], Path(tmp))  # warm-up: imports, GDAL, CUDA context
        for device in devices:
            on = gr = px = 0.0
            for site in sites:
                a, b, p = scene_seconds(site, device, Path(tmp))
                on, gr, px = on + a, gr + b, px + p
            rows.append({"device": device, "scenes": len(sites), "hr_megapixels": px / 1e6,
                         "onboard_s": on, "ground_s": gr,
                         "onboard_mpix_per_s": px / 1e6 / on, "ground_mpix_per_s": px / 1e6 / gr})
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name() if "cuda" in devices else None, "rows": rows}
    if len(rows) == 2:
        result["cuda_speedup_onboard"] = rows[0]["onboard_s"] / rows[1]["onboard_s"]
        result["cuda_speedup_ground"] = rows[0]["ground_s"] / rows[1]["ground_s"]
    for r in rows:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()))
    for k in ("cuda_speedup_onboard", "cuda_speedup_ground"):
        if k in result:
            print(f"{k}: {result[k]:.3g}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
