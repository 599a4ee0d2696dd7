"""Archive throughput: scenes per minute for the serial path and a LocalCluster of 1 and 2
process workers (1 thread each) over the real sample archive (OSCD + NAIP catalogs), and the
overhead of the distributed path against the serial one with one worker.

Every run starts from an empty output folder. Start-up (cluster spawn, plus one warm-up scene
per process so that imports and GDAL / torch initialisation are not billed to the run; the
serial path gets the same warm-up) is timed separately from processing. Serial and distributed
runs alternate while the cluster is up, so both see the same background load; the overhead is
computed from the means. The serial path also runs torch / BLAS on one thread.

    python benchmarks/archive_scaling.py [--model bicubic] [--ground] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGS = [REPO / "catalogs" / "oscd.parquet", REPO / "catalogs" / "naip.parquet"]
RESULTS = REPO / "benchmarks" / "results" / "archive_scaling.json"


def _warm_scene(job) -> None:
    """Process one real scene into a scratch folder: a fresh process pays its one-off costs
    (imports, GDAL and torch initialisation) here, not in the timed run."""
    from georefscale.archive import run_scene

    scratch = tempfile.mkdtemp(prefix="archive-warm-")
    try:
        run_scene(job, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(model: str, ground: bool, repeat: int) -> dict:
    from georefscale.archive import connect, plan_archive, process_archive
    from georefscale.catalog import Catalog
    from georefscale.options import ClusterOptions, GroundOptions, OnboardOptions

    catalogs = [Catalog.load(c) for c in CATALOGS]
    opts = {"onboard": OnboardOptions(model=model),
            "ground": GroundOptions() if ground else None, "progress": False}
    warm = plan_archive(catalogs[0], onboard=opts["onboard"], ground=opts["ground"])[-1]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="archive-bench-"))

    def timed(path: str, workers: int, rep: int, startup: float, client) -> None:
        t1 = time.perf_counter()
        scenes = failed = 0
        for i, cat in enumerate(catalogs):
            out = tmp / f"run{len(rows)}-{i}"  # always a fresh folder
            res = process_archive(cat, out, cluster=ClusterOptions(workers=0), client=client,
                                  **opts)
            scenes += res.count("done")
            failed += len(res.failed)
        seconds = time.perf_counter() - t1
        rows.append({
            "path": path, "workers": workers, "repeat": rep, "scenes": scenes, "failed": failed,
            "startup_s": round(startup, 2), "processing_s": round(seconds, 2),
            "scenes_per_min": round(60 * scenes / seconds, 1),
            "scenes_per_min_incl_startup": round(60 * scenes / (seconds + startup), 1),
        })
        print(_row(rows[-1]), flush=True)

    try:
        t0 = time.perf_counter()
        _warm_scene(warm)
        serial_startup = time.perf_counter() - t0
        for workers in (1, 2):
            t0 = time.perf_counter()
            with connect(workers) as client:
                client.run(_warm_scene, warm)
                startup = time.perf_counter() - t0
                # alternate with the serial path so both see the same background load
                for rep in range(repeat):
                    timed("serial", 0, rep, serial_startup, None)
                    timed(f"dask x{workers}", workers, rep, startup, client)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    def mean(path: str, workers_cluster: int | None = None) -> float:
        """Mean processing time of ``path``; serial runs only those next to that cluster."""
        sel = [r["processing_s"] for i, r in enumerate(rows) if r["path"] == path
               and (workers_cluster is None or rows[i + 1]["workers"] == workers_cluster)]
        return sum(sel) / len(sel)

    serial, one, two = mean("serial", 1), mean("dask x1"), mean("dask x2")
    return {
        "model": model,
        "ground": ground,
        "catalogs": [str(c.relative_to(REPO)) for c in CATALOGS],
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "runs": rows,
        "mean_processing_s": {"serial (next to x1)": round(serial, 2), "dask x1": round(one, 2),
                              "dask x2": round(two, 2)},
        "overhead_1_worker_vs_serial": round(one / serial - 1, 4),
        "speedup_2_vs_1_workers": round(one / two, 3),
    }


def _row(r: dict) -> str:
    return (f"{r['path']:<9} {r['scenes']:>6} {r['startup_s']:>9.2f} {r['processing_s']:>12.2f} "
            f"{r['scenes_per_min']:>11.1f} {r['scenes_per_min_incl_startup']:>13.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--ground", action="store_true", help="onboard + ground per scene")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print(f"{'path':<9} {'scenes':>6} {'startup s':>9} {'processing s':>12} "
          f"{'scenes/min':>11} {'incl. startup':>13}")
    result = run(args.model, args.ground, args.repeat)
    overhead = 100 * result["overhead_1_worker_vs_serial"]
    print(f"overhead of 1 dask worker vs serial: {overhead:+.1f} %; "
          f"2 vs 1 workers: x{result['speedup_2_vs_1_workers']:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    suffix = "_ground" if args.ground else ""
    path = RESULTS.with_name(f"archive_scaling{suffix}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
