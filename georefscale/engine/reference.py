"""Reference encoder: multi-scale features of the co-registered reference image.

The reference (N, C, H, W), on the target's HR grid and in the same normalised units, is Haar
squeezed once per factor 2. At each level the features are the raw Haar bands (so the detail of the
reference is directly available to the coupling subnets) concatenated with learned features.
"""

from __future__ import annotations

import torch
from torch import nn

from georefscale.engine.haar import squeeze


class ReferenceEncoder(nn.Module):
    """Features for each of ``levels`` Haar levels; level ``l`` is at 1/2**(l+1) of the HR size."""

    def __init__(self, bands: int, levels: int, features: int) -> None:
        super().__init__()
        self.levels = levels
        self.convs = nn.ModuleList()
        carried = 0
        for level in range(levels):
            raw = bands * 4 ** (level + 1)
            self.convs.append(
                nn.Sequential(
                    nn.Conv2d(raw + 4 * carried, features, 3, padding=1),
                    nn.LeakyReLU(0.2, inplace=True),
                    nn.Conv2d(features, features, 3, padding=1),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            carried = features
        self.bands = bands
        self.features = features

    def channels(self, level: int) -> int:
        """Number of feature channels handed to the subnets at ``level``."""
        return self.bands * 4 ** (level + 1) + self.features

    def forward(self, ref: torch.Tensor) -> list[torch.Tensor]:
        out = []
        raw = ref
        learned: torch.Tensor | None = None
        for level in range(self.levels):
            raw = squeeze(raw)
            inp = raw if learned is None else torch.cat([raw, squeeze(learned)], dim=1)
            learned = self.convs[level](inp).to(ref.dtype)  # fp32 under bf16 autocast
            out.append(torch.cat([raw, learned], dim=1))
        return out
