"""Training speed: optimiser steps per second of the training step's precision paths, same run.

Each recipe (``configs/NAME.yaml``, unchanged but for its training sites, since speed does not
depend on which scenes the crops come from) is trained for ``--warmup`` + ``--steps`` steps once
per path:

- ``fp32``: plain fp32, eager (``mixed_precision: false``, ``compile: false``; the trainer's
  path until 2026-11-28, and still the shipped weights' recipe);
- ``bf16``: bf16 autocast for the convolutions, eager (``compile: false``);
- ``bf16+compile``: the same under ``torch.compile``: the trainer's default.

The time per step is the trainer's own step clock (``seconds`` in ``log.jsonl``: data sampling,
forward, inverse, backward, optimiser; no validation, no checkpoint writing) over the steps after
the warm-up, which holds ``torch.compile``'s compilation. The median is the headline figure (a
shared machine slows some steps many times over); the mean is reported too. With ``--rounds R``
the paths take turns R times and their step times are pooled. Prints a table and writes JSON with
steps/s and the speed-up of each path over ``fp32`` on the same device.

``--curves STEPS`` instead trains the first recipe for STEPS steps (its schedule shortened to
STEPS, validation every ``--val-every``; all its sites) on ``fp32`` and on the default path, one
after the other, in resumable run folders ``runs/train-curves-NAME-PATH``, and writes both
validation curves (PSNR at equal steps) and wall times to ``--curves-out``.

    python benchmarks/train_speed.py [--config NAME ...] [--device cpu --device cuda] [--steps 40]
    python benchmarks/train_speed.py --curves 1000 --val-every 100 [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from georefscale.atomic import write_json
from georefscale.training import load_config, train

REPO = Path(__file__).resolve().parents[1]
#: path name -> the config fields it sets
PATHS = {
    "fp32": {"mixed_precision": False, "compile": False},
    "bf16": {"mixed_precision": True, "compile": False},
    "bf16+compile": {"mixed_precision": True, "compile": True},
}


def step_seconds(name: str, path: str, device: str, args: argparse.Namespace) -> list[float]:
    """Seconds of each timed step of recipe ``name`` on ``path`` (a key of :data:`PATHS`).

    Args:
        name: recipe name in ``configs/``.
        path: precision path.
        device: torch device.
        args: the command line (sites, batch, threads, warm-up and timed steps, data root).

    Returns:
        ``args.steps`` step times (s), from the run's ``log.jsonl``.
    """
    cfg = load_config(REPO / "configs" / f"{name}.yaml", args.data_root)
    sites = args.sites or ["pisa"]
    cfg = dataclasses.replace(cfg, train_sites=sites, val_sites=sites, val_every=10**9,
                              batch=args.batch or cfg.batch, threads=args.threads or cfg.threads,
                              **PATHS[path])
    warmup, steps = args.warmup, args.steps
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, device=device, progress=False, max_steps=warmup + steps)
        records = [json.loads(line) for line in (Path(tmp) / "log.jsonl").open()]
    return [r["seconds"] for r in records[warmup:]]


def curves(name: str, paths: list[str], device: str, args: argparse.Namespace) -> dict:
    """Validation curves of recipe ``name`` shortened to ``args.curves`` steps, one per path.

    Args:
        name: recipe name in ``configs/``.
        paths: precision paths (keys of :data:`PATHS`).
        device: torch device.
        args: the command line (steps, validation interval, threads, data root).

    Returns:
        Per path: the validation history, wall time (s) and median step time (s).
    """
    out = {}
    for path in paths:
        cfg = load_config(REPO / "configs" / f"{name}.yaml", args.data_root)
        cfg = dataclasses.replace(cfg, steps=args.curves, val_every=args.val_every,
                                  threads=args.threads or cfg.threads, **PATHS[path])
        run = REPO / "runs" / f"train-curves-{name}-{path}"
        weights = train(cfg, run, device=device, progress=False)
        card = json.loads(weights.with_suffix(".json").read_text())
        records = [json.loads(line) for line in (run / "log.jsonl").open()]
        out[path] = {"validation": card["validation_history"],
                     "wall_time_s": card["training"]["wall_time_s"],
                     "s_per_step_median": round(statistics.median(
                         r["seconds"] for r in records if "seconds" in r), 4)}
    return out


def write_curves(name: str, device: str, args: argparse.Namespace) -> None:
    """``--curves``: run :func:`curves` on fp32 and the default path, print the PSNR table and
    write the JSON."""
    fast = "bf16+compile"
    result = curves(name, ["fp32", fast], device, args)
    print(f"{'step':>6} {'fp32 dB':>8} {fast + ' dB':>16} {'difference':>10}")
    table = []
    for a, b in zip(result["fp32"]["validation"], result[fast]["validation"], strict=True):
        diff = b["psnr"] - a["psnr"]
        table.append({"step": a["step"], "fp32": round(a["psnr"], 3), fast: round(b["psnr"], 3),
                      "difference_db": round(diff, 3)})
        print(f"{a['step']:>6} {a['psnr']:>8.2f} {b['psnr']:>16.2f} {diff:>+10.2f}")
    for path, r in result.items():
        print(f"{path}: wall {r['wall_time_s']:.0f} s, median {r['s_per_step_median']:.3f} "
              "s/step")
    write_json(args.curves_out or REPO / f"benchmarks/results/train_curves_{name}.json", {
        "config": name, "steps": args.curves, "val_every": args.val_every, "device": device,
        "hardware": cpu_name() if device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "psnr_at_equal_steps": table, "runs": result,
    })


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", dest="configs", action="append",
                    help="recipe name in configs/ (repeatable; default the three S2 recipes)")
    ap.add_argument("--device", dest="devices", action="append", choices=["cpu", "cuda"],
                    help="repeatable; default cpu")
    ap.add_argument("--path", dest="paths", action="append", choices=list(PATHS),
                    help="precision path (repeatable; default all, fp32 always included)")
    ap.add_argument("--site", dest="sites", action="append",
                    help="training sites for the timing (default pisa)")
    ap.add_argument("--batch", type=int, default=None,
                    help="crops per step instead of the recipe's (CUDA scaling)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads instead of the recipe's")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/train_speed.json"))
    ap.add_argument("--curves", type=int, default=None, metavar="STEPS",
                    help="train the first recipe STEPS steps on fp32 and the default path and "
                         "compare validation curves")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--curves-out", default=None,
                    help="default benchmarks/results/train_curves_NAME.json")
    args = ap.parse_args()
    configs = args.configs or ["refscale-s2-x4", "noref-s2-x4", "refscale-s2-x2"]
    devices = args.devices or ["cpu"]
    if args.curves:
        write_curves(configs[0], devices[0], args)
        return
    paths = ["fp32", *[p for p in (args.paths or PATHS) if p != "fp32"]]
    rows = []
    print(f"{'config':<16} {'device':<6} {'path':<13} {'median s/step':>13} {'mean s/step':>11} "
          f"{'steps/s':>8} {'speed-up':>8}")
    for name in configs:
        for device in devices:
            times: dict[str, list[float]] = {p: [] for p in paths}
            for _ in range(args.rounds):
                for path in paths:
                    times[path] += step_seconds(name, path, device, args)
            base = statistics.median(times["fp32"])
            for path in paths:
                median = statistics.median(times[path])
                row = {"config": name, "device": device, "path": path,
                       "s_per_step_median": round(median, 4),
                       "s_per_step_mean": round(statistics.fmean(times[path]), 4),
                       "steps_per_s": round(1 / median, 3),
                       "speedup_vs_fp32": round(base / median, 2)}
                rows.append(row)
                print(f"{name:<16} {device:<6} {path:<13} {median:>13.4f} "
                      f"{row['s_per_step_mean']:>11.4f} {row['steps_per_s']:>8.3f} "
                      f"{row['speedup_vs_fp32']:>7.2f}x")
    write_json(args.out, {
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name() if "cuda" in devices else None,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "batch": args.batch or "recipe", "steps_timed": args.steps * args.rounds,
        "warmup": args.warmup, "rounds": args.rounds, "sites": args.sites or ["pisa"],
        "rows": rows,
    })


if __name__ == "__main__":
    main()
