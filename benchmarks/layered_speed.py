"""Cost of the two-layer product's rate control against a plain ``onboard`` of the same scene.

For each Sentinel-2 test city given (default: montpellier), runs a plain ``onboard`` (RefScale
x4, lossless LR GeoTIFF) and ``onboard`` with each rate target, alternating, and reports the
time ratio, the search's trials (rebuilds of the whole scene and of the sample of tiles the base
rate is chosen on, enhancement and direct encodes) and which product it wrote (two layers, and
of which model, or the target coded directly). The last rate target also measures x2 base
layers (``RateTarget.factors``), to show what that costs; two requests run again with every
base rate rebuilt on the whole scene (``... whole``), for what the sample saves and gives up.
Prints a table and writes ``benchmarks/results/layered_speed.json``.

    python benchmarks/layered_speed.py --site montpellier --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from georefscale.api import Workspace, _onboard  # the encoder with its search record
from georefscale.evaluation.sites import find_sites
from georefscale.options import OnboardOptions, RateTarget
from georefscale.sample import Sample

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "layered_speed.json"
RATES = {"max_error=10": RateTarget(max_error=10), "target_psnr=42": RateTarget(target_psnr=42.0),
         "max_bytes=60000": RateTarget(max_bytes=60_000),
         "target_psnr=42 +x2": RateTarget(target_psnr=42.0, factors=(2,))}
#: requests also run with the base rate chosen on the whole scene (no sample), for the cost and
#: the bytes / PSNR the sample gives up
WHOLE = ("target_psnr=42", "max_bytes=60000")


@contextlib.contextmanager
def whole_scene():
    """The search without its sample: every base rate rebuilt on the whole scene."""
    make = Sample.make
    Sample.make = classmethod(lambda cls, info, rebuild: None)
    try:
        yield
    finally:
        Sample.make = make


def timed(site, options: OnboardOptions, out: Path) -> tuple[float, dict | None]:
    with Workspace() as ws:
        t0 = time.perf_counter()
        done = _onboard(ws, site.target, site.reference, out, None, None, options, None, False)
        seconds = time.perf_counter() - t0
    trials = None
    if done.layered is not None:
        trials = {"base_rebuilds": done.layered.trials[0],
                  "sample_rebuilds": done.layered.sampled, "encodes": done.layered.trials[1],
                  "product": done.layered.model or "direct",
                  "total_bytes": done.layered.total_bytes, "psnr_db": done.layered.psnr_db}
    return seconds, trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", action="append", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sites = find_sites(DATA / "oscd", args.site or ["montpellier"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="layered-speed-") as tmp:
        for site in sites:
            runs = {**RATES, **{f"{k} whole": RATES[k] for k in WHOLE}}
            times: dict[str, list[float]] = {"plain": [], **{k: [] for k in runs}}
            trials = {}
            for _ in range(args.repeat):
                times["plain"].append(timed(site, OnboardOptions(), Path(tmp) / "p.tif")[0])
                for name, rate in runs.items():
                    with whole_scene() if name.endswith(" whole") else contextlib.nullcontext():
                        s, t = timed(site, OnboardOptions(rate=rate), Path(tmp) / f"{name}.jp2")
                    times[name].append(s)
                    trials[name] = t
            plain = statistics.median(times["plain"])
            for name in runs:
                med = statistics.median(times[name])
                rows.append({"site": site.name, "rate": name, "plain_s": round(plain, 2),
                             "layered_s": round(med, 2), "ratio": round(med / plain, 2),
                             **trials[name]})
    print(f"{'site':<12} {'rate target':<24} {'plain s':>8} {'layered s':>10} {'ratio':>6} "
          f"{'rebuilds':>9} {'sampled':>8} {'encodes':>8} {'bytes':>8} {'PSNR':>6}  product")
    for r in rows:
        print(f"{r['site']:<12} {r['rate']:<24} {r['plain_s']:>8.2f} {r['layered_s']:>10.2f} "
              f"{r['ratio']:>6.2f} {r['base_rebuilds']:>9} {r['sample_rebuilds']:>8} "
              f"{r['encodes']:>8} {r['total_bytes']:>8} {r['psnr_db']:>6.2f}  {r['product']}")
    RESULTS.write_text(json.dumps({"repeat": args.repeat, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
