"""Table 1 of the seed: parameters and FLOPs of our x2 / x4 networks next to the published ones.

Parameters: the trainable weights of the network (reference encoder included). FLOPs: torch's
``torch.utils.flop_counter.FlopCounterMode`` (the counter behind ``georefscale info``) on one
``--tile`` x ``--tile`` HR tile of 4 bands, each direction separately (``downscale`` = HR -> LR on
board, ``upscale`` = LR + z -> HR on the ground); the counter counts a multiply-add as 2 FLOPs
(convolutions only; activations, Haar and gating arithmetic are not counted). Counts do not depend
on the weights: a model that is not shipped yet is counted on the architecture of its training
config (``configs/<name>.yaml``), marked ``config`` in the table.

Run: ``python docs/experiments/table1_complexity.py [--tile 512]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import REPO, RESULTS, md_table, write_outputs

MODELS = ("refscale-s2-x2", "refscale-s2-x4", "noref-s2-x2", "noref-s2-x4")
#: Parameter counts the seed lists (millions); the seed's FLOPs are not given in the brief.
PUBLISHED = {
    ("IRN", 2): {"params_m": 1.7},
    ("IRN", 4): {"params_m": 4.4},
    ("RefScale", 2): {"params_m": 2.8},
    ("RefScale", 4): {"params_m": 3.5},
}


def architecture(name: str):
    """``(rescaler, source)``: the shipped model if its weights exist, else an untrained network
    of the architecture in ``configs/<name>.yaml``."""
    import yaml

    from georefscale.engine import (
        InvertibleRescaler,
        NetConfig,
        RefScaleNet,
        available_models,
        load,
    )

    if name in available_models():
        return load(name), "shipped"
    raw = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    net = RefScaleNet(NetConfig(**raw["net"]))
    return InvertibleRescaler(name, net, dtype=raw["dtype"], scale=raw["scale"]), "config"


def complexity(model, tile: int = 512, bands: int = 4) -> dict:
    """Parameters (total and reference encoder) and GFLOPs of each direction on one HR tile."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    bands = model.bands or bands
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(1, bands, tile, tile, generator=gen)
    ref = x.flip(-1) if model.uses_reference else None
    y, z = model.downscale(x, ref)

    def flops(fn) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return int(counter.get_total_flops())

    net = getattr(model, "net", None)
    params = sum(p.numel() for p in net.parameters()) if net is not None else 0
    encoder = getattr(net, "encoder", None)
    return {
        "model": model.name,
        "factor": model.factor,
        "uses_reference": model.uses_reference,
        "parameters": params,
        "encoder_parameters": sum(p.numel() for p in encoder.parameters()) if encoder else 0,
        "tile_hr": tile,
        "gflops_downscale": flops(lambda: model.downscale(x, ref)) / 1e9,
        "gflops_upscale": flops(lambda: model.upscale(y, ref, z)) / 1e9,
    }


def table(rows: list[dict]) -> str:
    """Markdown: ours (measured) and the seed's published parameter counts."""
    out = []
    for r in rows:
        out.append([r["model"] + (" (config)" if r.get("source") == "config" else ""),
                    f"x{r['factor']}", f"{r['parameters'] / 1e6:.3f}",
                    f"{r['encoder_parameters'] / 1e6:.3f}", f"{r['gflops_downscale']:.2f}",
                    f"{r['gflops_upscale']:.2f}"])
    for (name, factor), pub in PUBLISHED.items():
        out.append([f"{name} (seed, published)", f"x{factor}", f"{pub['params_m']:.1f}", "–",
                    "not given", "not given"])
    tile = rows[0]["tile_hr"] if rows else 0
    header = ["model", "factor", "params (M)", "of which ref. encoder (M)",
              f"GFLOPs down ({tile}² HR tile)", f"GFLOPs up ({tile}² HR tile)"]
    return md_table(header, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--model", action="append", default=None, help="models (default: all four)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    rows = []
    for name in args.model or MODELS:
        model, source = architecture(name)
        row = {**complexity(model, args.tile), "source": source}
        print(row)
        rows.append(row)
    result = {"experiment": "table1_complexity", "tile_hr": args.tile, "models": rows,
              "published": [{"method": k[0], "factor": k[1], **v} for k, v in PUBLISHED.items()],
              "notes": __doc__}
    write_outputs(args.out, "table1_complexity", result,
                  "Complexity: parameters and FLOPs (torch FlopCounterMode, 1 multiply-add = 2 "
                  "FLOPs)\n\n" + table(rows))


if __name__ == "__main__":
    main()
