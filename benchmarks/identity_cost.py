"""Cost of identifying a reference by its content, against the byte SHA-256 it replaced and
against a plain ``onboard`` of the scene it serves (all in one run, medians of ``--repeat``).
Prints a table and writes ``benchmarks/results/identity_cost.json``.

    python benchmarks/identity_cost.py --site montpellier --site rio
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from georefscale.api import onboard
from georefscale.evaluation.sites import find_sites
from georefscale.raster.io import content_identity, open_raster, sha256_file

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "identity_cost.json"


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def identity(path: Path) -> str:
    with open_raster(path) as ds:
        return content_identity(ds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", action="append", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for site in find_sites(DATA / "oscd", args.site or ["montpellier", "rio"]):
            ref = site.reference
            content = median_seconds(lambda r=ref: identity(r), args.repeat)
            byte = median_seconds(lambda r=ref: sha256_file(r), args.repeat)
            plain = median_seconds(lambda s=site: onboard(s.target, s.reference,
                                                          out=Path(tmp) / "lr.tif"), 1)
            rows.append({"site": site.name, "content_identity_s": round(content, 4),
                         "byte_sha256_s": round(byte, 4), "onboard_s": round(plain, 2),
                         "identity_share_of_onboard": round(content / plain, 4)})
    print(f"{'site':<12} {'identity s':>11} {'sha256 s':>9} {'onboard s':>10} {'share':>7}")
    for r in rows:
        print(f"{r['site']:<12} {r['content_identity_s']:>11.4f} {r['byte_sha256_s']:>9.4f} "
              f"{r['onboard_s']:>10.2f} {100 * r['identity_share_of_onboard']:>6.2f}%")
    RESULTS.write_text(json.dumps({"repeat": args.repeat, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
