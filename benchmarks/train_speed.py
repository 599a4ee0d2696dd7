"""Training speed of the shipped recipes: seconds per optimiser step on the CPU and on CUDA.

Each recipe (``configs/NAME.yaml``, unchanged but for its training sites, since speed does not
depend on which scenes the crops come from) runs ``--warmup`` steps, then ``--steps`` more in a
resumed run; the time per step is the trainer's own step clock over the second part (data
sampling, forward, inverse, backward, optimiser; no validation, no checkpoint writing). CPU runs
use the recipe's thread count; CUDA runs use bf16 autocast as the trainer does. Prints a table and
writes JSON with the ratio CUDA / CPU, both measured in the same run.

    python benchmarks/train_speed.py [--device cpu --device cuda] [--steps 30] [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from georefscale.training import load_config, train

REPO = Path(__file__).resolve().parents[1]


def seconds_per_step(name: str, device: str, sites: list[str], warmup: int, steps: int,
                     data_root: str | None, batch: int | None = None) -> float:
    cfg = load_config(REPO / "configs" / f"{name}.yaml", data_root)
    cfg = dataclasses.replace(cfg, train_sites=sites, val_sites=sites, val_every=10**9,
                              batch=batch or cfg.batch)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, device=device, progress=False, max_steps=warmup)
        before = torch.load(Path(tmp) / "checkpoint.pt", weights_only=False)["wall"]
        train(cfg, tmp, device=device, progress=False, max_steps=steps)
        after = torch.load(Path(tmp) / "checkpoint.pt", weights_only=False)["wall"]
    return (after - before) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", dest="configs", action="append",
                    help="recipe name in configs/ (repeatable; default the three S2 recipes)")
    ap.add_argument("--device", dest="devices", action="append", choices=["cpu", "cuda"])
    ap.add_argument("--site", dest="sites", action="append",
                    help="training sites for the timing (default pisa)")
    ap.add_argument("--batch", type=int, default=None,
                    help="crops per step instead of the recipe's (CUDA scaling)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/train_speed.json"))
    args = ap.parse_args()
    configs = args.configs or ["refscale-s2-x4", "noref-s2-x4", "refscale-s2-x2"]
    devices = args.devices or ["cpu"]
    sites = args.sites or ["pisa"]
    rows = []
    for name in configs:
        row = {"config": name, "batch": args.batch or "recipe"}
        for device in devices:
            row[f"{device}_s_per_step"] = seconds_per_step(
                name, device, sites, args.warmup, args.steps, args.data_root, args.batch)
        if {"cpu", "cuda"} <= set(devices):
            row["cuda_speedup"] = row["cpu_s_per_step"] / row["cuda_s_per_step"]
        rows.append(row)
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))
    result = {
        "steps_timed": args.steps, "warmup": args.warmup, "sites": sites,
        "gpu": torch.cuda.get_device_name() if "cuda" in devices else None,
        "torch": torch.__version__, "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
