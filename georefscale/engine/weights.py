"""Named models shipped in ``georefscale/models/``: ``<name>.safetensors`` + ``<name>.json``.

The JSON model card holds the architecture (:class:`NetConfig`), the data convention (``dtype``,
``scale`` = DN per 1.0, band names) and how the weights were made (data, steps, wall time,
validation metrics). ``bicubic`` needs no weights and takes any ``factor``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from georefscale.atomic import atomic_output
from georefscale.engine.baselines import BicubicRescaler
from georefscale.engine.cards import (
    MODELS_DIR,
    card_sampling_scale,
    model_card,
    shipped_cards,
)
from georefscale.engine.refscale import InvertibleRescaler, NetConfig, RefScaleNet
from georefscale.engine.rescaler import Rescaler
from georefscale.errors import InputError


def default_device() -> torch.device:
    """Where models run unless told otherwise: the current CUDA GPU when there is one, else the
    CPU (results agree to 1e-5 in the normalised range; see :class:`InvertibleRescaler`)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_file_model(
    weights: str | Path, card: dict, device: str | torch.device | None = None
) -> InvertibleRescaler:
    """Build the network described by ``card`` and load ``weights`` (a .safetensors file) onto
    ``device`` (default :func:`default_device`); the latent is sampled at the card's
    ``sampling_scale`` (InputError naming the card when it is not in (0, 1])."""
    sampling = card_sampling_scale(card, f"model card of {weights}")
    net = RefScaleNet(NetConfig(**card["config"]))
    try:
        net.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{weights}: weights do not match the architecture: {first}") from exc
    return InvertibleRescaler(
        card["name"], net, dtype=card["dtype"], scale=card["scale"],
        device=device or default_device(), temperature=card.get("temperature"),
        sampling_scale=sampling,
    )


def load(
    name: str, factor: int | None = None, device: str | torch.device | None = None
) -> Rescaler:
    """A rescaler by name (or the path of a trained model's ``.safetensors`` file, see
    :func:`model_card`) on ``device`` (default: a CUDA GPU when there is one, else the CPU);
    ``factor`` is required for ``bicubic`` and checked for the others."""
    if name == "bicubic":
        return BicubicRescaler(factor or 4)
    card = model_card(name)
    if factor is not None and factor != card["config"]["factor"]:
        raise InputError(
            f"model {name!r} rescales by {card['config']['factor']}, not {factor}; "
            f"models for x{factor}: "
            + ", ".join(n for n, c in shipped_cards().items() if c["config"]["factor"] == factor)
        )
    weights = Path(name)
    if weights.suffix != ".safetensors":
        weights = MODELS_DIR / f"{name}.safetensors"
    return load_file_model(weights, card, device)


def save_model(net: RefScaleNet, card: dict, out_dir: str | Path) -> Path:
    """Write ``<card['name']>.safetensors`` and its JSON card into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    card = {**card, "config": net.cfg.to_dict()}
    weights = out_dir / f"{card['name']}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_output(weights, ".safetensors.tmp") as tmp:
        save_file(state, str(tmp))
    with atomic_output(weights.with_suffix(".json"), ".json.tmp") as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return weights
