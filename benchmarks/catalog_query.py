"""Catalog query latency and memory: in memory (loaded whole, STRtree) and out of core (the
GeoParquet file queried through its bbox covering columns), 10k-10M records.

Records are generated metadata (no imagery): scene footprints of 0.05-1 degree spread uniformly
over the globe's area between 70 S and 70 N, densified like ingested footprints of UTM scenes
(DENSIFY_POINTS = 10 vertices per edge, 41 in all), acquisition times uniform over 2005-2025.
Each query is a 0.02-degree AOI inside a random record's footprint, "before" up to 3 years after
that record, top 10.

In memory (sizes up to ``--max-in-memory``): the catalog is generated whole, queried, compared
with a linear scan (same filters and ranking on every record, vectorised shapely/numpy, no
index), saved, and loaded whole in a fresh process (load time and memory). Larger catalogs are
written chunk by chunk in Hilbert order (they would not fit in memory).

Out of core (every size): a fresh process evicts the file from the page cache
(``posix_fadvise(DONTNEED)``), opens it with ``Catalog.load`` and answers the first query
(cold), then the rest (warm); its peak resident memory (VmHWM, the whole process with Python
and its libraries) is reported beside its memory after the imports. Every out-of-core answer is
compared with the in-memory one, and with a brute-force scan of the generating arrays.

    python benchmarks/catalog_query.py [--sizes 10000 100000 1000000 10000000] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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
from georefscale.catalog.store import FLAT_SCHEMA, CatalogWriter, hilbert_key
from georefscale.errors import NoCandidateError

T0 = datetime(2005, 1, 1, tzinfo=timezone.utc).timestamp()
T1 = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
PLATFORMS = np.array(["sentinel-2a", "landsat-8", "naip"])
#: Records generated and written at a time when streaming a catalog to disk.
CHUNK = 250_000


def rss_mib(key: str = "VmRSS") -> float:
    """Resident memory of this process (``VmRSS``) or its peak (``VmHWM``), MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_arrays(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The generating values of ``n`` records (bbox, time, bands, gsd, platform, cloud)."""
    lon = rng.uniform(-180, 179, n)
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-70)), np.sin(np.radians(70)), n)))
    size = rng.uniform(0.05, 1.0, n)
    return {
        "xmin": lon, "ymin": lat, "xmax": np.minimum(lon + size, 180.0), "ymax": lat + size * 0.8,
        "size": size, "seconds": rng.uniform(T0, T1, n),
        "n_bands": rng.choice([1, 3, 4, 13], n), "gsd": rng.choice([0.6, 5.0, 10.0, 30.0], n),
        "platform": rng.integers(0, len(PLATFORMS), n), "cloud": rng.uniform(0, 100, n),
    }


def synthetic_rows(a: dict[str, np.ndarray], idx: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Records ``idx`` of the arrays ``a`` as a flat table and footprints (same schema as
    ingested ones)."""
    n = len(idx)
    lon, lat = a["xmin"][idx], a["ymin"][idx]
    boxes = shapely.box(lon, lat, a["xmax"][idx], a["ymax"][idx])
    footprints = shapely.segmentize(boxes, a["size"][idx] / DENSIFY_POINTS)
    ids = [f"scene_{i:08d}" for i in idx]
    band_type = FLAT_SCHEMA.field("bands").type
    cols = {
        "id": pa.array(ids),
        "href": pa.array([f"s3://archive/{i}.tif" for i in ids]),
        "datetime": pa.array((a["seconds"][idx] * 1e6).astype("int64"), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "collection": pa.array(["synthetic"] * n),
        "platform": pa.array(PLATFORMS[a["platform"][idx]]),
        "gsd": pa.array(a["gsd"][idx]),
        "cloud_cover": pa.array(a["cloud"][idx]),
        "bands": pa.array([[{"name": f"b{k + 1}", "common_name": None, "description": None}
                            for k in range(b)] for b in a["n_bands"][idx]], band_type),
        "crs": pa.array(["EPSG:4326"] * n),
        "transform": pa.array([[1e-4, 0.0, float(x), 0.0, -1e-4, float(y)]
                               for x, y in zip(lon, lat, strict=True)],
                              pa.list_(pa.float64())),
        "shape": pa.array([[10000, 10000]] * n, pa.list_(pa.int64())),
        "dtype": pa.array(["uint16"] * n),
        "nodata": pa.array([0.0] * n),
        "checksum": pa.array([f"1220{i:064x}" for i in idx]),
        "file_size": pa.array(np.full(n, 200_000_000, dtype="int64")),
        "datetime_source": pa.array(["tag:ACQUISITION_DATE"] * n),
        "footprint_kind": pa.array(["bounds"] * n),
        "band_hrefs": pa.nulls(n, pa.list_(pa.string())),
    }
    table = pa.Table.from_arrays([cols[f.name] for f in FLAT_SCHEMA], schema=FLAT_SCHEMA)
    return table, footprints


def synthetic_catalog(a: dict[str, np.ndarray]) -> Catalog:
    """All records of ``a`` as an in-memory Catalog."""
    table, footprints = synthetic_rows(a, np.arange(len(a["xmin"])))
    return Catalog(table, footprints)


def write_synthetic(path: Path, a: dict[str, np.ndarray]) -> None:
    """Write the records of ``a`` to ``path`` in Hilbert order, :data:`CHUNK` at a time (what
    ``Catalog.save`` writes, without holding the catalog in memory)."""
    bounds = np.column_stack([a["xmin"], a["ymin"], a["xmax"], a["ymax"]])
    order = np.argsort(hilbert_key(bounds), kind="stable")
    extent = [*bounds[:, :2].min(0), *bounds[:, 2:].max(0)]
    del bounds
    with CatalogWriter(path, geometry_types=["Polygon"], extent=extent) as writer:
        for start in range(0, len(order), CHUNK):
            writer.write(*synthetic_rows(a, order[start:start + CHUNK]))


def array_scan(a: dict[str, np.ndarray], aoi_text: str, before: str, limit: int = 10
               ) -> list[str]:
    """The expected answer, by brute force on the generating arrays (the footprints are
    boxes, so the covered fraction is the box overlap): same filters, score and tie order as
    ``Catalog.query``."""
    x0, y0, x1, y1 = (float(v) for v in aoi_text.split(","))
    anchor = int(TimeFilter.make(before=before).anchor.timestamp() * 1e6)
    t = (a["seconds"] * 1e6).astype("int64")
    rows = np.flatnonzero((a["xmin"] <= x1) & (a["xmax"] >= x0) & (a["ymin"] <= y1)
                          & (a["ymax"] >= y0) & (t < anchor))
    w = np.minimum(a["xmax"][rows], x1) - np.maximum(a["xmin"][rows], x0)
    h = np.minimum(a["ymax"][rows], y1) - np.maximum(a["ymin"][rows], y0)
    overlap = np.clip(w * h / ((x1 - x0) * (y1 - y0)), 0.0, 1.0)
    keep = overlap >= 1e-12
    rows, overlap = rows[keep], overlap[keep]
    gap = np.abs(anchor - t[rows]) / 86_400e6
    score = gap / 365.25 + 10.0 * (1 - overlap) + 2.0 * a["cloud"][rows] / 100.0
    ids = np.array([f"scene_{i:08d}" for i in rows], dtype=object)
    return list(ids[np.lexsort((ids, gap, score))[:limit]])


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


def make_queries(a: dict[str, np.ndarray], k: int, rng: np.random.Generator
                 ) -> list[tuple[str, str]]:
    """AOIs inside a random record, "before" a time 1 day - 3 years after that record."""
    out = []
    for row in rng.integers(0, len(a["xmin"]), k):
        x0, y0, x1, y1 = a["xmin"][row], a["ymin"][row], a["xmax"][row], a["ymax"][row]
        x = rng.uniform(x0, max(x0, x1 - 0.02))
        y = rng.uniform(y0, max(y0, y1 - 0.02))
        seconds = a["seconds"][row] + rng.uniform(2, 3 * 365) * 86400
        when = datetime.fromtimestamp(seconds, timezone.utc)
        out.append((f"{x},{y},{x + 0.02},{y + 0.02}", when.date().isoformat()))
    return out


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args)
    return (time.perf_counter() - start) * 1e3, value


def answer(cat: Catalog, aoi: str, before: str) -> list[str]:
    """Ids of the top 10 (empty when nothing qualifies)."""
    try:
        return [c.record.id for c in cat.query(aoi, before=before, limit=10).candidates]
    except NoCandidateError:
        return []


def _import_libraries() -> None:
    """Import what a query uses, so the memory measured is the catalog's."""
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import pyproj  # noqa: F401
    import rasterio  # noqa: F401

    parse_aoi("0,0,1,1")


def measure_load(path: str) -> None:
    """(Run in a fresh process.) Print load time and the memory a catalog loaded whole and its
    index take."""
    _import_libraries()
    rss0 = rss_mib()
    start = time.perf_counter()
    cat = Catalog.load(path, out_of_core=False)
    cat.index.tree.query(shapely.box(0, 0, 1, 1))
    print(json.dumps({"load_and_index_s": round(time.perf_counter() - start, 2),
                      "rss_loaded_mib": round(rss_mib() - rss0, 1),
                      "peak_rss_loaded_mib": round(rss_mib("VmHWM"), 1)}))


def measure_out_of_core(path: str, queries_file: str) -> None:
    """(Run in a fresh process.) Evict ``path`` from the page cache, open it out of core, answer
    the queries; print cold/warm times, peak memory and the answers as JSON."""
    start = time.perf_counter()
    _import_libraries()
    imports_s = time.perf_counter() - start
    queries = json.loads(Path(queries_file).read_text())
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    rss0 = rss_mib()
    start = time.perf_counter()
    cat = Catalog.load(path)
    open_s = time.perf_counter() - start
    assert cat.out_of_core
    answers = [answer(cat, *queries[0])]
    cold_s = time.perf_counter() - start
    warm_ms = []
    for aoi, before in queries[1:]:
        ms, ids = timed(answer, cat, aoi, before)
        warm_ms.append(ms)
        answers.append(ids)
    print(json.dumps({
        "ooc_imports_s": round(imports_s, 2), "ooc_open_s": round(open_s, 3),
        "ooc_cold_query_s": round(cold_s, 3),
        "ooc_warm_p50_ms": round(statistics.median(warm_ms), 2),
        "ooc_warm_p95_ms": round(float(np.percentile(warm_ms, 95)), 2),
        "ooc_rss_after_imports_mib": round(rss0, 1),
        "ooc_peak_rss_mib": round(rss_mib("VmHWM"), 1),
        "answers": answers}))


def _subprocess(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(n: int, n_queries: int, n_scans: int, n_checks: int, seed: int, in_memory: bool,
          folder: Path) -> dict:
    rng = np.random.default_rng(seed)
    gc.collect()
    start = time.perf_counter()
    arrays = synthetic_arrays(n, rng)
    queries = make_queries(arrays, n_queries, rng)
    path = folder / f"catalog_{n}.parquet"
    out: dict = {"records": n, "queries": n_queries}
    answers: list[list[str]] | None = None
    if in_memory:
        rss0 = rss_mib()
        t_gen, cat = timed(synthetic_catalog, arrays)
        rss_records = rss_mib() - rss0
        t_index, _ = timed(lambda: cat.index.tree.query(shapely.box(0, 0, 1, 1)))  # lazy tree
        rss_total = rss_mib() - rss0
        answer(cat, *queries[0])  # warm caches (pyproj, GDAL)
        query_ms, answers = [], []
        for aoi, before in queries:
            ms, ids = timed(answer, cat, aoi, before)
            query_ms.append(ms)
            answers.append(ids)
        scan_ms, agree = [], 0
        for (aoi, before), ids in zip(queries[:n_scans], answers[:n_scans], strict=True):
            ms, scanned = timed(linear_scan, cat, aoi, before)
            scan_ms.append(ms)
            agree += scanned == ids
        p50, scan_p50 = statistics.median(query_ms), statistics.median(scan_ms)
        save_ms, _ = timed(cat.save, path)
        out.update({
            "query_p50_ms": round(p50, 3),
            "query_p95_ms": round(float(np.percentile(query_ms, 95)), 3),
            "scan_p50_ms": round(scan_p50, 3), "speedup_p50": round(scan_p50 / p50, 1),
            "scan_agrees": f"{agree}/{n_scans}",
            "empty_answers": sum(not a for a in answers),
            "mean_candidates": round(float(np.mean([len(a) for a in answers])), 2),
            "generate_s": round(t_gen / 1e3, 2), "index_build_s": round(t_index / 1e3, 2),
            "rss_generated_mib": round(rss_records, 1), "rss_with_index_mib": round(rss_total, 1),
            "arrow_table_mib": round(cat.index.table.nbytes / 2**20, 1),
            "save_s": round(save_ms / 1e3, 2),
        })
        del cat
        gc.collect()
        out.update(_subprocess("--measure-load", str(path)))
    else:
        write_ms, _ = timed(write_synthetic, path, arrays)
        out["write_streamed_s"] = round(write_ms / 1e3, 2)
    out["file_mib"] = round(path.stat().st_size / 2**20, 1)
    out["generate_and_write_s"] = round(time.perf_counter() - start, 1)
    queries_file = folder / "queries.json"
    queries_file.write_text(json.dumps(queries))
    ooc = _subprocess("--measure-out-of-core", str(path), str(queries_file))
    got = ooc.pop("answers")
    out.update(ooc)
    if answers is not None:
        same = sum(g == w for g, w in zip(got, answers, strict=True))
        out["ooc_agrees_with_in_memory"] = f"{same}/{len(answers)}"
    checks = min(n_checks, len(queries))
    truth = [array_scan(arrays, *q) for q in queries[:checks]]
    same = sum(g == t for g, t in zip(got[:checks], truth, strict=True))
    out["ooc_agrees_with_brute_force"] = f"{same}/{checks}"
    out["ooc_mean_candidates"] = round(float(np.mean([len(a) for a in got])), 2)
    path.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--checks", type=int, default=50,
                        help="out-of-core answers checked against the brute-force scan")
    parser.add_argument("--max-in-memory", type=int, default=1_000_000,
                        help="largest size also generated, queried and loaded in memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the catalog files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/catalog_query.json"))
    parser.add_argument("--measure-load", help=argparse.SUPPRESS)
    parser.add_argument("--measure-out-of-core", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_load:
        measure_load(args.measure_load)
        return
    if args.measure_out_of_core:
        measure_out_of_core(*args.measure_out_of_core)
        return
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.sizes:
            rows.append(bench(n, args.queries, args.scans, args.checks, args.seed,
                              n <= args.max_in_memory, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    keys = ["records", "file_mib", "load_and_index_s", "rss_loaded_mib", "query_p50_ms",
            "ooc_open_s", "ooc_cold_query_s", "ooc_warm_p50_ms", "ooc_warm_p95_ms",
            "ooc_peak_rss_mib", "ooc_agrees_with_in_memory", "ooc_agrees_with_brute_force"]
    print("\n" + " | ".join(keys))
    for row in rows:
        print(" | ".join(str(row.get(k, "-")) for k in keys))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "python": platform.python_version(),
                                    "cpus": os.cpu_count(), "results": rows}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
