"""Catalog query latency: indexed query vs a linear scan of the same records, 10k-1M records.

Records are generated metadata (no imagery): scene footprints of 0.05-1 degree spread uniformly
over the globe's area between 70 S and 70 N, densified like ingested footprints of UTM scenes
(DENSIFY_POINTS = 10 vertices per edge, 41 in all), acquisition times uniform over 2005-2025.
Each query is a 0.02-degree AOI inside a random record's footprint, "before" up to 3 years after
that record, top 10. The linear scan applies the same filters and ranking to every record with
vectorised shapely/numpy (no index). Prints a table, writes JSON.

    python benchmarks/catalog_query.py [--sizes 10000 100000 1000000] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

from georefscale.catalog import Catalog
from georefscale.catalog.query import TimeFilter, parse_aoi
from georefscale.catalog.records import DENSIFY_POINTS
from georefscale.catalog.store import FLAT_SCHEMA
from georefscale.errors import NoCandidateError

T0 = datetime(2005, 1, 1, tzinfo=timezone.utc).timestamp()
T1 = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()


def rss_mib() -> float:
    """Resident memory of this process, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_catalog(n: int, rng: np.random.Generator) -> Catalog:
    """``n`` generated records as a Catalog (built columnar, same schema as ingested ones)."""
    lon = rng.uniform(-180, 179, n)
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-70)), np.sin(np.radians(70)), n)))
    size = rng.uniform(0.05, 1.0, n)
    boxes = shapely.box(lon, lat, np.minimum(lon + size, 180.0), lat + size * 0.8)
    footprints = shapely.segmentize(boxes, size / DENSIFY_POINTS)
    seconds = rng.uniform(T0, T1, n)
    n_bands = rng.choice([1, 3, 4, 13], n)
    gsd = rng.choice([0.6, 5.0, 10.0, 30.0], n)
    ids = [f"scene_{i:07d}" for i in range(n)]
    cols = {
        "id": pa.array(ids),
        "href": pa.array([f"s3://archive/{i}.tif" for i in ids]),
        "datetime": pa.array((seconds * 1e6).astype("int64"), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "collection": pa.array(["synthetic"] * n),
        "platform": pa.array(rng.choice(["sentinel-2a", "landsat-8", "naip"], n)),
        "gsd": pa.array(gsd),
        "cloud_cover": pa.array(rng.uniform(0, 100, n)),
        "bands": pa.array([[{"name": f"b{k + 1}", "common_name": None, "description": None}
                            for k in range(b)] for b in n_bands], FLAT_SCHEMA.field("bands").type),
        "crs": pa.array(["EPSG:4326"] * n),
        "transform": pa.array([[1e-4, 0.0, float(x), 0.0, -1e-4, float(y)]
                               for x, y in zip(lon, lat, strict=True)],
                              pa.list_(pa.float64())),
        "shape": pa.array([[10000, 10000]] * n, pa.list_(pa.int64())),
        "dtype": pa.array(["uint16"] * n),
        "nodata": pa.array([0.0] * n),
        "checksum": pa.array([f"1220{i:064x}" for i in range(n)]),
        "file_size": pa.array(np.full(n, 200_000_000, dtype="int64")),
        "datetime_source": pa.array(["tag:ACQUISITION_DATE"] * n),
        "footprint_kind": pa.array(["bounds"] * n),
    }
    table = pa.Table.from_arrays([cols[f.name] for f in FLAT_SCHEMA], schema=FLAT_SCHEMA)
    return Catalog(table, footprints)


def linear_scan(cat: Catalog, aoi_text: str, before: str, limit: int = 10) -> list[str]:
    """Same filters and ranking as Catalog.query, on every record, without the spatial index."""
    idx = cat.index
    aoi = parse_aoi(aoi_text)
    when = TimeFilter.make(before=before)
    anchor = int(when.anchor.timestamp() * 1e6)
    hit = shapely.intersects(idx.footprints, aoi) & (idx.times_us < anchor)
    rows = np.flatnonzero(hit)
    gap = (anchor - idx.times_us[rows]) / 86_400e6
    overlap = shapely.area(shapely.intersection(idx.footprints[rows], aoi)) / aoi.area
    score = gap / 365.25 + 10.0 * (1 - overlap) + 2.0 * idx.cloud[rows] / 100.0
    ids = idx.strings("id", rows)
    order = np.lexsort((ids, gap, score))[:limit]
    return list(ids[order])


def make_queries(cat: Catalog, k: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """AOIs inside a random record, "before" a time 1 day - 3 years after that record."""
    idx = cat.index
    out = []
    for row in rng.integers(0, len(idx.footprints), k):
        x0, y0, x1, y1 = idx.footprints[row].bounds
        x = rng.uniform(x0, max(x0, x1 - 0.02))
        y = rng.uniform(y0, max(y0, y1 - 0.02))
        seconds = idx.times_us[row] / 1e6 + rng.uniform(2, 3 * 365) * 86400
        when = datetime.fromtimestamp(seconds, timezone.utc)
        out.append((f"{x},{y},{x + 0.02},{y + 0.02}", when.date().isoformat()))
    return out


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args)
    return (time.perf_counter() - start) * 1e3, value


def measure_load(path: str) -> None:
    """(Run in a fresh process.) Print load time and the memory a saved catalog + index take."""
    import pyarrow.parquet  # noqa: F401  (library imports are not the catalog's memory)
    import pyproj  # noqa: F401
    import rasterio  # noqa: F401

    rss0 = rss_mib()
    start = time.perf_counter()
    cat = Catalog.load(path)
    cat.index.tree.query(shapely.box(0, 0, 1, 1))
    print(json.dumps({"load_and_index_s": round(time.perf_counter() - start, 2),
                      "rss_loaded_mib": round(rss_mib() - rss0, 1)}))


def saved_size_and_load(cat: Catalog) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.parquet"
        start = time.perf_counter()
        cat.save(path)
        out = {"save_s": round(time.perf_counter() - start, 2),
               "file_mib": round(path.stat().st_size / 2**20, 1)}
        proc = subprocess.run([sys.executable, __file__, "--measure-load", str(path)],
                              capture_output=True, text=True, check=True)
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def bench(n: int, n_queries: int, n_scans: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    gc.collect()
    rss0 = rss_mib()
    t_gen, cat = timed(synthetic_catalog, n, rng)
    rss_records = rss_mib() - rss0
    t_index, _ = timed(lambda: cat.index.tree.query(shapely.box(0, 0, 1, 1)))  # STRtree is lazy
    rss_total = rss_mib() - rss0
    queries = make_queries(cat, n_queries, rng)

    def run(aoi: str, before: str) -> list[str]:
        try:
            return [c.record.id for c in cat.query(aoi, before=before, limit=10).candidates]
        except NoCandidateError:
            return []

    run(*queries[0])  # warm caches (pyproj, GDAL)
    query_ms, answers = [], []
    for aoi, before in queries:
        ms, ids = timed(run, aoi, before)
        query_ms.append(ms)
        answers.append(ids)
    scan_ms, agree = [], 0
    for (aoi, before), ids in zip(queries[:n_scans], answers[:n_scans], strict=True):
        ms, scanned = timed(linear_scan, cat, aoi, before)
        scan_ms.append(ms)
        agree += scanned == ids
    p50, scan_p50 = statistics.median(query_ms), statistics.median(scan_ms)
    storage = saved_size_and_load(cat)
    return {
        "records": n, "queries": n_queries, "scans": n_scans,
        "query_p50_ms": round(p50, 3),
        "query_p95_ms": round(float(np.percentile(query_ms, 95)), 3),
        "scan_p50_ms": round(scan_p50, 3),
        "speedup_p50": round(scan_p50 / p50, 1),
        "scan_agrees": f"{agree}/{n_scans}",
        "empty_answers": sum(not a for a in answers),
        "mean_candidates": round(float(np.mean([len(a) for a in answers])), 2),
        "generate_s": round(t_gen / 1e3, 2), "index_build_s": round(t_index / 1e3, 2),
        "rss_generated_mib": round(rss_records, 1), "rss_with_index_mib": round(rss_total, 1),
        "arrow_table_mib": round(cat.index.table.nbytes / 2**20, 1),
        **storage,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/catalog_query.json"))
    parser.add_argument("--measure-load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_load:
        measure_load(args.measure_load)
        return
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args.queries, args.scans, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    keys = ["records", "query_p50_ms", "query_p95_ms", "scan_p50_ms", "speedup_p50",
            "scan_agrees", "mean_candidates", "file_mib", "load_and_index_s", "rss_loaded_mib"]
    print("\n" + " | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "python": platform.python_version(), "results": rows},
                                   indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
