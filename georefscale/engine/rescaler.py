"""The interface every rescaler (RefScale, no-reference INN, bicubic) implements.

Tensors are float32 ``(N, C, H, W)`` in the model's normalised range (``DN / scale``). ``downscale``
takes the HR target and the reference aligned onto the same grid; ``upscale`` takes the LR image and
the same reference at HR size.
"""

from __future__ import annotations

import torch

from georefscale.errors import InputError


class Rescaler:
    """Base class: metadata plus the input checks shared by all rescalers."""

    name: str
    factor: int
    bands: int | None = None
    dtype: str | None = None
    scale: float | None = None
    uses_reference: bool = False
    #: the model card's ``temperature`` record (latent RMS, validation PSNR per alpha), if any
    temperature: dict | None = None
    #: the card's ``sampling_scale``: the latent is drawn as ``N(0, (alpha * sampling_scale)^2)``
    sampling_scale: float = 1.0

    def downscale(
        self, x: torch.Tensor, ref: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """HR ``x`` -> (LR ``y`` of size H/factor, latent ``z`` or None)."""
        raise NotImplementedError

    def upscale(
        self,
        y: torch.Tensor,
        ref: torch.Tensor | None,
        z: torch.Tensor | None = None,
        alpha: float = 1.0,
        seed: int | None = None,
    ) -> torch.Tensor:
        """LR ``y`` -> HR; ``z`` defaults to a sample of N(0, (alpha * sampling_scale)^2)
        drawn with ``seed``."""
        raise NotImplementedError

    def relevance(self, y: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor | None:
        """Where the reference is used, (N, 1, H, W) in [0, 1] at HR size; None if never."""
        return None

    # -- shared checks -------------------------------------------------------------------------
    def _check(self, what: str, t: torch.Tensor, multiple: int = 1) -> None:
        if t.ndim != 4:
            raise InputError(
                f"{self.name}: {what} must be (N, C, H, W), got shape {tuple(t.shape)}"
            )
        if self.bands is not None and t.shape[1] != self.bands:
            raise InputError(
                f"{self.name}: {what} has {t.shape[1]} bands, the model expects {self.bands}"
            )
        if t.shape[-1] % multiple or t.shape[-2] % multiple:
            raise InputError(
                f"{self.name}: {what} size {tuple(t.shape[-2:])} is not a multiple of {multiple}"
            )
        if not torch.isfinite(t).all():
            raise InputError(f"{self.name}: {what} contains NaN or infinite values")

    def _check_ref(self, ref: torch.Tensor | None, like: tuple[int, ...]) -> None:
        if not self.uses_reference:
            return
        if ref is None:
            raise InputError(f"{self.name}: this model needs a reference image")
        self._check("reference", ref)
        if tuple(ref.shape) != tuple(like):
            raise InputError(
                f"{self.name}: reference shape {tuple(ref.shape)} does not match the HR shape "
                f"{tuple(like)}"
            )


def sample_latent(
    shape: tuple[int, ...], alpha: float, seed: int | None, device: torch.device,
    scale: float = 1.0,
) -> torch.Tensor:
    """z ~ N(0, (alpha * scale)^2), ``scale`` the model card's ``sampling_scale``; drawn on the
    CPU so a given seed gives the same bits on every device. ``alpha * scale`` is formed first,
    so scale 1 gives the bits of N(0, alpha^2) and alpha 0 gives zeros at any scale."""
    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return ((alpha * scale) * torch.randn(shape, generator=gen, dtype=torch.float32)).to(device)


def quantize(y: torch.Tensor, scale: float, dtype: str) -> torch.Tensor:
    """Round ``y`` to the DN grid of ``dtype`` (clipped to its range), straight-through gradient."""
    lo, hi = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767)}[dtype]
    q = torch.clamp(torch.round(y * scale), lo, hi) / scale
    return y + (q - y).detach()
