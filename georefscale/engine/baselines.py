"""Baselines behind the :class:`~georefscale.engine.rescaler.Rescaler` interface.

``BicubicRescaler``: antialiased bicubic downscale, bicubic upscale (no latent, no reference).
The no-reference INN (IRN-style) is :class:`~georefscale.engine.refscale.InvertibleRescaler` with
``use_reference=False``; it is shipped as the ``noref-*`` models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from georefscale.engine.rescaler import Rescaler
from georefscale.errors import InputError


class BicubicRescaler(Rescaler):
    """Antialiased bicubic in both directions; works for any band count, dtype and scale."""

    uses_reference = False

    def __init__(self, factor: int) -> None:
        if factor not in (2, 4):
            raise InputError(f"bicubic: factor must be 2 or 4, got {factor}")
        self.factor = factor
        self.name = "bicubic"

    def downscale(
        self, x: torch.Tensor, ref: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        self._check("target", x, self.factor)
        return bicubic_downscale(x, self.factor), None

    def upscale(
        self,
        y: torch.Tensor,
        ref: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        alpha: float = 1.0,
        seed: int | None = None,
    ) -> torch.Tensor:
        self._check("LR image", y)
        return F.interpolate(y, scale_factor=self.factor, mode="bicubic", align_corners=False)


def bicubic_downscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The LR guidance target used in training: antialiased bicubic, (N, C, H/f, W/f)."""
    return F.interpolate(
        x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False
    )
