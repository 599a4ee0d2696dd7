"""Recipe sweep: which loss weight moves the x4 reconstruction, measured by short fine-tunes.

Each variant starts from the same shipped model, trains ``--steps`` steps (AdamW, constant
``--lr``, the training pairs, crops and batch of ``configs/<model>.yaml``) with one change to the
IRN loss weights, and is then scored on central 384 px crops of the five OSCD test cities: PSNR
(dB, peak 10000 DN) at alpha = 0 and alpha = 1 (seed 0), and the LR image's PSNR against the
bicubic downscale. The control variant keeps the config's weights, so differences between rows
are effects of the weights, not of the extra steps.

Run: ``python docs/experiments/recipe_sweep.py [--model refscale-s2-x4] [--steps 300]``.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
from _common import DATA, OSCD_TEST, REPO, RESULTS, load_scene, md_table, sites, write_outputs

VARIANTS = {
    "control": {},
    "guidance 1": {"guidance": 1.0},
    "latent x10": {"latent_factor": 10.0},
}


def test_scores(net, scenes, scale: float, dtype: str) -> dict[str, float]:
    """Mean PSNR over ``scenes`` at alpha 0 and 1, and of the LR against bicubic (dB)."""
    import torch

    from georefscale.engine.baselines import bicubic_downscale
    from georefscale.engine.rescaler import quantize, sample_latent
    from georefscale.metrics import psnr

    out = {"alpha0": [], "alpha1": [], "lr": []}
    net.eval()
    with torch.no_grad():
        for s in scenes:
            x = torch.from_numpy(s.target / scale)[None]
            ref = torch.from_numpy(np.nan_to_num(s.reference) / scale)[None]
            r = ref if net.cfg.use_reference else None
            y, z = net(x, r)
            yq = quantize(y, scale, dtype)
            for alpha in (0.0, 1.0):
                hr = net.inverse(yq, sample_latent(z.shape, alpha, 0, "cpu"), r)
                out[f"alpha{alpha:g}"].append(psnr(hr[0].numpy(), x[0].numpy(), 1.0))
            out["lr"].append(psnr(y[0].numpy(), bicubic_downscale(x, net.cfg.factor)[0].numpy(),
                                  1.0))
    net.train()
    return {k: float(np.mean(v)) for k, v in out.items()}


def run_variant(base_net, cfg, data, change: dict, steps: int, lr: float, scenes) -> dict:
    import torch

    from georefscale.training.losses import LossWeights, irn_losses

    torch.manual_seed(cfg.seed)
    weights = LossWeights(
        guidance=change.get("guidance", cfg.loss.guidance),
        reconstruction=cfg.loss.reconstruction,
        latent=cfg.loss.latent * change.get("latent_factor", 1.0),
    )
    net = copy.deepcopy(base_net).train()
    data.rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    ref_on = cfg.net.use_reference
    t0 = time.perf_counter()
    for _ in range(steps):
        x, ref = data.batch(cfg.batch)
        loss, _ = irn_losses(net, x, ref if ref_on else None, cfg.scale, cfg.dtype, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
    return {"weights": weights.__dict__, "seconds": time.perf_counter() - t0,
            **test_scores(net, scenes, cfg.scale, cfg.dtype)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="refscale-s2-x4")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import torch

    from georefscale.engine import load
    from georefscale.training.data import PairCrops
    from georefscale.training.trainer import load_config, training_pairs

    torch.set_num_threads(a.threads)
    cfg = load_config(REPO / "configs" / f"{a.model}.yaml", data_root=DATA)
    data = PairCrops(training_pairs(cfg)[0], cfg.scale, cfg.crop, cfg.seed)
    base = load(a.model).net
    scenes = [load_scene(s, cfg.net.factor, crop=384) for s in sites("oscd", OSCD_TEST)]
    rows = {"start (shipped)": test_scores(base, scenes, cfg.scale, cfg.dtype)}
    for name, change in VARIANTS.items():
        rows[name] = run_variant(base, cfg, data, change, a.steps, a.lr, scenes)
        print(name, {k: round(v, 3) for k, v in rows[name].items() if isinstance(v, float)},
              flush=True)
    result = {"model": a.model, "steps": a.steps, "lr": a.lr, "variants": rows}
    table = md_table(
        ["variant", "PSNR alpha=0", "PSNR alpha=1", "LR vs bicubic"],
        [[n, f"{r['alpha0']:.2f}", f"{r['alpha1']:.2f}", f"{r['lr']:.1f}"]
         for n, r in rows.items()],
    )
    md = (f"{a.model}: {a.steps} fine-tuning steps per variant (lr {a.lr:g}); mean PSNR (dB) "
          f"over central 384 px crops of the five OSCD test cities.\n\n{table}\n")
    write_outputs(RESULTS, f"recipe_sweep_{a.model}", result, md)


if __name__ == "__main__":
    main()
