"""PSNR of the x4 models on the Sentinel-2 test cities (or the NAIP test date, ``--family naip``)
at several sampling temperatures alpha (issue #23 point 4): runs ``georefscale evaluate`` (full
file pipeline, seed 0) once per alpha with the code of a given checkout, prints a table and
merges the runs into
``benchmarks/results/evaluate_x4_alpha.json`` under a label (``before`` / ``after``), so the
code before a change can be measured from an exported copy of it:

    git archive HEAD | tar -x -C /tmp/before
    python benchmarks/alpha_sweep.py --code /tmp/before --label before
    python benchmarks/alpha_sweep.py --label after        # this checkout
    python benchmarks/alpha_sweep.py --model refscale-s2-x4-jp2 --noref noref-s2-x4-jp2
    python benchmarks/alpha_sweep.py --family naip --alpha 1 --alpha 3
    python benchmarks/alpha_sweep.py --table              # print what the JSON holds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "evaluate_x4_alpha.json"
ALPHAS = (0.0, 1.0, 2.0, 3.0)
METHODS = ("bicubic", "noref", "refscale")
PAIRS = {"s2": "oscd", "naip": "naip"}


def commit_of(code: Path) -> str | None:
    """The commit of the checkout ``code``, ``-dirty`` with uncommitted changes (None for an
    exported copy: give ``--commit``)."""
    try:
        return subprocess.run(["git", "-C", str(code), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def evaluate(code: Path, alpha: float, model: str, noref: str, threads: int,
             family: str = "s2") -> dict:
    """One ``georefscale evaluate`` run (x4, the unseen test sites) with the package in
    ``code``; its JSON plus the wall time."""
    env = {**os.environ, "PYTHONPATH": str(code), "GEOREFSCALE_DATA": str(DATA),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "georefscale", "evaluate", "--pairs",
                        str(DATA / PAIRS[family]), "--factor", "4", "--family", family,
                        "--model", model, "--noref", noref,
                        "--alpha", f"{alpha:g}", "--seed", "0", "--json", str(out)],
                       env=env, cwd=tmp, check=True)
        seconds = time.perf_counter() - t0
        result = json.loads(out.read_text())
    return {"alpha": alpha, "seconds": round(seconds, 1),
            "mean_psnr": result["mean"]["psnr"], "mean_ssim": result["mean"]["ssim"],
            "sites": {r["site"]: r["psnr"] for r in result["sites"]},
            "convention": result["convention"]}


def table(doc: dict) -> str:
    """Mean PSNR per model pair, label and alpha, and the loss at alpha 3 against alpha 1."""
    alphas = sorted({r["alpha"] for run in doc["runs"] for r in run["alphas"]} | set(ALPHAS))
    lines = [f"{'models':<38} {'label':<7} {'method':<9} "
             + " ".join(f"a={a:<5g}" for a in alphas) + "  a3-a1"]
    for run in doc["runs"]:
        by_alpha = {r["alpha"]: r for r in run["alphas"]}
        for method in METHODS:
            vals = dict.fromkeys(alphas)
            vals.update({a: r["mean_psnr"].get(method) for a, r in by_alpha.items()})
            cells = " ".join(f"{v:7.2f}" if v is not None else "      -" for v in vals.values())
            drop = (f"{vals[3.0] - vals[1.0]:+6.2f}" if None not in (vals[1.0], vals[3.0])
                    else "     -")
            lines.append(f"{run['models']['refscale'] + ' / ' + run['models']['noref']:<38} "
                         f"{run['label']:<7} {method:<9} {cells}  {drop}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="checkout whose georefscale package runs (default this one)")
    parser.add_argument("--label", default="after", help="name of this sweep in the JSON")
    parser.add_argument("--commit", default=None,
                        help="commit of --code when it is not a git checkout")
    parser.add_argument("--family", choices=sorted(PAIRS), default="s2")
    parser.add_argument("--model", default=None, help="default refscale-<family>-x4")
    parser.add_argument("--noref", default=None, help="default noref-<family>-x4")
    parser.add_argument("--alpha", type=float, action="append", default=None,
                        help=f"repeatable; default {', '.join(f'{a:g}' for a in ALPHAS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="only print the stored table")
    args = parser.parse_args()
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    if not args.table:
        code = args.code.resolve()
        model = args.model or f"refscale-{args.family}-x4"
        noref = args.noref or f"noref-{args.family}-x4"
        models = {"bicubic": "bicubic", "noref": noref, "refscale": model}
        run = next((r for r in doc["runs"] if r["label"] == args.label
                    and r["models"] == models), None)
        if run is None:
            run = {"label": args.label, "models": models, "alphas": []}
            doc["runs"].append(run)
        run["commit"] = args.commit or commit_of(code)
        run["threads"] = args.threads
        for alpha in args.alpha or ALPHAS:
            row = evaluate(code, alpha, model, noref, args.threads, args.family)
            print(json.dumps({"label": args.label, "alpha": alpha, "seconds": row["seconds"],
                              "mean_psnr": row["mean_psnr"]}), flush=True)
            run["alphas"] = sorted([r for r in run["alphas"] if r["alpha"] != alpha] + [row],
                                   key=lambda r: r["alpha"])
            doc["description"] = ("georefscale evaluate, x4, the Sentinel-2 test cities or the "
                                  "NAIP test date (the sites no model saw), seed 0, per "
                                  "sampling temperature alpha; benchmarks/alpha_sweep.py")
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print(table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
