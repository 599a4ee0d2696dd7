"""Invertible Haar squeeze: (N, C, H, W) <-> (N, 4C, H/2, W/2).

Channel order of the squeezed tensor is ``[LL, LH, HL, HH]``, each block C channels, so the first C
channels are the 2x2 block means (a plain box downscale) and the rest the high-frequency detail.
"""

from __future__ import annotations

import torch


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Haar analysis of ``x`` (H, W even); exactly inverted by :func:`unsqueeze`."""
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    ll = (a + b + c + d) / 4
    lh = (a - b + c - d) / 4
    hl = (a + b - c - d) / 4
    hh = (a - b - c + d) / 4
    return torch.cat([ll, lh, hl, hh], dim=1)


def unsqueeze(s: torch.Tensor) -> torch.Tensor:
    """Haar synthesis, the inverse of :func:`squeeze`."""
    ll, lh, hl, hh = torch.chunk(s, 4, dim=1)
    n, c, h, w = ll.shape
    x = ll.new_empty((n, c, 2 * h, 2 * w))
    x[..., 0::2, 0::2] = ll + lh + hl + hh
    x[..., 0::2, 1::2] = ll - lh + hl - hh
    x[..., 1::2, 0::2] = ll + lh - hl - hh
    x[..., 1::2, 1::2] = ll - lh - hl + hh
    return x
