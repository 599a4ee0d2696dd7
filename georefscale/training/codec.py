"""Codec-aware training: the LR of a share of the training batches goes through the real link
codec (JPEG 2000 through :func:`georefscale.codecs.encode` / :func:`~georefscale.codecs.decode`,
the product's creation options) and the decoder learns to rebuild from what the link delivers.

The decoded LR replaces the quantised one with a straight-through gradient (the gradient passes
as if the codec were the identity). Training crops are tiny (a 64 px HR crop is a 16 px LR at
x4), and JPEG 2000 codes a 16 px image unlike a scene (its headers alone exceed a 2 % budget), so
the batch's LR crops are tiled into one mosaic that is coded at a compensated quality
(:func:`mosaic_quality`): the header bytes are added to its budget and the rate is raised by
:data:`SEAM_FACTOR` for the edges between unrelated crops. ``benchmarks/codec_training.py``
measures how the mosaic's distortion tracks whole scenes coded at the same quality.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
import torch

from georefscale import codecs
from georefscale.errors import InputError

#: Codecs codec-aware training can put on the link (the mosaic's rate compensation is measured
#: for JPEG 2000, whose quality is the coded size in % of the raw size).
TRAINING_CODECS = ("jpeg2000",)
#: Extra rate the crop mosaic needs for the edges between unrelated crops: with it the mosaic's
#: LR PSNR is 0.5-1.2 dB below whole test-city scenes at 1-20 % and 1 dB above at 40 %, against
#: 4-36 dB below at the nominal quality (benchmarks/codec_training.py).
SEAM_FACTOR = 1.1
#: The quality the file-size floor (headers and empty packets) of a mosaic is measured at.
_FLOOR_QUALITY = 0.001


@dataclass(frozen=True)
class CodecConfig:
    """The ``codec`` section of a training config.

    Attributes:
        name: the link codec (one of :data:`TRAINING_CODECS`).
        share: fraction of the training batches whose LR is coded, in (0, 1].
        rates: (lowest, highest) quality, for JPEG 2000 the coded size in % of the raw LR; each
            coded batch draws one quality log-uniformly between them.
    """

    name: str = "jpeg2000"
    share: float = 0.5
    rates: tuple[float, float] = (1.0, 40.0)

    def __post_init__(self) -> None:
        spec = codecs.get_codec(self.name)
        if spec.name not in TRAINING_CODECS:
            raise InputError(f"codec {self.name!r}: codec-aware training supports "
                             f"{', '.join(TRAINING_CODECS)} only")
        if not (isinstance(self.share, int | float) and 0.0 < self.share <= 1.0):
            raise InputError(f"codec share {self.share!r} must be in (0, 1]")
        try:
            low, high = (float(r) for r in self.rates)
        except (TypeError, ValueError) as exc:
            raise InputError(f"codec rates {self.rates!r}: give [lowest, highest]") from exc
        lo, hi = spec.quality_range
        if not (lo < low <= high <= hi):
            raise InputError(f"codec rates {list(self.rates)} must satisfy {lo:g} < lowest <= "
                             f"highest <= {hi:g} (quality of {self.name!r}, % of the raw LR)")
        object.__setattr__(self, "rates", (low, high))

    def check_dtype(self, dtype: str) -> None:
        """InputError unless the codec takes data of ``dtype`` (the model's source dtype)."""
        takes = codecs.get_codec(self.name).dtypes
        if takes is not None and dtype not in takes:
            raise InputError(f"codec {self.name!r} takes {'/'.join(takes)} data, the model's "
                             f"dtype is {dtype}")


def straight_through(lr: torch.Tensor, delivered: torch.Tensor) -> torch.Tensor:
    """``delivered`` in the forward pass, the identity of ``lr`` in the backward pass.

    Args:
        lr: the quantised LR (normalised range), part of the autograd graph.
        delivered: what the link delivers for it, same shape (no gradient is taken through it).

    Returns:
        ``lr + (delivered - lr).detach()``: equals ``delivered``, gradient d/d lr = identity.
    """
    return lr + (delivered - lr).detach()


def _grid(count: int) -> tuple[int, int]:
    """(rows, cols) of the most nearly square mosaic of ``count`` equal tiles."""
    rows = max(d for d in range(1, math.isqrt(count) + 1) if count % d == 0)
    return rows, count // rows


def mosaic(tiles: np.ndarray) -> np.ndarray:
    """Tile a batch (N, C, h, w) into one image (C, rows * h, cols * w), see :func:`unmosaic`."""
    n, c, h, w = tiles.shape
    rows, cols = _grid(n)
    return tiles.reshape(rows, cols, c, h, w).transpose(2, 0, 3, 1, 4).reshape(
        c, rows * h, cols * w)


def unmosaic(image: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` tiles (N, C, h, w) of a mosaic made by :func:`mosaic`."""
    rows, cols = _grid(count)
    c, height, width = image.shape
    h, w = height // rows, width // cols
    return image.reshape(c, rows, h, cols, w).transpose(1, 3, 0, 2, 4).reshape(count, c, h, w)


@functools.cache
def _floor_bytes(shape: tuple[int, int, int], dtype: str) -> int:
    """Bytes of the smallest JPEG 2000 file of an image of ``shape`` (headers, empty packets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return len(codecs.encode(np.zeros(shape, dtype), "jpeg2000", _FLOOR_QUALITY))


def mosaic_quality(quality: float, shape: tuple[int, int, int], dtype: str) -> float:
    """The JPEG 2000 quality to code a crop mosaic at so it sees the distortion a scene sees at
    ``quality``.

    Args:
        quality: the link's quality, coded size in % of the raw LR.
        shape: (bands, rows, cols) of the mosaic.
        dtype: its dtype.

    Returns:
        ``SEAM_FACTOR * quality`` plus the mosaic's file-size floor in % of its raw size, at most
        100.
    """
    raw = math.prod(shape) * np.dtype(dtype).itemsize
    return min(100.0, SEAM_FACTOR * quality + 100.0 * _floor_bytes(shape, dtype) / raw)


def code_crops(lr: np.ndarray, codec: str, quality: float) -> np.ndarray:
    """Code a batch of LR crops through the link codec as one mosaic and decode it.

    Args:
        lr: LR crops (N, C, h, w) in DN of the source dtype (uint8 / uint16 / int16).
        codec: the codec's name (one of :data:`TRAINING_CODECS`).
        quality: the link's quality (% of the raw LR), compensated by :func:`mosaic_quality`.

    Returns:
        The decoded crops, same shape and dtype.
    """
    image = mosaic(lr)
    q = mosaic_quality(quality, image.shape, str(lr.dtype))
    with warnings.catch_warnings():  # a training crop has no georeferencing
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        decoded = codecs.decode(codecs.encode(image, codec, q))
    return unmosaic(decoded, lr.shape[0])


class TrainingLink:
    """Which training batches go through the link codec, at which quality, and the coding.

    The draw of step ``k`` depends on ``(seed, k)`` only, so a resumed run draws as an
    uninterrupted one.
    """

    def __init__(self, cfg: CodecConfig, dtype: str, scale: float, seed: int) -> None:
        """Args:
            cfg: the codec section of the training config.
            dtype: the model's source dtype (the LR is coded in it).
            scale: DN per 1.0 of the normalised range.
            seed: the run's seed.

        Raises:
            InputError: if the codec does not take ``dtype``.
        """
        cfg.check_dtype(dtype)
        self.cfg, self.dtype, self.scale, self.seed = cfg, dtype, scale, seed

    def quality(self, step: int) -> float | None:
        """The quality (% of the raw LR) batch ``step`` is coded at, None for an uncoded one."""
        rng = np.random.default_rng([self.seed, step])
        if rng.random() >= self.cfg.share:
            return None
        low, high = self.cfg.rates
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))

    def __call__(self, lr: torch.Tensor, step: int) -> torch.Tensor:
        """What the link delivers for the quantised LR batch ``lr`` at ``step``.

        Args:
            lr: quantised LR (N, C, h, w), normalised (DN / ``scale``), as
                :func:`~georefscale.engine.rescaler.quantize` gives it.
            step: the training step (0-based) the batch belongs to.

        Returns:
            ``lr`` itself for an uncoded batch, else the decoded LR with a straight-through
            gradient (:func:`straight_through`).
        """
        quality = self.quality(step)
        if quality is None:
            return lr
        dn = torch.round(lr.detach().float() * self.scale).cpu().numpy().astype(self.dtype)
        decoded = code_crops(dn, self.cfg.name, quality).astype(np.float32) / self.scale
        return straight_through(lr, torch.from_numpy(decoded).to(lr.device, lr.dtype))
