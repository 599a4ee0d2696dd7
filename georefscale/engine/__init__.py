"""The neural engine (the only part of georefscale that imports torch).

``load(name)`` returns a rescaler with ``downscale(x, ref) -> (y, z)`` and
``upscale(y, ref, z=None, alpha=1.0, seed=None) -> x`` on float32 ``(N, C, H, W)`` tensors in the
model's normalised range (``DN / scale``).
"""

from georefscale.engine.baselines import BicubicRescaler
from georefscale.engine.refscale import InvertibleRescaler, NetConfig, RefScaleNet
from georefscale.engine.rescaler import Rescaler, quantize, sample_latent
from georefscale.engine.weights import available_models, load, model_card, models_for

__all__ = [
    "BicubicRescaler",
    "InvertibleRescaler",
    "NetConfig",
    "RefScaleNet",
    "Rescaler",
    "available_models",
    "load",
    "model_card",
    "models_for",
    "quantize",
    "sample_latent",
]
