"""Conditional affine coupling blocks in the IRN form, optionally conditioned on a reference.

Forward (``x = [x1, x2]``, ``x1`` the low-pass channels)::

    y1 = x1 + F(x2 | r)
    s  = clamp * (2 * sigmoid(H(y1 | r)) - 1)
    y2 = x2 * exp(s) + G(y1 | r)

Each subnet sees the reference features ``r`` through a learned per-pixel gate in [0, 1] computed
from its own input and ``r``: where the reference disagrees with the scene (changed land, clouds,
misregistration) the gate closes and the block falls back to the no-reference path. The gate only
depends on the half that is passed through unchanged, so the block stays exactly invertible.

Mixed precision (training only): under ``torch.autocast(..., dtype=torch.bfloat16)`` the subnet
convolutions run in bf16 but return in the dtype of their input, so the coupling itself (the
additions, ``exp`` and ``sigmoid`` of the scale) is computed in fp32 as in inference.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedSubnet(nn.Module):
    """Three 3x3 convolutions; the last one starts at zero so a fresh block is the identity."""

    def __init__(self, in_ch: int, out_ch: int, ref_ch: int, hidden: int) -> None:
        super().__init__()
        self.ref_ch = ref_ch
        if ref_ch:
            self.gate = nn.Conv2d(in_ch + ref_ch, 1, 3, padding=1)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, 0.0)
        self.body = nn.Sequential(
            nn.Conv2d(in_ch + ref_ch, hidden, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, out_ch, 3, padding=1),
        )
        last = self.body[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.last_gate: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """The subnet's output for input ``h`` and reference features ``ref``, in the dtype of
        ``h``: under bf16 autocast (training) the convolutions run in bf16 while the coupling
        arithmetic around them stays in fp32; in fp32 the cast is a no-op."""
        if not self.ref_ch:
            return self.body(h).to(h.dtype)
        g = torch.sigmoid(self.gate(torch.cat([h, ref], dim=1)))
        self.last_gate = g.detach()
        return self.body(torch.cat([h, g * ref], dim=1)).to(h.dtype)


class CouplingBlock(nn.Module):
    """One invertible block on ``channels`` channels, of which the first ``split`` are low-pass."""

    def __init__(
        self, channels: int, split: int, ref_ch: int, hidden: int, clamp: float
    ) -> None:
        super().__init__()
        self.split = split
        self.clamp = clamp
        rest = channels - split
        self.f = GatedSubnet(rest, split, ref_ch, hidden)
        self.g = GatedSubnet(split, rest, ref_ch, hidden)
        self.h = GatedSubnet(split, rest, ref_ch, hidden)

    def _scale(self, y1: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        return self.clamp * (2 * torch.sigmoid(self.h(y1, ref)) - 1)

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        y1 = x1 + self.f(x2, ref)
        y2 = x2 * torch.exp(self._scale(y1, ref)) + self.g(y1, ref)
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        y1, y2 = y[:, : self.split], y[:, self.split :]
        x2 = (y2 - self.g(y1, ref)) * torch.exp(-self._scale(y1, ref))
        x1 = y1 - self.f(x2, ref)
        return torch.cat([x1, x2], dim=1)

    def gates(self) -> list[torch.Tensor]:
        """Reference gates of the last pass, (N, 1, h, w) each; empty without a reference."""
        return [n.last_gate for n in (self.f, self.g, self.h) if n.last_gate is not None]
