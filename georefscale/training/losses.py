"""The three IRN losses, per pixel means in the normalised range.

- guidance: MSE between the LR ``y`` and the antialiased bicubic downscale of the target;
- reconstruction: L1 between the target and ``f^-1(Q(y), z ~ N(0, 1) | ref)``, ``Q`` the
  quantisation into the source dtype (straight-through), i.e. exactly what the ground side gets
  (with codec-aware training, on a share of the batches, what the link codec delivers for it:
  :mod:`georefscale.training.codec`);
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


def latent_noise(net: RefScaleNet, x: torch.Tensor) -> torch.Tensor:
    """A sample of z ~ N(0, 1) in the shape of the forward latent of the HR batch ``x``, drawn
    from the default generator of ``x``'s device (the same numbers as ``torch.randn_like(z)``).

    Args:
        net: the network being trained.
        x: HR batch (N, C, H, W).

    Returns:
        float32 tensor (N, latent channels, H / factor, W / factor) on ``x``'s device.
    """
    f = net.cfg.factor
    shape = (x.shape[0], net.latent_channels(), x.shape[-2] // f, x.shape[-1] // f)
    return torch.randn(shape, device=x.device)


def lr_terms(
    net: RefScaleNet,
    x: torch.Tensor,
    ref: torch.Tensor | None,
    scale: float,
    dtype: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The forward half of :func:`loss_terms`: the quantised LR and the losses on the forward.

    Args:
        net: the network being trained.
        x: HR batch (N, C, H, W) in the normalised range.
        ref: reference batch of the same shape, or None for a no-reference network.
        scale: DN per 1.0 of the normalised range.
        dtype: the source dtype the LR image is quantised into.

    Returns:
        ``Q(y)`` (N, C, H / factor, W / factor; straight-through rounding into ``dtype``, in
        the normalised range) and the ``guidance`` and ``latent`` losses (0-dim fp32 tensors).
    """
    y, z = net(x, ref)
    guidance = torch.mean((y - bicubic_downscale(x, net.cfg.factor)) ** 2)
    latent = torch.mean(z**2)
    return quantize(y, scale, dtype), {"guidance": guidance, "latent": latent}


def total_terms(
    net: RefScaleNet,
    x: torch.Tensor,
    lr: torch.Tensor,
    ref: torch.Tensor | None,
    noise: torch.Tensor,
    forward_parts: dict[str, torch.Tensor],
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The inverse half of :func:`loss_terms`: the reconstruction from ``lr`` and the total.

    Args:
        net: the network being trained.
        x: HR batch (N, C, H, W) in the normalised range.
        lr: the LR the ground side gets (normalised range), from :func:`lr_terms`, possibly
            put through the link codec.
        ref: reference batch, or None for a no-reference network.
        noise: the latent sample the inverse gets, see :func:`latent_noise`.
        forward_parts: the ``guidance`` and ``latent`` losses of :func:`lr_terms`.
        weights: weights of the three losses.

    Returns:
        The weighted total and the ``guidance``, ``reconstruction`` and ``latent`` losses,
        0-dim fp32 tensors.
    """
    x_hat = net.inverse(lr, noise, ref)
    reconstruction = torch.mean(torch.abs(x_hat - x))
    guidance, latent = forward_parts["guidance"], forward_parts["latent"]
    total = (
        weights.guidance * guidance
        + weights.reconstruction * reconstruction
        + weights.latent * latent
    )
    return total, {"guidance": guidance, "reconstruction": reconstruction, "latent": latent}


def loss_terms(
    net: RefScaleNet,
    x: torch.Tensor,
    ref: torch.Tensor | None,
    noise: torch.Tensor,
    scale: float,
    dtype: str,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its parts for one batch, as tensors (no host synchronisation, so the
    trainer can hand this function to ``torch.compile`` whole): :func:`lr_terms` then
    :func:`total_terms` on the quantised LR.

    Args:
        net: the network being trained.
        x: HR batch (N, C, H, W) in the normalised range.
        ref: reference batch of the same shape, or None for a no-reference network.
        noise: the latent sample the inverse gets, see :func:`latent_noise`.
        scale: DN per 1.0 of the normalised range.
        dtype: the source dtype the LR image is quantised into.
        weights: weights of the three losses.

    Returns:
        The weighted total and the ``guidance``, ``reconstruction`` and ``latent`` losses,
        0-dim fp32 tensors.
    """
    lr, forward_parts = lr_terms(net, x, ref, scale, dtype)
    return total_terms(net, x, lr, ref, noise, forward_parts, weights)


def irn_losses(
    net: RefScaleNet,
    x: torch.Tensor,
    ref: torch.Tensor | None,
    scale: float,
    dtype: str,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (as floats) for one batch, the latent sample drawn here.

    Args:
        net: the network being trained.
        x: HR batch (N, C, H, W) in the normalised range.
        ref: reference batch of the same shape, or None for a no-reference network.
        scale: DN per 1.0 of the normalised range.
        dtype: the source dtype the LR image is quantised into.
        weights: weights of the three losses.

    Returns:
        The weighted total (a tensor to call ``backward`` on) and the three losses as floats.
    """
    total, parts = loss_terms(net, x, ref, latent_noise(net, x), scale, dtype, weights)
    return total, {k: v.item() for k, v in parts.items()}
