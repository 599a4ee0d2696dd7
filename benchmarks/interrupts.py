"""Interrupt an archive run at random points, resume it, and check nothing was lost or left.

Runs ``georefscale archive`` over the NAIP sample catalog (x4, ``--ground``, scenes split into
tile bands over 2 LocalCluster workers) once without interruption (the reference products),
then N times: start it into a fresh output folder, interrupt it at a random moment with SIGINT,
SIGTERM, SIGKILL (the whole process group) or by killing one Dask worker, check that it ended
within the grace period, rerun it to completion (the resume), compare every product's SHA-256
with the reference run and look for stale hidden files. Prints a table and writes
``benchmarks/results/interrupts.json``.

    python benchmarks/interrupts.py --runs 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "interrupts.json"
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
#: Seconds a run may take to end after SIGINT / SIGTERM.
GRACE = 20.0


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "georefscale", "archive", str(ROOT / "catalogs" / "naip.parquet"),
            "-o", str(out), "--archive-root", str(DATA), "--after", "2016-01-01", "-m",
            "bicubic", "-f", "4", "--tile", "256", "--ground", "--split-pixels", "300000",
            "-w", "2", "--no-progress"]


def products(out: Path) -> dict[str, str]:
    """SHA-256 of every file in the scene folders (not the archive manifest: it has timings)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*/*")) if p.is_file()}


def stale(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob(".*")]


def worker_pids(pid: int) -> list[int]:
    """Descendant processes of ``pid`` (the LocalCluster's nannies and workers)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [g for k in kids for g in worker_pids(k)]


def interrupt_once(out: Path, how: str, after: float) -> dict:
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    time.sleep(after)
    t0 = time.monotonic()
    if proc.poll() is not None:  # finished before the signal: not an interruption
        return {"how": how, "after_s": round(after, 2), "interrupted": False, "stop_s": 0.0,
                "hung": False, "exit": proc.returncode}
    if how == "SIGKILL":
        os.killpg(proc.pid, signal.SIGKILL)
    elif how == "worker":
        workers = worker_pids(proc.pid)
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)
    else:
        proc.send_signal(getattr(signal, how))
    try:
        proc.wait(timeout=GRACE if how in ("SIGINT", "SIGTERM") else 300)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stop = time.monotonic() - t0
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the group left behind
    except ProcessLookupError:
        pass
    return {"how": how, "after_s": round(after, 2), "stop_s": round(stop, 2), "hung": hung,
            "exit": proc.returncode, "interrupted": True}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="interrupts-") as tmp:
        ref = Path(tmp) / "reference"
        t0 = time.monotonic()
        subprocess.run(command(ref), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        full = time.monotonic() - t0
        want = products(ref)
        out = Path(tmp) / "out"
        attempts = 0
        while (sum(r["interrupted"] for r in rows) < args.runs
               and attempts < 3 * args.runs):
            attempts += 1
            if out.exists():  # each interruption hits a fresh run; its rerun is the resume
                subprocess.run(["rm", "-rf", str(out)], check=True)
            how = rng.choice(["SIGINT", "SIGTERM", "SIGKILL", "worker"])
            row = interrupt_once(out, how, rng.uniform(1.0, 0.7 * full))
            rerun = subprocess.run(command(out), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            got = products(out)
            row.update(resumed_exit=rerun.returncode, identical=got == want,
                       stale=stale(out))
            row["survived"] = (not row.get("hung") and rerun.returncode == 0
                               and row["identical"] and not row["stale"])
            rows.append(row)
            how = row["how"] if row["interrupted"] else "(none)"
            print(f"{attempts:>3} {how:<8} at {row['after_s']:>6.2f} s  stopped in "
                  f"{row['stop_s']:>6.2f} s  resume exit {row['resumed_exit']}  identical "
                  f"{row['identical']}  stale {len(row['stale'])}  "
                  f"{'ok' if row['survived'] else 'FAILED'}", flush=True)
    hits = [r for r in rows if r["interrupted"]]
    survived = sum(r["survived"] for r in hits)
    print(f"{survived} of {len(hits)} interruptions survived ({len(rows) - len(hits)} runs ended "
          f"before their signal; uninterrupted run {full:.1f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": rows, "interruptions": len(hits), "survived": survived,
                                   "uninterrupted_s": round(full, 2),
                                   "products": len(want)}, indent=1) + "\n")
    return 0 if survived == len(hits) and all(r["survived"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
