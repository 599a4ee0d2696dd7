"""Peak resident memory of a bicubic onboard + ground through the tiler, by scene size.

The scenes are mosaics of the real OSCD Sentinel-2 scenes (uint16, 4 bands): 400 x 400 crops of
the newer dates laid side by side on a 10 m UTM grid (target) and the same crops of the older
dates (reference). Each step runs in a fresh subprocess; its peak RSS (``VmHWM``) is reported.

Two ways in: ``file`` gives the steps GeoTIFF paths; ``lazy`` gives them dask-backed DataArrays
(``rioxarray.open_rasterio(path, chunks=...)``, chunks of ``LAZY_CHUNKS`` as odc-stac would):
target and reference on board, LR product and reference on the ground, through the
``da.georefscale`` accessor; each lazy result is then reduced chunk by chunk (its mean), and its
file must equal the ``file`` one pixel for pixel.

    python benchmarks/peak_rss.py [--sizes 2500 5000 10000] [--modes file lazy]
                                  [--json out/peak_rss.json]

Goal: <= 2 GB at 10,000 x 10,000 in both modes and flat in the scene size.
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
#: chunks of the dask-backed DataArrays of the ``lazy`` mode
LAZY_CHUNKS = {"x": 2048, "y": 2048}


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


def _child(step: str, mode: str, args: list[str]) -> None:
    """Run one pipeline step (``onboard`` / ``ground``) in this process, its inputs given as
    ``mode`` (``file`` / ``lazy``), and print its wall time and peak RSS as JSON."""
    import rioxarray

    from georefscale.api import ground, onboard
    from georefscale.options import OnboardOptions

    t0 = time.perf_counter()
    options = OnboardOptions(model="bicubic", factor=4)
    if mode == "file":
        if step == "onboard":
            onboard(args[0], args[1], out=args[2], options=options)
        else:
            ground(args[0], args[1], out=args[2])
    else:
        src, ref = (rioxarray.open_rasterio(p, chunks=LAZY_CHUNKS) for p in args[:2])
        if step == "onboard":
            result = src.georefscale.onboard(reference=ref, options=options, out=args[2])
        else:
            result = src.georefscale.ground(reference=ref, out=args[2])
        assert result.chunks is not None
        float(result.mean())  # computed chunk by chunk
    wall = time.perf_counter() - t0
    rss = _vm_hwm()
    print(json.dumps({"step": step, "wall_s": wall, "peak_rss_bytes": rss}))


def run_step(step: str, mode: str, *args: Path) -> dict:
    """Run :func:`_child` in a fresh subprocess; its JSON line."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, mode, *map(str, args)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def same_pixels(a: Path, b: Path, rows: int = 512) -> bool:
    """Whether two rasters hold the same pixels (compared in strips of ``rows``)."""
    with rasterio.open(a) as da, rasterio.open(b) as db:
        if da.shape != db.shape or da.count != db.count:
            return False
        return all(np.array_equal(da.read(window=w), db.read(window=w))
                   for w in (Window(0, r, da.width, min(rows, da.height - r))
                             for r in range(0, da.height, rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000])
    ap.add_argument("--modes", nargs="+", choices=["file", "lazy"], default=["file", "lazy"])
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "peak_rss.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], a.child[1], a.child[2:])
        return
    rows = []
    for size in a.sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            tmp = Path(tmp)
            t0 = time.perf_counter()
            target, ref = build_oscd_mosaic(size, tmp)
            build = time.perf_counter() - t0
            row = {"size": size, "bands": 4, "dtype": "uint16", "build_s": build}
            for mode in a.modes:
                lr, hr = tmp / f"lr_{mode}.tif", tmp / f"hr_{mode}.tif"
                on = run_step("onboard", mode, target, ref, lr)
                gr = run_step("ground", mode, lr, ref, hr)
                with rasterio.open(hr) as h, rasterio.open(target) as t:
                    assert h.shape == t.shape and h.transform == t.transform
                if mode != a.modes[0]:
                    first = a.modes[0]
                    assert same_pixels(lr, tmp / f"lr_{first}.tif"), f"LR {mode} != {first}"
                    assert same_pixels(hr, tmp / f"hr_{first}.tif"), f"HR {mode} != {first}"
                row[mode] = {"onboard": on, "ground": gr}
                print(f"{size:>6} x {size:<6} {mode:4} onboard {on['wall_s']:7.1f} s "
                      f"{on['peak_rss_bytes'] / 2**20:7.0f} MiB   ground {gr['wall_s']:7.1f} s "
                      f"{gr['peak_rss_bytes'] / 2**20:7.0f} MiB", flush=True)
            rows.append(row)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"benchmark": "peak_rss", "model": "bicubic", "factor": 4,
                                  "tile": 512, "halo": 32,
                                  "lazy_chunks": LAZY_CHUNKS, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
