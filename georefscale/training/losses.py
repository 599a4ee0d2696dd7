"""The three IRN losses, per pixel means in the normalised range.

- guidance: MSE between the LR ``y`` and the antialiased bicubic downscale of the target;
- reconstruction: L1 between the target and ``f^-1(Q(y), z ~ N(0, 1) | ref)``, ``Q`` the
  quantisation into the source dtype (straight-through), i.e. exactly what the ground side gets;
- latent: mean of ``z^2`` (pushes the latent towards the N(0, 1) it is replaced with).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from georefscale.engine.baselines import bicubic_downscale
from georefscale.engine.refscale import RefScaleNet
from georefscale.engine.rescaler import quantize


@dataclass(frozen=True)
class LossWeights:
    guidance: float = 10.0
    reconstruction: float = 1.0
    latent: float = 0.001


def irn_losses(
    net: RefScaleNet,
    x: torch.Tensor,
    ref: torch.Tensor | None,
    scale: float,
    dtype: str,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts for one batch."""
    y, z = net(x, ref)
    guidance = torch.mean((y - bicubic_downscale(x, net.cfg.factor)) ** 2)
    latent = torch.mean(z**2)
    x_hat = net.inverse(quantize(y, scale, dtype), torch.randn_like(z), ref)
    reconstruction = torch.mean(torch.abs(x_hat - x))
    total = (
        weights.guidance * guidance
        + weights.reconstruction * reconstruction
        + weights.latent * latent
    )
    parts = {
        "guidance": guidance.item(),
        "reconstruction": reconstruction.item(),
        "latent": latent.item(),
    }
    return total, parts
