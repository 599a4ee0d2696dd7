"""Codec-aware training: does the training-time JPEG 2000 coding track what a scene sees, and what
does it cost per step?

Tracking: the LR of each OSCD test city (the antialiased bicubic x4 downscale of its newest date,
rounded to uint16 DN: the shipped models' LR is 48 dB from it) is coded whole at each quality
(``georefscale.codecs``, % of the raw LR, as ``rd`` codes an LR product), and the same LRs cut
into the trainer's 16 px crops (random positions, ``--crops`` per city, batches of 8) are coded
three ways: the trainer's coding (the batch as one mosaic at the compensated quality,
:func:`georefscale.training.codec.code_crops`), the mosaic at the nominal quality and each crop
alone at the nominal quality. PSNR of decoded against original LR, peak 10000 DN, MSE pooled over
the cities.

Cost: the ``--config`` recipe (default refscale-s2-x4-jp2, its training sites cut to ``--site``)
trained for ``--warmup`` + ``--steps`` steps, 1 thread, without the codec, with its own share,
and with every batch coded; the median of the trainer's step clock after the warm-up (which
holds ``torch.compile``'s compilation); plus the codec's own time per batch.

    python benchmarks/codec_training.py [--rates 1 2 5 10 20 40] [--steps 30] [--no-cost]

Prints the tables and writes ``benchmarks/results/codec_training.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch

from georefscale import codecs
from georefscale.atomic import write_json
from georefscale.engine.baselines import bicubic_downscale
from georefscale.evaluation.sites import dated_files
from georefscale.sample_stac import TEST_CITIES
from georefscale.training import load_config, train
from georefscale.training.codec import CodecConfig, code_crops, mosaic, mosaic_quality

REPO = Path(__file__).resolve().parents[1]
PEAK = 10000.0
#: crops per training batch (the recipes' ``batch``) and LR crop side (64 px HR crop at x4)
BATCH, CROP = 8, 16


def scene_lrs(folder: Path) -> dict[str, np.ndarray]:
    """uint16 LR (C, h, w) of the newest date of each test city: bicubic x4, rounded."""
    out = {}
    for city, dates in dated_files(folder).items():
        if city not in TEST_CITIES:
            continue
        with rasterio.open(dates[-1][1]) as src:
            hr = src.read()
        h, w = hr.shape[1] // 4 * 4, hr.shape[2] // 4 * 4
        x = torch.from_numpy(hr[:, :h, :w].astype(np.float32) / PEAK)[None]
        lr = bicubic_downscale(x, 4)[0].numpy() * PEAK
        out[city] = np.clip(np.rint(lr), 0, 65535).astype(np.uint16)
    return out


def crop_batches(lr: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random 16 px crops of ``lr`` in batches (8, C, 16, 16)."""
    crops = []
    for _ in range(count):
        i = int(rng.integers(0, lr.shape[1] - CROP + 1))
        j = int(rng.integers(0, lr.shape[2] - CROP + 1))
        crops.append(lr[:, i:i + CROP, j:j + CROP])
    return [np.stack(crops[k:k + BATCH]) for k in range(0, count, BATCH)]


def pooled_psnr(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """PSNR (dB, peak 10000 DN) of the MSE pooled over all pixels of all (original, decoded)."""
    sq = sum(float(np.sum((a.astype(np.float64) - b) ** 2)) for a, b in pairs)
    mse = sq / sum(a.size for a, _ in pairs)
    return 10 * math.log10(PEAK**2 / mse)


def jp2(image: np.ndarray, quality: float) -> np.ndarray:
    """``image`` (C, h, w) through JPEG 2000 at ``quality`` (% of raw) and back."""
    return codecs.decode(codecs.encode(image, "jpeg2000", quality))


def tracking(lrs: dict[str, np.ndarray], rates: list[float], crops: int) -> list[dict]:
    """One row per quality: PSNR (dB) of whole scenes and of the three ways to code crops."""
    rng = np.random.default_rng(0)
    batches = [b for lr in lrs.values() for b in crop_batches(lr, crops, rng)]
    rows = []
    for q in rates:
        row = {
            "quality": q,
            "scene_db": pooled_psnr([(lr, jp2(lr, q)) for lr in lrs.values()]),
            "trainer_mosaic_db": pooled_psnr([(b, code_crops(b, "jpeg2000", q)) for b in batches]),
            "mosaic_nominal_db": pooled_psnr([(mosaic(b), jp2(mosaic(b), q)) for b in batches]),
            "per_crop_nominal_db": pooled_psnr([(c, jp2(c, q)) for b in batches for c in b]),
            "trainer_quality": mosaic_quality(q, mosaic(batches[0]).shape, "uint16"),
        }
        rows.append({k: round(v, 3) for k, v in row.items()})
    return rows


def step_seconds(args: argparse.Namespace, codec: CodecConfig | None) -> list[float]:
    """The trainer's step times (s) after the warm-up, the recipe with ``codec``, 1 thread."""
    cfg = load_config(REPO / "configs" / f"{args.config}.yaml", args.data_root)
    cfg = dataclasses.replace(cfg, train_sites=args.sites, val_sites=args.sites,
                              val_every=10**9, threads=1, codec=codec)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, device="cpu", progress=False, max_steps=args.warmup + args.steps)
        records = [json.loads(line) for line in (Path(tmp) / "log.jsonl").open()]
    return [r["seconds"] for r in records[args.warmup:]]


