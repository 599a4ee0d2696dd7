"""Behaviour contract for refactors: SHA-256 of the products of the public commands.

Runs, through the CLI on the sample archive, the README demo (LR and HR files), ``onboard`` /
``ground`` with every shipped model (Sentinel-2 models on Montpellier, NAIP models on the 2020
NAIP date, each with its catalog reference), a near-lossless two-layer product (``--max-error
10``, default model) and its ground rebuild, a split (``--split-pixels``) archive run with
``--ground`` on two workers, and ``evaluate`` at x4 (the JSON). Prints a table and either records
the hashes (``--record``) or compares them with the recorded ones (exit 1 on any difference).

    python benchmarks/byte_identity.py --record    # before a refactor
    python benchmarks/byte_identity.py             # after: every line must say "same"

Record and compare with the same torch thread count (the default; not under
``OMP_NUM_THREADS=1``): a network's HR product depends on it in the last bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "byte_identity.json"
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
S2_TARGET, S2_REF = "oscd/montpellier_20171030.tif", "oscd/montpellier_20150812.tif"
NAIP_TARGET = "naip/m_4709963_se_14_1_20200831.tif"
NAIP_REF = "naip/m_4709963_se_14_1_20190904.tif"
MODELS = {
    "refscale-s2-x4": (S2_TARGET, S2_REF),
    "noref-s2-x4": (S2_TARGET, None),
    "refscale-s2-x4-jp2": (S2_TARGET, S2_REF),
    "noref-s2-x4-jp2": (S2_TARGET, None),
    "refscale-s2-x2": (S2_TARGET, S2_REF),
    "noref-s2-x2": (S2_TARGET, None),
    "refscale-naip-x4": (NAIP_TARGET, NAIP_REF),
    "noref-naip-x4": (NAIP_TARGET, None),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "georefscale", *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def products(work: Path) -> dict[str, str]:
    """Run every job into ``work``; name -> SHA-256 of each product file."""
    out: dict[str, str] = {}
    cli("demo", "-o", str(work / "demo"), "--archive", str(DATA))
    for f in sorted((work / "demo").iterdir()):
        if f.suffix in (".tif", ".jp2"):
            out[f"demo/{f.name}"] = sha256(f)
    for model, (target, ref) in MODELS.items():
        lr, hr = work / f"{model}_lr.tif", work / f"{model}_hr.tif"
        refs = ["-r", str(DATA / ref)] if ref else []
        cli("onboard", str(DATA / target), *refs, "-m", model, "-o", str(lr))
        cli("ground", str(lr), *refs, "-o", str(hr))
        out[f"{model}/lr"], out[f"{model}/hr"] = sha256(lr), sha256(hr)
    lr, hr = work / "layered_e10.jp2", work / "layered_e10_hr.tif"  # near-lossless, two layers
    cli("onboard", str(DATA / S2_TARGET), "-r", str(DATA / S2_REF), "--max-error", "10",
        "--no-direct", "-o", str(lr))
    cli("ground", str(lr), "-r", str(DATA / S2_REF), "-o", str(hr))
    for f in (lr, lr.with_name("layered_e10.enh.jp2"), hr):
        out[f"layered/{f.name}"] = sha256(f)
    arch = work / "archive"
    cli("archive", str(ROOT / "catalogs" / "naip.parquet"), "-o", str(arch), "--after",
        "2019-01-01", "-m", "refscale-naip-x4", "--ground", "--split-pixels", "100000",
        "--tile", "256", "-w", "2", "--archive-root", str(DATA), "--no-progress")
    for f in sorted(arch.glob("*/*")):
        out[f"archive/{f.parent.name}/{f.name}"] = sha256(f)
    ev = work / "evaluate_x4.json"
    cli("evaluate", "--pairs", str(DATA / "oscd"), "--factor", "4", "--json", str(ev))
    out["evaluate_x4.json"] = sha256(ev)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record instead of comparing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="byte-identity-") as tmp:
        got = products(Path(tmp))
    want = {} if args.record else json.loads(RECORD.read_text())["sha256"]
    bad = 0
    print(f"{'product':<52} {'sha256':<16} status")
    for name, digest in got.items():
        status = "recorded" if args.record else ("same" if want.get(name) == digest else "DIFFERS")
        bad += status == "DIFFERS"
        print(f"{name:<52} {digest[:16]} {status}")
    for name in sorted(set(want) - set(got)):
        bad += 1
        print(f"{name:<52} {'-':<16} MISSING")
    if args.record:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps({"sha256": got}, indent=1) + "\n")
    print(f"{len(got)} products, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
