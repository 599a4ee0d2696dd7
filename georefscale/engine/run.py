"""The engine on numpy arrays: model resolution, one tile in and out, thread control.

Everything above the engine (on board, ground, archive, evaluation) calls these functions with
float32 numpy arrays in the model's normalised range (``DN / scale``), ``(bands, rows, cols)``,
and never touches torch itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from georefscale.engine.cards import available_models, noref_name
from georefscale.engine.rescaler import Rescaler
from georefscale.engine.weights import load
from georefscale.errors import InputError
from georefscale.options import AUTO, ModelLike, check_factor

__all__ = [
    "downscale",
    "given_model",
    "noref_twin",
    "relevance",
    "resolve_model",
    "single_threaded",
    "upscale",
]


def resolve_model(model: ModelLike, factor: int | None) -> Rescaler:
    """A rescaler from a name (loaded) or a rescaler object (its factor checked).

    Args:
        model: a model name, the path of a trained model's ``.safetensors``, or a rescaler.
        factor: 2 or 4 to check (None: the model's own).

    Returns:
        The rescaler.

    Raises:
        InputError: unknown model, bad factor, or a model of another factor.
    """
    check_factor(factor)
    if isinstance(model, str):
        return load(model, factor=factor)
    if factor is not None and model.factor != factor:
        raise InputError(f"model {model.name} rescales by {model.factor}, not {factor}")
    return model


def noref_twin(model: Rescaler, noref_model: ModelLike | None = AUTO) -> Rescaler | None:
    """The no-reference model to use instead of (or per tile alongside) ``model``.

    Args:
        model: the main model.
        noref_model: :data:`~georefscale.options.AUTO` (the shipped twin, None if absent), a
            name or rescaler object (checked for compatibility), or None (no twin).

    Returns:
        The twin, or None when there is none or ``model`` uses no reference.

    Raises:
        InputError: the twin uses a reference or differs in factor, bands, dtype or scale.
    """
    if not model.uses_reference or noref_model is None:
        return None
    if isinstance(noref_model, str) and noref_model == AUTO:
        name = noref_name(model.name)
        if name is None or name not in available_models():
            return None
        noref_model = name
    twin = resolve_model(noref_model, model.factor)
    if twin.uses_reference:
        raise InputError(f"model {twin.name} uses a reference: not a no-reference fallback")
    if twin.bands != model.bands or twin.dtype != model.dtype or twin.scale != model.scale:
        raise InputError(
            f"no-reference model {twin.name} ({twin.bands} bands, {twin.dtype}, scale "
            f"{twin.scale}) does not match {model.name} ({model.bands} bands, {model.dtype}, "
            f"scale {model.scale})"
        )
    return twin


def given_model(model: ModelLike | None, name: str, factor: int, role: str,
                product: str) -> Rescaler:
    """The model a product records as ``name``: ``model`` (its name checked) or loaded by name.

    Args:
        model: a rescaler or name to use, or None to load ``name``.
        name: the model name recorded in the product.
        factor: the product's factor.
        role: what the model is for, in messages ("model", "no-reference model").
        product: the product's name, for messages.

    Raises:
        InputError: ``model`` is not the recorded one.
    """
    if model is None:
        return resolve_model(name, factor)
    m = resolve_model(model, factor)
    if m.name != name:
        raise InputError(f"{product}: made with {role} {name}, not {m.name}")
    return m


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))[None]


def downscale(model: Rescaler, x: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    """One HR tile ``x`` (float32 ``(C, H, W)``, normalised) -> LR ``(C, H/f, W/f)`` float32.

    Args:
        model: the rescaler.
        x: the HR tile.
        ref: the reference on the same grid (normalised, no NaN), or None.
    """
    with torch.no_grad():
        y, _ = model.downscale(_tensor(x), _tensor(ref))
    return y[0].cpu().numpy().astype(np.float32)


def upscale(model: Rescaler, y: np.ndarray, ref: np.ndarray | None, alpha: float,
            seed: int) -> np.ndarray:
    """One LR tile ``y`` -> HR float32 ``(C, H*f, W*f)`` with latent
    ``z ~ N(0, (alpha * model.sampling_scale)^2)``.

    Args:
        model: the rescaler.
        y: the LR tile (float32, normalised).
        ref: the reference at HR size (normalised, no NaN), or None.
        alpha: latent temperature, relative to the model's ``sampling_scale``.
        seed: latent seed of this tile.
    """
    with torch.no_grad():
        x = model.upscale(_tensor(y), _tensor(ref), alpha=alpha, seed=seed)
    return x[0].cpu().numpy().astype(np.float32)


def relevance(model: Rescaler, y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The model's relevance of ``ref`` for LR ``y``: ``(H, W)`` float32 in [0, 1] at HR size.

    Raises:
        InputError: the model reports no relevance.
    """
    with torch.no_grad():
        rel = model.relevance(_tensor(y), _tensor(ref))
    if rel is None:
        raise InputError(f"model {model.name} reports no relevance")
    return rel[0, 0].cpu().numpy().astype(np.float32)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread: the bytes of a product (e.g. the phase-correlation
    error tag) must not depend on the thread count of the process that made it."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)
