"""Per-tile mode decision by measurement (``--decide measure``) against the agreement tests
alone (the default), in one run: HR PSNR (ground at alpha 0), on-board seconds and their ratio,
and what was decided, on the Sentinel-2 test cities with their real references, on the same
cities with a reference whose top-left quarter shows other land, and on NAIP 2020 with its
oldest (2009) reference. Prints a table and writes ``benchmarks/results/decide.json``.

    python benchmarks/decide.py                     # all cases, tile 256
    python benchmarks/decide.py --site montpellier --tile 128
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import rasterio

from georefscale.api import ground, onboard
from georefscale.evaluation.sites import find_sites
from georefscale.options import FallbackPolicy, GroundOptions, OnboardOptions, TilingOptions
from georefscale.report import describe_lr, reconstruction_error

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "decide.json"
TEST_CITIES = ["brasilia", "montpellier", "norcia", "rio", "saclay_w"]
NAIP = str(DATA / "naip" / "m_4709963_se_14_1_{}.tif")


def changed_reference(ref: Path, out: Path) -> Path:
    """``ref`` with its top-left quarter replaced by its bottom-right quarter turned 180
    degrees: a co-registered reference showing other land there."""
    with rasterio.open(ref) as ds:
        a, profile = ds.read(), ds.profile
    h, w = a.shape[1] // 2, a.shape[2] // 2
    a[:, :h, :w] = a[:, -h:, -w:][:, ::-1, ::-1]
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(a)
    return out


def run_case(name: str, target: Path, ref: Path, model: str, tile: int, tmp: Path) -> dict:
    row: dict = {"case": name}
    for decide in ("agreement", "measure"):
        options = OnboardOptions(model=model, tiling=TilingOptions(tile=tile, halo=16),
                                 fallback=FallbackPolicy(decide=decide))
        lr, hr = tmp / f"{name}-{decide}-lr.tif", tmp / f"{name}-{decide}-hr.tif"
        t0 = time.perf_counter()
        onboard(target, ref, out=lr, options=options)
        seconds = time.perf_counter() - t0
        ground(lr, ref, out=hr, options=GroundOptions(alpha=0.0))
        summary = describe_lr(lr)
        err = reconstruction_error(target, hr, summary["scale"], summary["offset"])
        row[decide] = {"psnr_db": round(err["psnr_db"], 3), "onboard_s": round(seconds, 2),
                       "tiles": summary["tiles"], "fallback_tiles": summary["fallback_tiles"],
                       "bicubic_tiles": summary["bicubic_tiles"],
                       "reference_gain_db": summary.get("reference_gain_db")}
    row["psnr_gain_db"] = round(row["measure"]["psnr_db"] - row["agreement"]["psnr_db"], 3)
    row["onboard_ratio"] = round(row["measure"]["onboard_s"] / row["agreement"]["onboard_s"], 2)
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", action="append", default=None)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--no-naip", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for site in find_sites(DATA / "oscd", args.site or TEST_CITIES):
            rows.append(run_case(site.name, site.target, site.reference, "refscale-s2-x4",
                                 args.tile, tmp))
            changed = changed_reference(site.reference, tmp / f"{site.name}-changed.tif")
            rows.append(run_case(f"{site.name}+changed", site.target, changed,
                                 "refscale-s2-x4", args.tile, tmp))
        if not args.no_naip and Path(NAIP.format("20200831")).is_file():
            rows.append(run_case("naip-2020-vs-2009", Path(NAIP.format("20200831")),
                                 Path(NAIP.format("20090818")), "refscale-naip-x4", args.tile,
                                 tmp))
    print(f"{'case':<22} {'tiles':>5} {'agree dB':>9} {'measure dB':>10} {'gain':>6} "
          f"{'twin':>4} {'bicub':>5} {'on-board x':>10}")
    for r in rows:
        m = r["measure"]
        print(f"{r['case']:<22} {m['tiles']:>5} {r['agreement']['psnr_db']:>9.3f} "
              f"{m['psnr_db']:>10.3f} {r['psnr_gain_db']:>+6.3f} {m['fallback_tiles']:>4} "
              f"{m['bicubic_tiles']:>5} {r['onboard_ratio']:>10.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"tile": args.tile, "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
