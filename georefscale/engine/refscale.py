"""RefScale: a reference-conditioned invertible rescaling network (and its no-reference twin).

``forward(x | ref) -> (y, z)``: per factor 2, a Haar squeeze then ``blocks`` coupling blocks;
after the last level the first C channels are the LR image ``y`` and the rest the latent ``z``.
``inverse(y, z | ref) -> x`` runs the same blocks backwards, exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from georefscale.engine.coupling import CouplingBlock
from georefscale.engine.haar import squeeze, unsqueeze
from georefscale.engine.reference import ReferenceEncoder
from georefscale.engine.rescaler import Rescaler, sample_latent


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a RefScale / no-reference network (stored in the model card)."""

    bands: int = 4
    factor: int = 4
    blocks: int = 4
    hidden: int = 32
    ref_features: int = 16
    clamp: float = 2.0
    use_reference: bool = True
    #: fixed scale between the network's high-frequency channels and the N(0, 1) latent:
    #: ``z = h / latent_scale``; about the size of image detail in the normalised range, so that a
    #: fresh network starts as a Haar downscale plus detail-sized noise instead of unit noise.
    latent_scale: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)


class RefScaleNet(nn.Module):
    """The invertible network; ``use_reference=False`` gives the IRN-style baseline."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        if cfg.factor not in (2, 4):
            raise ValueError(f"factor must be 2 or 4, got {cfg.factor}")
        self.cfg = cfg
        self.levels = {2: 1, 4: 2}[cfg.factor]
        self.encoder = (
            ReferenceEncoder(cfg.bands, self.levels, cfg.ref_features)
            if cfg.use_reference
            else None
        )
        self.stages = nn.ModuleList()
        for level in range(self.levels):
            channels = cfg.bands * 4 ** (level + 1)
            ref_ch = self.encoder.channels(level) if self.encoder is not None else 0
            self.stages.append(
                nn.ModuleList(
                    CouplingBlock(channels, cfg.bands, ref_ch, cfg.hidden, cfg.clamp)
                    for _ in range(cfg.blocks)
                )
            )

    def _features(self, ref: torch.Tensor | None) -> list[torch.Tensor | None]:
        if self.encoder is None:
            return [None] * self.levels
        return self.encoder(ref)

    def forward(
        self, x: torch.Tensor, ref: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self._features(ref)
        h = x
        for level, blocks in enumerate(self.stages):
            h = squeeze(h)
            for block in blocks:
                h = block(h, feats[level])
        c = self.cfg.bands
        return h[:, :c], h[:, c:] / self.cfg.latent_scale

    def inverse(
        self, y: torch.Tensor, z: torch.Tensor, ref: torch.Tensor | None
    ) -> torch.Tensor:
        feats = self._features(ref)
        h = torch.cat([y, z * self.cfg.latent_scale], dim=1)
        for level in reversed(range(self.levels)):
            for block in reversed(self.stages[level]):
                h = block.inverse(h, feats[level])
            h = unsqueeze(h)
        return h

    def latent_channels(self) -> int:
        return self.cfg.bands * (4**self.levels - 1)

    def gate_map(self) -> torch.Tensor | None:
        """Mean reference gate of the last pass at the finest level, (N, 1, H/2, W/2)."""
        gates = [g for block in self.stages[0] for g in block.gates()]
        if not gates:
            return None
        return torch.stack(gates).mean(dim=0)


class InvertibleRescaler(Rescaler):
    """A trained :class:`RefScaleNet` behind the rescaler interface (inference only, no grad).

    The network runs on ``device``; results come back on the device of the input (CPU tensors in,
    CPU tensors out). On a CUDA device, cuDNN convolutions of this process are switched to full
    fp32 (IEEE) precision: with PyTorch's default TF32 the LR product and the reconstruction would
    depend on which GPU (or CPU) computed them, and the two sides of the link must agree.
    """

    def __init__(
        self,
        name: str,
        net: RefScaleNet,
        *,
        dtype: str | None,
        scale: float | None,
        device: str | torch.device = "cpu",
        temperature: dict | None = None,
        sampling_scale: float = 1.0,
    ) -> None:
        self.name = name
        self.temperature = temperature
        self.sampling_scale = sampling_scale
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        self.factor = net.cfg.factor
        self.bands = net.cfg.bands
        self.dtype = dtype
        self.scale = scale
        self.uses_reference = net.cfg.use_reference

    def _ref(self, ref: torch.Tensor | None) -> torch.Tensor | None:
        return ref.to(self.device) if self.uses_reference else None

    @torch.no_grad()
    def downscale(
        self, x: torch.Tensor, ref: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check("target", x, self.factor)
        self._check_ref(ref, tuple(x.shape))
        y, z = self.net(x.to(self.device), self._ref(ref))
        return y.to(x.device), z.to(x.device)

    @torch.no_grad()
    def upscale(
        self,
        y: torch.Tensor,
        ref: torch.Tensor | None,
        z: torch.Tensor | None = None,
        alpha: float = 1.0,
        seed: int | None = None,
    ) -> torch.Tensor:
        self._check("LR image", y)
        n, _, h, w = y.shape
        hr_shape = (n, self.bands, h * self.factor, w * self.factor)
        self._check_ref(ref, hr_shape)
        if z is None:
            shape = (n, self.net.latent_channels(), h, w)
            z = sample_latent(shape, alpha, seed, self.device, self.sampling_scale)
        x = self.net.inverse(y.to(self.device), z.to(self.device), self._ref(ref))
        return x.to(y.device)

    @torch.no_grad()
    def relevance(self, y: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor | None:
        if not self.uses_reference:
            return None
        self.upscale(y, ref, alpha=0.0, seed=0)
        gate = self.net.gate_map()
        return torch.nn.functional.interpolate(gate, scale_factor=2, mode="nearest").to(y.device)