def codec_seconds(lrs: dict[str, np.ndarray], repeats: int = 50) -> float:
    """Median seconds to code and decode one training batch's LR mosaic (at 10 %)."""
    batch = crop_batches(next(iter(lrs.values())), BATCH, np.random.default_rng(1))[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        code_crops(batch, "jpeg2000", 10.0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cost(args: argparse.Namespace, lrs: dict[str, np.ndarray]) -> dict:
    """Median step time without the codec, with the recipe's share and with every batch coded."""
    recipe = load_config(REPO / "configs" / f"{args.config}.yaml", args.data_root).codec
    runs = {"no codec": None, f"share {recipe.share:g}": recipe,
            "share 1": dataclasses.replace(recipe, share=1.0)}
    medians = {k: statistics.median(step_seconds(args, c)) for k, c in runs.items()}
    base = medians["no codec"]
    return {"config": args.config, "sites": args.sites, "threads": 1,
            "steps_timed": args.steps, "warmup": args.warmup,
            "codec_s_per_batch": round(codec_seconds(lrs), 5),
            "s_per_step_median": {k: round(v, 4) for k, v in medians.items()},
            "ratio_to_no_codec": {k: round(v / base, 3) for k, v in medians.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[1, 2, 5, 10, 20, 40])
    ap.add_argument("--crops", type=int, default=48, help="16 px crops per city")
    ap.add_argument("--config", default="refscale-s2-x4-jp2")
    ap.add_argument("--site", dest="sites", action="append", default=None)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--no-cost", action="store_true", help="tracking table only")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/codec_training.json"))
    args = ap.parse_args()
    args.sites = args.sites or ["pisa"]
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    folder = Path(load_config(REPO / "configs" / f"{args.config}.yaml", args.data_root).folder)
    lrs = scene_lrs(folder)
    rows = tracking(lrs, args.rates, args.crops)
    print("LR PSNR (dB) after JPEG 2000, test cities " + ", ".join(lrs))
    print(f"{'quality %':>9} {'scene':>7} {'trainer':>8} {'(at %)':>7} {'mosaic':>7} "
          f"{'per crop':>8}")
    for r in rows:
        print(f"{r['quality']:>9g} {r['scene_db']:>7.2f} {r['trainer_mosaic_db']:>8.2f} "
              f"{r['trainer_quality']:>7.2f} {r['mosaic_nominal_db']:>7.2f} "
              f"{r['per_crop_nominal_db']:>8.2f}")
    result = {"cities": list(lrs), "lr": "bicubic x4 of the newest date, uint16 DN",
              "crops_per_city": args.crops, "batch": BATCH, "crop_lr_px": CROP,
              "psnr_peak_dn": PEAK, "tracking": rows,
              "torch": torch.__version__, "gdal": rasterio.__gdal_version__}
    if not args.no_cost:
        result["cost"] = cost(args, lrs)
        c = result["cost"]
        print(f"codec per batch: {1000 * c['codec_s_per_batch']:.1f} ms")
        for k, v in c["s_per_step_median"].items():
            print(f"{k:>10}: {v:.4f} s/step ({c['ratio_to_no_codec'][k]:.3f}x)")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
