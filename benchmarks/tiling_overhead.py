"""Tiling + stitching overhead: a bicubic x4 onboard + ground round trip through georefscale's
tiler versus a plain rasterio read + GDAL cubic resample + write of the same scene (down to LR,
then back up to HR), in the same run.

The scene is a mosaic of the real OSCD Sentinel-2 scenes (see ``peak_rss.py``).

    python benchmarks/tiling_overhead.py [--size 4000] [--repeat 2] [--json out.json]

On a shared, loaded 2-core machine run it with ``OMP_NUM_THREADS=1``: torch's spinning worker
threads otherwise dominate the small per-tile tensor ops.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from rasterio.enums import Resampling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_rss import REPO, build_oscd_mosaic  # noqa: E402

from georefscale.api import ground, onboard
from georefscale.engine.run import resolve_model as load_model  # noqa: E402


def plain_resample(src_path: Path, dst_path: Path, shape: tuple[int, int], transform) -> None:
    """One rasterio read with GDAL cubic resampling to ``shape``, one write (same profile)."""
    with rasterio.open(src_path) as src:
        arr = src.read(out_shape=(src.count, *shape), resampling=Resampling.cubic)
        profile = {**src.profile, "width": shape[1], "height": shape[0], "transform": transform,
                   "compress": "deflate", "predictor": 2, "tiled": True, "blockxsize": 512,
                   "blockysize": 512}
        profile.pop("zlevel", None)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(arr)


def plain_round_trip(target: Path, tmp: Path) -> None:
    with rasterio.open(target) as t:
        h, w, tr = t.height, t.width, t.transform
    lr_shape = (math.ceil(h / 4), math.ceil(w / 4))
    plain_resample(target, tmp / "plain_lr.tif", lr_shape, tr @ rasterio.Affine.scale(4))
    plain_resample(tmp / "plain_lr.tif", tmp / "plain_hr.tif", (h, w), tr)


def tiled_round_trip(target: Path, ref: Path, tmp: Path) -> None:
    onboard(target, ref, out=tmp / "lr.tif", factor=4, model="bicubic")
    ground(tmp / "lr.tif", ref, out=tmp / "hr.tif")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path,
                    default=REPO / "benchmarks" / "results" / "tiling_overhead.json")
    a = ap.parse_args()
    load_model("bicubic", 4)  # import torch before timing
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        target, ref = build_oscd_mosaic(a.size, tmp)
        times = {"plain": [], "tiled": []}
        for _ in range(a.repeat):  # interleaved, best of n: robust to background load
            t0 = time.perf_counter()
            plain_round_trip(target, tmp)
            times["plain"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tiled_round_trip(target, ref, tmp)
            times["tiled"].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["tiled"] / best["plain"]
    print(f"scene {a.size} x {a.size} x 4 uint16 (OSCD mosaic), bicubic x4 round trip, "
          f"best of {a.repeat}")
    print(f"{'path':<44}{'seconds':>10}")
    print(f"{'plain rasterio read + GDAL cubic + write':<44}{best['plain']:>10.2f}")
    print(f"{'georefscale onboard + ground (tile 512/32)':<44}{best['tiled']:>10.2f}")
    print(f"{'overhead ratio (tiled / plain)':<44}{ratio:>10.2f}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"benchmark": "tiling_overhead", "size": a.size, "bands": 4,
                                  "dtype": "uint16", "factor": 4, "model": "bicubic",
                                  "tile": 512, "halo": 32, "seconds": times, "best": best,
                                  "ratio": ratio, "cpus": os.cpu_count(),
                                  "torch_threads": _torch_threads()}, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
