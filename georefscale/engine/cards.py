"""Model cards of the shipped models (``georefscale/models/<name>.json``): JSON only, no torch.

A card holds the architecture (``config``), the data convention (``dtype``, ``scale`` = DN per
1.0, band names) and how the weights were made (data, steps, wall time, validation metrics and
the sampling ``temperature`` record). ``bicubic`` needs no card and takes any factor.
"""

from __future__ import annotations

import json
from pathlib import Path

from georefscale.errors import InputError

__all__ = [
    "MODELS_DIR",
    "available_models",
    "band_names",
    "factor_sibling",
    "model_card",
    "models_for",
    "noref_name",
    "shipped_cards",
]

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def shipped_cards(models_dir: Path = MODELS_DIR) -> dict[str, dict]:
    """Name -> card of every model in ``models_dir`` that has its weights beside its card."""
    cards = {}
    for card in sorted(models_dir.glob("*.json")):
        if card.with_suffix(".safetensors").exists():
            cards[card.stem] = json.loads(card.read_text())
    return cards


def available_models() -> list[str]:
    """Names accepted by :func:`load`: ``bicubic`` and every shipped model."""
    return ["bicubic", *shipped_cards()]


def model_card(name: str) -> dict:
    """The model card of a shipped model, or of a trained model given as the path of its
    ``.safetensors`` file (card beside it, as ``georefscale train`` writes them); InputError for
    unknown names and missing or unreadable cards."""
    if Path(name).suffix == ".safetensors":
        return _file_card(Path(name))
    cards = shipped_cards()
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
        for name, card in shipped_cards().items()
        if card["config"]["bands"] == bands
        and card["dtype"] == dtype
        and (factor is None or card["config"]["factor"] == factor)
    ]


def factor_sibling(name: str, factor: int, what: str) -> str:
    """The shipped model of ``name``'s family for another factor: same band names, dtype, DN
    scale and use of a reference (``refscale-s2-x4``, 2 -> ``refscale-s2-x2``).

    Args:
        name: a shipped model's name (or a trained model's ``.safetensors`` path).
        factor: the factor wanted.
        what: the input, for messages.

    Returns:
        The sibling's name (``name`` itself when it has that factor).

    Raises:
        InputError: no shipped model of the family has that factor (naming the ones that do).
    """
    card = model_card(name)
    if card["config"]["factor"] == factor:
        return name

    def family(c: dict) -> tuple:
        return (c.get("band_names"), c["dtype"], c["scale"], c["config"].get("use_reference"))

    fit = [other for other, c in shipped_cards().items()
           if c["config"]["factor"] == factor and family(c) == family(card)]
    same = name.replace(f"-x{card['config']['factor']}", f"-x{factor}")
    if fit:  # the same name at that factor when shipped (refscale-s2-x2 -> refscale-s2-x4)
        return same if same in fit else fit[0]
    listed = ", ".join(n for n, c in shipped_cards().items() if c["config"]["factor"] == factor)
    raise InputError(f"{what}: no shipped model of {card['name']}'s family rescales by {factor} "
                     f"(models for x{factor}: {listed})")


def noref_name(name: str) -> str | None:
    """Name of the no-reference twin of a RefScale model (``refscale-s2-x4`` -> ``noref-s2-x4``).

    Args:
        name: a model name.

    Returns:
        The twin's name, or None for names outside the ``refscale-*`` scheme.
    """
    return "noref-" + name.removeprefix("refscale-") if name.startswith("refscale-") else None


def band_names(model: str) -> tuple[str, ...] | None:
    """The band names a model declares in its card (``"B02 blue"``: name and common name), in
    its band order; None for ``bicubic`` and for models whose card names none.

    Args:
        model: a shipped model's name or a trained model's ``.safetensors`` path.
    """
    if model == "bicubic":
        return None
    try:
        names = model_card(model).get("band_names")
    except InputError:
        return None
    return tuple(str(n) for n in names) if names else None
