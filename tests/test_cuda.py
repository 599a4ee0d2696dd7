"""CUDA (skipped without a GPU): same results as the CPU, exact inverse, training in bf16."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from georefscale.engine import InvertibleRescaler, NetConfig, RefScaleNet, sample_latent
from georefscale.engine.weights import load_file_model
from georefscale.training import TrainConfig, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _rescalers(factor: int) -> tuple[InvertibleRescaler, InvertibleRescaler]:
    torch.manual_seed(0)
    net = RefScaleNet(NetConfig(factor=factor))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cpu = InvertibleRescaler("t", net, dtype="uint16", scale=10000.0)
    gpu = InvertibleRescaler("t", copy.deepcopy(net), dtype="uint16", scale=10000.0,
                             device="cuda")
    return cpu, gpu


@pytest.mark.parametrize("factor", [2, 4])
def test_cuda_agrees_with_cpu_across_the_link(factor):
    cpu, gpu = _rescalers(factor)
    gen = torch.Generator().manual_seed(1)
    x = 0.4 * torch.rand(2, 4, 64, 64, generator=gen)
    ref = 0.8 * x + 0.05 * torch.rand(2, 4, 64, 64, generator=gen)
    y_cpu, _ = cpu.downscale(x, ref)
    y_gpu, z_gpu = gpu.downscale(x, ref)
    # 1 DN of uint16 reflectance is 1e-4: on-board LR products agree far below that
    assert (y_gpu.cpu() - y_cpu).abs().max().item() < 1e-5
    assert y_gpu.device.type == "cpu"  # results come back where the input came from
    # an LR product made on the CPU rebuilds on the GPU as on the CPU (same seed, same bits of z)
    hr_cpu = cpu.upscale(y_cpu, ref, seed=3)
    hr_gpu = gpu.upscale(y_cpu, ref, seed=3)
    assert (hr_gpu.cpu() - hr_cpu).abs().max().item() < 1e-4
    assert (gpu.upscale(y_gpu, ref, z=z_gpu).cpu() - x).abs().max().item() < 1e-4


def test_latent_sample_has_the_same_bits_on_cuda():
    a = sample_latent((2, 60, 8, 8), 0.7, 11, torch.device("cpu"))
    b = sample_latent((2, 60, 8, 8), 0.7, 11, torch.device("cuda"))
    assert torch.equal(a, b.cpu())


def test_training_runs_and_resumes_on_cuda_in_bf16_and_loads_on_cpu(oscd_dir, tmp_path):
    cfg = TrainConfig(
        name="tiny-cuda", folder=str(oscd_dir), dtype="uint16", scale=10000.0,
        band_names=["B02", "B03", "B04", "B08"],
        net=NetConfig(factor=4, blocks=1, hidden=8, ref_features=4),
        train_sites=["pisa"], val_sites=["bercy"], steps=6, batch=4, crop=32, warmup=2,
        val_every=3, val_crop=64, ckpt_every=2, threads=2, compile=False,
    )
    part = train(cfg, tmp_path, device="cuda", progress=False, max_steps=3)
    assert part.name == "checkpoint.sft"
    weights = train(cfg, tmp_path, device="cuda", progress=False)  # resumes on the GPU
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["training"]["device"] == "cuda"
    assert card["validation"]["psnr"] > 20
    model = load_file_model(weights, card)
    x = 0.3 * torch.rand(1, 4, 32, 32)
    y, z = model.downscale(x, x)
    assert (model.upscale(y, x, z=z) - x).abs().max().item() < 1e-4


def test_pipeline_on_cuda_makes_the_cpu_products(oscd_dir, tmp_path):
    import numpy as np
    import rasterio

    from georefscale.api import ground, onboard
    from georefscale.engine import load

    target, ref = oscd_dir / "bercy_20170829.tif", oscd_dir / "bercy_20161130.tif"
    out = {}
    for device in ("cpu", "cuda"):
        model = load("refscale-s2-x4", device=device)
        lr = onboard(target, ref, out=tmp_path / f"lr_{device}.tif", model=model)
        # both sides rebuild the CPU-made product
        hr = ground(tmp_path / "lr_cpu.tif", ref, out=tmp_path / f"hr_{device}.tif", model=model)
        for name, path in (("lr", lr), ("hr", hr)):
            with rasterio.open(path) as src:
                out[name, device] = src.read().astype(np.int64)
    for name in ("lr", "hr"):
        diff = np.abs(out[name, "cuda"] - out[name, "cpu"])
        assert diff.max() <= 1  # DN: only roundings of values within 1e-5 of a half DN
        assert (diff > 0).mean() < 1e-3


def test_two_layer_product_made_on_the_cpu_grounds_on_cuda_or_is_refused(oscd_dir, tmp_path):
    """The near-lossless bound survives a change of device, or the ground refuses (naming the
    tile rows whose rebuild differs) and writes nothing: never a silently wrong HR."""
    import numpy as np
    import rasterio

    from georefscale.api import ground, onboard
    from georefscale.engine import load
    from georefscale.errors import InputError
    from georefscale.options import FallbackPolicy, OnboardOptions, RateTarget

    target, ref = oscd_dir / "bercy_20170829.tif", oscd_dir / "bercy_20161130.tif"
    name, twin = "refscale-s2-x4-jp2", "noref-s2-x4-jp2"
    lr = onboard(target, ref, out=tmp_path / "lr.jp2", options=OnboardOptions(
        model=load(name, device="cpu"), rate=RateTarget(max_error=3, direct=False),
        fallback=FallbackPolicy(noref_model=load(twin, device="cpu"))))
    out = tmp_path / "hr.tif"
    try:
        ground(lr, ref, out=out, model=load(name, device="cuda"),
               noref_model=load(twin, device="cuda"))
    except InputError as exc:
        assert "differs from the one made on board in tile rows" in str(exc)
        assert not out.exists()
        return
    with rasterio.open(target) as t, rasterio.open(out) as h:
        valid = t.read_masks() > 0
        err = np.abs(h.read().astype(np.int64) - t.read().astype(np.int64))[valid]
    assert err.max() <= 3
