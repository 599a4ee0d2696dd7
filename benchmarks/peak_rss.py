"""Peak resident memory of a bicubic onboard + ground through the tiler, by scene size.

The scenes are mosaics of the real OSCD Sentinel-2 scenes (uint16, 4 bands): 400 x 400 crops of
the newer dates laid side by side on a 10 m UTM grid (target) and the same crops of the older
dates (reference). Each step runs in a fresh subprocess; its peak RSS (``VmHWM``) is reported.

    python benchmarks/peak_rss.py [--sizes 2500 5000 10000] [--json out/peak_rss.json]

Goal: <= 2 GB at 10,000 x 10,000 and flat in the scene size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
CELL = 400


def data_dir() -> Path:
    env = os.environ.get("GEOREFSCALE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def build_oscd_mosaic(size: int, out_dir: Path) -> tuple[Path, Path]:
    """Write ``target.tif`` and ``reference.tif`` (size x size, 4 x uint16) into ``out_dir`` by
    tiling 400 x 400 crops of the real OSCD date pairs (newer -> target, older -> reference);
    crop offsets vary per cell so neighbouring cells differ. Returns the two paths."""
    oscd = data_dir() / "oscd"
    pairs = []
    for city in sorted({p.name.rsplit("_", 1)[0] for p in oscd.glob("*_2*.tif")}):
        old, new = sorted(oscd.glob(f"{city}_2*.tif"))
        with rasterio.open(old) as o, rasterio.open(new) as n:
            pairs.append((n.read(), o.read(out_shape=(4, n.height, n.width))))
    grid = Affine(10, 0, 400000, 0, -10, 5400000)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16",
                   crs=CRS.from_epsg(32631), transform=grid, tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", predictor=2, zlevel=1, bigtiff="IF_SAFER")
    paths = (out_dir / "target.tif", out_dir / "reference.tif")
    rng = np.random.default_rng(0)
    n_cells = -(-size // CELL)
    with rasterio.open(paths[0], "w", **profile) as t, rasterio.open(paths[1], "w", **profile) as r:
        for row in range(n_cells):
            h = min(CELL, size - row * CELL)
            strip_t = np.empty((4, h, size), np.uint16)
            strip_r = np.empty_like(strip_t)
            for col in range(n_cells):
                w = min(CELL, size - col * CELL)
                new, old = pairs[(row * n_cells + col) % len(pairs)]
                y = rng.integers(0, new.shape[1] - CELL + 1) if new.shape[1] > CELL else 0
                x = rng.integers(0, new.shape[2] - CELL + 1) if new.shape[2] > CELL else 0
                ct, cr = new[:, y : y + h, x : x + w], old[:, y : y + h, x : x + w]
                if ct.shape[1:] != (h, w):  # scenes smaller than a cell: mirror to fill
                    pad = ((0, 0), (0, h - ct.shape[1]), (0, w - ct.shape[2]))
                    ct, cr = np.pad(ct, pad, mode="reflect"), np.pad(cr, pad, mode="reflect")
                strip_t[:, :, col * CELL : col * CELL + w] = ct
                strip_r[:, :, col * CELL : col * CELL + w] = cr
            win = Window(0, row * CELL, size, h)
            t.write(strip_t, window=win)
            r.write(strip_r, window=win)
        for ds in (t, r):
            ds.descriptions = ("B02 blue", "B03 green", "B04 red", "B08 nir")
    return paths


def _vm_hwm() -> int:
    """Peak resident set size of this process in bytes (Linux ``VmHWM``; unlike ``ru_maxrss`` it
    does not include what the parent had resident when it forked us)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(step: str, args: list[str]) -> None:
    """Run one pipeline step in this process and print its wall time and peak RSS as JSON."""
    from georefscale.api import ground, onboard

    t0 = time.perf_counter()
    if step == "onboard":
        onboard(args[0], args[1], out=args[2], factor=4, model="bicubic")
    else:
        ground(args[0], args[1], out=args[2])
    wall = time.perf_counter() - t0
    rss = _vm_hwm()
    print(json.dumps({"step": step, "wall_s": wall, "peak_rss_bytes": rss}))


def run_step(step: str, *args: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, *map(str, args)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000])
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "peak_rss.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], a.child[1:])
        return
    rows = []
    for size in a.sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            tmp = Path(tmp)
            t0 = time.perf_counter()
            target, ref = build_oscd_mosaic(size, tmp)
            build = time.perf_counter() - t0
            on = run_step("onboard", target, ref, tmp / "lr.tif")
            gr = run_step("ground", tmp / "lr.tif", ref, tmp / "hr.tif")
            with rasterio.open(tmp / "hr.tif") as hr, rasterio.open(target) as t:
                assert hr.shape == t.shape and hr.transform == t.transform
            rows.append({"size": size, "bands": 4, "dtype": "uint16", "build_s": build,
                         "onboard": on, "ground": gr})
            print(f"{size:>6} x {size:<6} onboard {on['wall_s']:7.1f} s "
                  f"{on['peak_rss_bytes'] / 2**20:7.0f} MiB   ground {gr['wall_s']:7.1f} s "
                  f"{gr['peak_rss_bytes'] / 2**20:7.0f} MiB", flush=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"benchmark": "peak_rss", "model": "bicubic", "factor": 4,
                                  "tile": 512, "halo": 32, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
