"""A sample of a scene's tiles, on which the two-layer encoder compares base-layer rates.

Each base-layer rate the encoder tries costs a ground rebuild of the scene (one pass of the
network's inverse); comparing rates on a fifth of the scene and rebuilding the whole scene
once, at the rate that won, gives nearly the same choice for about half the network passes. The
sample is an evenly spread set of full tile cores, put side by side in one array (a mosaic), so
that what is coded of it behaves like the scene: the tiles of the product's recorded tiling when
some of its tiles were decided (those must be rebuilt as recorded), else cores of
:data:`SAMPLE_TILE` pixels without halo. The sample only ranks rates, so its network runs in
bf16 autocast where the device computes bf16 natively (:func:`low_precision`; on this project's
Zen 5 CPU a tile's rebuild takes 0.7 s instead of 1.3 s); the rebuild the enhancement layer is
the residual to stays in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from rasterio.io import DatasetReader

from georefscale.options import GroundOptions
from georefscale.plans.ground import GroundPlan
from georefscale.product import LRInfo
from georefscale.raster.io import from_float
from georefscale.tiling import Tile

if TYPE_CHECKING:
    import torch

__all__ = ["SAMPLE_SHARE", "SAMPLE_TILE", "Sample"]

#: Share of the scene's pixels the sample covers (to the nearest whole tile, at least one). On
#: two test cities a fifth cost 5-11 % less time than a quarter for the same or fewer bytes
#: (benchmarks/layered_speed.py, 2026-11-29); 0.15 saved little more.
SAMPLE_SHARE = 0.2
#: Tile core of the sample (HR pixels) when the recorded tiling need not be kept.
SAMPLE_TILE = 128
#: A sample that would cover more of the scene than this saves too little to be used.
MAX_SHARE = 0.5


@dataclass(frozen=True)
class Sample:
    """Tile cores of an HR grid, rebuilt and compared side by side.

    Attributes:
        options: the ground options that rebuild them (the base rebuild's, on the sample's
            tiling).
        tiles: the tiles (windows in HR pixels of the target grid).
        share: their share of the scene's pixels.
    """

    options: GroundOptions
    tiles: tuple[Tile, ...]
    share: float

    @classmethod
    def make(cls, info: LRInfo, rebuild: GroundOptions) -> Sample | None:
        """The sample of the scene of LR product ``info``, rebuilt with ``rebuild`` (the base
        rebuild's options) on the sample's tiling (None: the scene is too small to gain from
        one, or has too few full tiles)."""
        decided = bool(info.fallback_tiles or info.bicubic_tiles)
        options = rebuild if decided else replace(rebuild, tile=SAMPLE_TILE, halo=0)
        tiling = info.tiling(options.tiling_for(info.tile, info.halo))
        g, size = info.target_grid, tiling.tile_size
        full = [t for t in tiling.tiles() if t.core.width == size == t.core.height
                and t.core.row_off + size <= g.height and t.core.col_off + size <= g.width]
        n = max(1, round(SAMPLE_SHARE * g.height * g.width / size**2))
        share = n * size**2 / (g.height * g.width)
        if not full or n > len(full) or share > MAX_SHARE:
            return None
        picks = np.linspace(0, len(full) - 1, n).round().astype(int)
        return cls(options, tuple(full[i] for i in picks), share)

    def cut(self, array: np.ndarray) -> np.ndarray:
        """The sample's cores of an HR-grid array ``(bands, rows, cols)``, side by side."""
        return np.concatenate([array[:, int(t.core.row_off):int(t.core.row_off + t.core.height),
                                     int(t.core.col_off):int(t.core.col_off + t.core.width)]
                               for t in self.tiles], axis=2)

    def rebuild(self, plan: GroundPlan, lr: DatasetReader,
                datasets: Sequence[DatasetReader]) -> np.ndarray:
        """The ground's rebuild of the sample's tiles (DN of the product's dtype, side by side,
        invalid samples at the nodata value or 0), with ``plan`` made with :attr:`options`, in
        :func:`low_precision` on the model's device."""
        info, cores = plan.info, []
        with low_precision(getattr(plan.model, "device", None)):  # bicubic: none, the CPU
            for t in self.tiles:
                x = plan.tile(lr, datasets, t.row, t.col).x
                r = int(t.core.row_off - t.window.row_off)
                c = int(t.core.col_off - t.window.col_off)
                core = x[:, r:r + int(t.core.height), c:c + int(t.core.width)]
                cores.append(from_float(core, info.source_dtype, info.scale, plan.nodata,
                                        mask=~np.isfinite(core), offset=info.offset))
        return np.concatenate(cores, axis=2)


def low_precision(device: torch.device | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` (None: the CPU) where it computes bf16 natively (a CUDA GPU
    that supports it, a CPU with AVX-512 BF16 or AMX, as oneDNN reports), else no change:
    emulated bf16 is slower than fp32."""
    import torch  # here, so that importing georefscale does not import torch

    device = device or torch.device("cpu")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return (torch.autocast(device.type, dtype=torch.bfloat16) if native
            else contextlib.nullcontext())
