"""Upscale (ground) throughput of RefScale against the official IRN x4 architecture, same run.

IRN (Xiao et al., ECCV 2020) is rebuilt here from the paper's description for comparison only:
per factor 2 a Haar squeeze and 8 affine coupling blocks whose subnets are 5-layer dense blocks
(growth 32, LeakyReLU). Both networks get the same 4-band 512x512 tile; RefScale also carries the
reference. Prints a table and writes JSON (tiles/s and the ratio RefScale / IRN).

    python benchmarks/engine_speed.py [--tile 512] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from georefscale.engine import NetConfig, RefScaleNet, load
from georefscale.engine.haar import squeeze, unsqueeze
from georefscale.engine.profile import calls_per_second
from georefscale.engine.weights import MODELS_DIR


class DenseBlock(nn.Module):
    """IRN's subnet: five 3x3 convolutions with dense connections, growth ``gc``."""

    def __init__(self, cin: int, cout: int, gc: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin + i * gc, gc, 3, padding=1) for i in range(4))
        self.last = nn.Conv2d(cin + 4 * gc, cout, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        feats = [x]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return self.last(torch.cat(feats, 1))


class IRNBlock(nn.Module):
    def __init__(self, channels: int, split: int) -> None:
        super().__init__()
        self.split = split
        rest = channels - split
        self.f = DenseBlock(rest, split)
        self.g = DenseBlock(split, rest)
        self.h = DenseBlock(split, rest)

    def inverse(self, y):
        y1, y2 = y[:, : self.split], y[:, self.split :]
        s = 2 * torch.sigmoid(self.h(y1)) - 1
        x2 = (y2 - self.g(y1)) * torch.exp(-s)
        return torch.cat([y1 - self.f(x2), x2], 1)


class IRN(nn.Module):
    def __init__(self, bands: int = 4, levels: int = 2, blocks: int = 8) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.ModuleList(IRNBlock(bands * 4 ** (lv + 1), bands) for _ in range(blocks))
            for lv in range(levels)
        )

    @torch.no_grad()
    def inverse(self, y, z):
        h = torch.cat([y, z], 1)
        for blocks in reversed(self.stages):
            for block in reversed(blocks):
                h = block.inverse(h)
            h = unsqueeze(h)
        return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/engine_speed.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    t = args.tile
    x = 0.3 * torch.rand(1, 4, t, t)
    ref = x.roll(3, dims=-1)
    shipped = (MODELS_DIR / "refscale-s2-x4.safetensors").exists()
    if shipped:
        model = load("refscale-s2-x4")
        net = model.net
    else:  # same architecture, untrained weights: speed does not depend on the values
        net = RefScaleNet(NetConfig(factor=4)).eval()
    irn = IRN().eval()
    y, z = squeeze(squeeze(x))[:, :4], torch.randn(1, 60, t // 4, t // 4)
    with torch.no_grad():
        ours = calls_per_second(lambda: net.inverse(y, z * 0.01, ref), args.repeats)
    theirs = calls_per_second(lambda: irn.inverse(y, z), args.repeats)
    rows = {
        "tile": t,
        "threads": torch.get_num_threads(),
        "refscale_params": sum(p.numel() for p in net.parameters()),
        "irn_params": sum(p.numel() for p in irn.parameters()),
        "refscale_upscale_tiles_per_s": ours,
        "irn_upscale_tiles_per_s": theirs,
        "speedup_vs_irn": ours / theirs,
        "refscale_weights": "shipped" if shipped else "untrained (same architecture)",
    }
    for k, v in rows.items():
        print(f"{k:>30}: {v:.4g}" if isinstance(v, float) else f"{k:>30}: {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
