"""Upscale (ground) throughput of RefScale against the official IRN x4 architecture, same run.

IRN (Xiao et al., ECCV 2020) is rebuilt here from the paper's description for comparison only:
per factor 2 a Haar squeeze and 8 affine coupling blocks whose subnets are 5-layer dense blocks
(growth 32, LeakyReLU). Both networks get the same 4-band 512x512 tile; RefScale also carries the
reference. RefScale has the architecture of ``configs/refscale-s2-x4.yaml`` (the shipped weights
when they have it; speed does not depend on the values). Prints a table and writes JSON (tiles/s
and the ratio RefScale / IRN).

On ``--device cuda`` it measures batches of 1 and 8 tiles in three precisions: fp32 (IEEE, what
the library uses), TF32 convolutions (PyTorch's default) and bf16 autocast, and how far the TF32
and bf16 reconstructions are from the fp32 one (PSNR, peak 1.0 = reflectance 1).

    python benchmarks/engine_speed.py [--device cpu|cuda] [--tile 512] [--repeats 3] [--out F]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import yaml
from torch import nn

from georefscale.engine import NetConfig, RefScaleNet, load
from georefscale.engine.haar import squeeze, unsqueeze
from georefscale.engine.profile import calls_per_second
from georefscale.engine.weights import MODELS_DIR

REPO = Path(__file__).resolve().parents[1]


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


def refscale_net() -> tuple[RefScaleNet, str]:
    """The x4 architecture of the shipped recipe, with the shipped weights if they fit it."""
    cfg = NetConfig(**yaml.safe_load((REPO / "configs/refscale-s2-x4.yaml").read_text())["net"])
    if (MODELS_DIR / "refscale-s2-x4.safetensors").exists():
        model = load("refscale-s2-x4")
        if model.net.cfg == cfg:
            return model.net, "shipped"
    return RefScaleNet(cfg).eval(), "untrained (same architecture)"


def precision(name: str):
    """Context for one precision on CUDA: fp32 (IEEE), tf32 (cuDNN default) or bf16 autocast."""
    torch.backends.cudnn.conv.fp32_precision = "tf32" if name == "tf32" else "ieee"
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=name == "bf16")


def cpu_rows(net: RefScaleNet, irn: IRN, t: int, repeats: int) -> dict:
    x, ref, y, z = inputs(1, t, "cpu")
    with torch.no_grad():
        ours = calls_per_second(lambda: net.inverse(y, z * 0.01, ref), repeats)
    theirs = calls_per_second(lambda: irn.inverse(y, z), repeats)
    return {
        "refscale_upscale_tiles_per_s": ours,
        "irn_upscale_tiles_per_s": theirs,
        "speedup_vs_irn": ours / theirs,
    }


def cuda_rows(net: RefScaleNet, irn: IRN, t: int, repeats: int) -> dict:
    net, irn = net.cuda(), irn.cuda()
    rows = {"gpu": torch.cuda.get_device_name()}
    for batch in (1, 8):
        tensors = inputs(batch, t, "cuda")
        exact = None
        for name in ("fp32", "tf32", "bf16"):
            ours, theirs, down, out = one_precision(net, irn, tensors, name, repeats)
            key = f"b{batch}_{name}"
            rows[f"{key}_refscale_upscale_tiles_per_s"] = ours * batch
            rows[f"{key}_refscale_downscale_tiles_per_s"] = down * batch
            rows[f"{key}_irn_upscale_tiles_per_s"] = theirs * batch
            rows[f"{key}_speedup_vs_irn"] = ours / theirs
            if exact is None:
                exact = out
            else:
                mse = torch.mean((out - exact) ** 2).item()
                rows[f"{key}_psnr_vs_fp32_db"] = 10 * math.log10(1 / mse) if mse else math.inf
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    return rows


@torch.no_grad()
def one_precision(net: RefScaleNet, irn: IRN, tensors, name: str, repeats: int) -> tuple:
    """RefScale upscale, IRN upscale and RefScale downscale calls/s, and RefScale's output."""
    x, ref, y, z = tensors
    with precision(name):
        ours = calls_per_second(lambda: net.inverse(y, z * 0.01, ref), repeats)
        theirs = calls_per_second(lambda: irn.inverse(y, z), repeats)
        down = calls_per_second(lambda: net(x, ref), repeats)
        return ours, theirs, down, net.inverse(y, z * 0.01, ref).float()


def inputs(batch: int, t: int, device: str) -> tuple[torch.Tensor, ...]:
    """A random reflectance-like tile, a shifted copy as reference, its LR part and a latent."""
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(batch, 4, t, t, generator=gen)
    z = torch.randn(batch, 60, t // 4, t // 4, generator=gen)
    return tuple(v.to(device) for v in (x, x.roll(3, dims=-1), squeeze(squeeze(x))[:, :4], z))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/results/engine_speed[_cuda].json)")
    args = ap.parse_args()
    torch.manual_seed(0)
    net, weights = refscale_net()
    irn = IRN().eval()
    rows = {
        "device": args.device,
        "tile": args.tile,
        "threads": torch.get_num_threads(),
        "refscale_params": sum(p.numel() for p in net.parameters()),
        "irn_params": sum(p.numel() for p in irn.parameters()),
        "refscale_weights": weights,
        "torch": torch.__version__,
    }
    measure = cuda_rows if args.device == "cuda" else cpu_rows
    rows.update(measure(net, irn, args.tile, args.repeats))
    for k, v in rows.items():
        print(f"{k:>42}: {v:.4g}" if isinstance(v, float) else f"{k:>42}: {v}")
    suffix = "_cuda" if args.device == "cuda" else ""
    out = Path(args.out or REPO / f"benchmarks/results/engine_speed{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
