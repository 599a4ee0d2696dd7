"""Model profile for ``georefscale info``: parameters, FLOPs (torch counter), throughput, and
what the model card measured of the sampling temperature."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from georefscale.engine.weights import load


def _flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def calls_per_second(fn: Callable[[], object], repeats: int) -> float:
    """Calls of ``fn`` per second over ``repeats`` timed calls, after one warm-up call (waits for
    queued CUDA work before and after timing, so GPU calls are timed to completion)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return repeats / (time.perf_counter() - t0)


def profile_model(name: str, tile: int = 512, bands: int = 4, repeats: int = 2) -> dict:
    """Parameters, GFLOPs and tiles/s of each direction for one ``tile`` x ``tile`` HR tile, the
    sampling scale of the latent (``z ~ N(0, (alpha * sampling_scale)^2)``) and the model card's
    latent RMS and validation PSNR (dB) per sampling temperature alpha (``psnr_unit_scale``:
    at scale 1, where the card records it).

    Inputs are random in [0, 0.3] (normalised reflectance-like); FLOPs do not depend on values.
    """
    model = load(name)
    bands = model.bands or bands
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(1, bands, tile, tile, generator=gen)
    ref = x.flip(-1) if model.uses_reference else None
    y, z = model.downscale(x, ref)
    net = getattr(model, "net", None)
    params = sum(p.numel() for p in net.parameters()) if net is not None else 0

    def down():
        model.downscale(x, ref)

    def up():
        model.upscale(y, ref, z, seed=0)

    report = {
        "model": name,
        "factor": model.factor,
        "bands": bands,
        "parameters": params,
        "tile_hr": tile,
        "gflops_downscale": round(_flops(down) / 1e9, 3),
        "gflops_upscale": round(_flops(up) / 1e9, 3),
        "tiles_per_s_downscale": round(calls_per_second(down, repeats), 3),
        "tiles_per_s_upscale": round(calls_per_second(up, repeats), 3),
        "device": str(getattr(model, "device", "cpu")),
        "threads": torch.get_num_threads(),
    }
    if net is not None:
        report["sampling_scale"] = round(model.sampling_scale, 4)
    if model.temperature:
        report["latent_rms"] = round(model.temperature["latent_rms"], 3)
        report["val_psnr_db_by_alpha"] = {
            a: round(v, 2) for a, v in model.temperature["psnr"].items()}
        if "psnr_unit_scale" in model.temperature:
            report["val_psnr_db_unit_scale"] = {
                a: round(v, 2) for a, v in model.temperature["psnr_unit_scale"].items()}
    return report
