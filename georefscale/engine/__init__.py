"""The neural engine (the only part of georefscale, with ``training``, that imports torch).

``load(name)`` returns a rescaler with ``downscale(x, ref) -> (y, z)`` and
``upscale(y, ref, z=None, alpha=1.0, seed=None) -> x`` (``z ~ N(0, (alpha * s)^2)``, ``s`` the
card's ``sampling_scale``) on float32 ``(N, C, H, W)`` tensors in the
model's normalised range (``DN / scale``); :mod:`georefscale.engine.run` wraps them for numpy
tiles. The names below are imported on first use, so ``georefscale.engine.cards`` (model cards,
JSON only) can be read without importing torch.
"""

from __future__ import annotations

from georefscale.lazy import lazy_exports

#: Public names re-exported lazily: name -> module that defines it.
_LAZY = {
    "BicubicRescaler": "georefscale.engine.baselines",
    "InvertibleRescaler": "georefscale.engine.refscale",
    "NetConfig": "georefscale.engine.refscale",
    "RefScaleNet": "georefscale.engine.refscale",
    "Rescaler": "georefscale.engine.rescaler",
    "quantize": "georefscale.engine.rescaler",
    "sample_latent": "georefscale.engine.rescaler",
    "available_models": "georefscale.engine.cards",
    "model_card": "georefscale.engine.cards",
    "models_for": "georefscale.engine.cards",
    "load": "georefscale.engine.weights",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("georefscale.engine", _LAZY, globals())
