"""A two-layer product made with the models on the CPU, grounded with them on a CUDA GPU.

The enhancement layer only cancels when the ground rebuilds the base bit for bit (issue #22:
"measure what happens between CPU and CUDA"). For each Sentinel-2 test city given: the
near-lossless two-layer product (``--max-error E``, two layers forced, the default model for a
rate target and its no-reference twin, both on the CPU); its base rebuilt on the CPU and on CUDA
(``base_only``), compared in DN (samples and tile rows that differ, largest difference); and the
full ground on CUDA: either the bound holds on every valid sample, or the ground refuses and
names the tile rows whose digest differs (and writes nothing). Prints a table and writes JSON.
``--other cpu`` runs the same on the CPU twice (the control: nothing may differ).

    python benchmarks/layered_devices.py --site montpellier --site rio --max-error 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch

from georefscale.api import ground, onboard
from georefscale.engine import load
from georefscale.engine.cards import noref_name
from georefscale.errors import InputError
from georefscale.evaluation.sites import find_sites
from georefscale.options import (
    FallbackPolicy,
    GroundOptions,
    OnboardOptions,
    RateTarget,
)
from georefscale.product import LRInfo

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results" / "layered_devices.json"


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int64)


def site_row(site, e: int, other: str, tmp: Path) -> dict:
    """The product made on the CPU, its base rebuilt on the CPU and on ``other``, and its full
    ground on ``other``."""
    rate = RateTarget(max_error=e, direct=False)
    name = str(OnboardOptions(rate=rate).model)
    models = {d: (load(name, device=d), load(noref_name(name), device=d))
              for d in ("cpu", other)}
    cpu, cpu_twin = models["cpu"]
    lr = onboard(site.target, site.reference, out=tmp / f"{site.name}.jp2", options=OnboardOptions(
        model=cpu, rate=rate, fallback=FallbackPolicy(noref_model=cpu_twin)))
    base = {}
    for i, d in enumerate(("cpu", other)):
        m, twin = models[d]
        base[i] = _read(ground(lr, site.reference, out=tmp / f"{site.name}_base_{i}.tif",
                               options=GroundOptions(base_only=True), model=m,
                               noref_model=twin))
    with rasterio.open(lr) as ds:
        tile = LRInfo.from_dataset(ds, lr.name).tile
    diff = np.abs(base[1] - base[0])
    rows = diff.max(axis=(0, 2)) if diff.size else np.zeros(0)
    tile_rows = -(-diff.shape[1] // tile)
    bad_rows = sorted({r // tile for r in np.flatnonzero(rows)})
    out = tmp / f"{site.name}_hr_{other}.tif"
    row = {"site": site.name, "model": name, "max_error": e, "tile": tile, "device": other,
           "samples_differing": int((diff > 0).sum()), "samples": int(diff.size),
           "max_dn_difference": int(diff.max()) if diff.size else 0,
           "tile_rows_differing": len(bad_rows), "tile_rows": tile_rows}
    try:
        ground(lr, site.reference, out=out, model=models[other][0],
               noref_model=models[other][1])
        with rasterio.open(site.target) as ds:
            target, valid = ds.read().astype(np.int64), ds.read_masks() > 0
        err = np.abs(_read(out) - target)[valid]
        row.update(ground="written", max_error_dn=int(err.max()) if err.size else 0)
    except InputError as exc:
        row.update(ground="refused", message=str(exc), hr_left=out.exists())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", action="append", default=None)
    parser.add_argument("--max-error", type=int, default=5)
    parser.add_argument("--other", default="cuda", help="device to ground on (cpu: control)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.other == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: nothing to measure", file=sys.stderr)
        return 2
    sites = find_sites(DATA / "oscd", args.site or ["montpellier", "rio"])
    with tempfile.TemporaryDirectory(prefix="layered-devices-") as tmp:
        rows = [site_row(s, args.max_error, args.other, Path(tmp)) for s in sites]
    print(f"{'site':<12} {'samples differing':>18} {'max DN':>7} {'tile rows':>10}  "
          f"ground on {args.other}")
    for r in rows:
        got = (f"written, max error {r['max_error_dn']} DN" if r["ground"] == "written"
               else f"refused, HR left: {r['hr_left']}")
        print(f"{r['site']:<12} {r['samples_differing']:>8} / {r['samples']:<9} "
              f"{r['max_dn_difference']:>7} {r['tile_rows_differing']:>4} / {r['tile_rows']:<4}  "
              f"{got}")
    device = torch.cuda.get_device_name() if args.other == "cuda" else "cpu"
    args.out.write_text(json.dumps({"device": device, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
