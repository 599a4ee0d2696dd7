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

from georefscale.engine.baselines import BicubicRescaler
from georefscale.engine.refscale import InvertibleRescaler, NetConfig, RefScaleNet
from georefscale.engine.rescaler import Rescaler
from georefscale.errors import InputError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def _cards(models_dir: Path = MODELS_DIR) -> dict[str, dict]:
    cards = {}
    for card in sorted(models_dir.glob("*.json")):
        if card.with_suffix(".safetensors").exists():
            cards[card.stem] = json.loads(card.read_text())
    return cards


def available_models() -> list[str]:
    """Names accepted by :func:`load`: ``bicubic`` and every shipped model."""
    return ["bicubic", *_cards()]


def model_card(name: str) -> dict:
    """The model card of a shipped model, or of a trained model given as the path of its
    ``.safetensors`` file (card beside it, as ``georefscale train`` writes them); InputError for
    unknown names and missing or unreadable cards."""
    if Path(name).suffix == ".safetensors":
        return _file_card(Path(name))
    cards = _cards()
    if name not in cards:
        raise InputError(
            f"unknown model {name!r}; available: {', '.join(available_models())} "
            "(or the path of a trained model's .safetensors file)"
        )
    return cards[name]


def _file_card(weights: Path) -> dict:
    card_path = weights.with_suffix(".json")
    if not weights.is_file():
        raise InputError(f"{weights}: no such weights file")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{weights}: its model card {card_path.name} is missing "
                         "(georefscale train writes both files)") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{card_path}: not a readable model card: {exc}") from exc
    missing = [k for k in ("name", "dtype", "scale", "config") if k not in card]
    if missing:
        raise InputError(f"{card_path}: not a model card (no {', '.join(missing)})")
    return card


def models_for(bands: int, dtype: str, factor: int | None = None) -> list[str]:
    """Shipped models whose band count and dtype fit, optionally for one factor."""
    return [
        name
        for name, card in _cards().items()
        if card["config"]["bands"] == bands
        and card["dtype"] == dtype
        and (factor is None or card["config"]["factor"] == factor)
    ]


def default_device() -> torch.device:
    """Where models run unless told otherwise: the current CUDA GPU when there is one, else the
    CPU (results agree to 1e-5 in the normalised range; see :class:`InvertibleRescaler`)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_file_model(
    weights: str | Path, card: dict, device: str | torch.device | None = None
) -> InvertibleRescaler:
    """Build the network described by ``card`` and load ``weights`` (a .safetensors file) onto
    ``device`` (default :func:`default_device`)."""
    net = RefScaleNet(NetConfig(**card["config"]))
    try:
        net.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{weights}: weights do not match the architecture: {first}") from exc
    return InvertibleRescaler(
        card["name"], net, dtype=card["dtype"], scale=card["scale"],
        device=device or default_device(), temperature=card.get("temperature"),
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
            + ", ".join(n for n, c in _cards().items() if c["config"]["factor"] == factor)
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
    tmp = weights.with_suffix(".safetensors.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp))
    tmp.replace(weights)
    card_path = weights.with_suffix(".json")
    tmp_card = card_path.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(card, indent=2) + "\n")
    tmp_card.replace(card_path)
    return weights
