"""Model cards of the shipped models (``georefscale/models/<name>.json``): JSON only, no torch.

A card holds the architecture (``config``), the data convention (``dtype``, ``scale`` = DN per
1.0, band names) and how the weights were made (data, steps, wall time, validation metrics and
the sampling ``temperature`` record). ``bicubic`` needs no card and takes any factor.

Card fields read by the library:

- ``name``, ``dtype``, ``scale`` (DN per 1.0 of the normalised range), ``config`` (the
  :class:`~georefscale.engine.refscale.NetConfig`), ``band_names``.
- ``sampling_scale`` (optional, in (0, 1]; absent = 1): the standard deviation of the latent
  the ground draws at alpha = 1, i.e. ``z ~ N(0, (alpha * sampling_scale)^2)``, so that alpha
  is relative to the latent the model actually has. It is :func:`sampling_scale` of the RMS of
  the forward latent on the validation crops (``temperature.latent_rms``): ``min(1, rms)``.
  Not to be confused with ``config.latent_scale`` (the network's fixed factor between its
  high-frequency channels and ``z``).
- ``temperature`` (optional): ``latent_rms`` and the validation PSNR (dB) per alpha,
  ``psnr`` at the card's ``sampling_scale`` (what the ground does) and, where the scale is
  below 1, ``psnr_unit_scale`` at scale 1 (``z ~ N(0, alpha^2)``, the prior the network was
  trained with). Cards without ``sampling_scale`` were measured at scale 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from georefscale.errors import InputError

__all__ = [
    "MODELS_DIR",
    "available_models",
    "band_names",
    "card_sampling_scale",
    "factor_sibling",
    "model_card",
    "models_for",
    "noref_name",
    "sampling_scale",
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


def sampling_scale(latent_rms: float) -> float:
    """The card's ``sampling_scale`` for a model whose forward latent has RMS ``latent_rms`` on
    its validation crops: ``min(1, latent_rms)`` (the one copy of the rule; the trainer writes it
    into every new card).

    A model whose latent is weaker than the N(0, 1) prior it was trained with (the Sentinel-2 x4
    models: 0.17-0.23) gets its own strength, so alpha = 1 draws a latent as strong as the one
    the network produced and alpha > 1 stays within the prior up to alpha = 1 / scale; one at or
    above it keeps scale 1 (today's N(0, alpha^2)): the x2 and NAIP decoders were trained to
    rebuild from N(0, 1) samples and lose PSNR at alpha 0-1 when sampled at their larger RMS.

    Raises:
        ValueError: ``latent_rms`` is not a finite positive number.
    """
    rms = float(latent_rms)
    if not math.isfinite(rms) or rms <= 0:
        raise ValueError(f"latent RMS must be finite and > 0, got {latent_rms!r}")
    return min(1.0, rms)


def card_sampling_scale(card: dict, where: str | None = None) -> float:
    """The ``sampling_scale`` of a model card (1.0 when it has none), checked.

    Args:
        card: a model card.
        where: the card, for messages (default its ``name``).

    Raises:
        InputError: the field is not a finite number in (0, 1], naming the card.
    """
    value = card.get("sampling_scale", 1.0)
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and 0 < value <= 1)
    if not ok:
        raise InputError(f"{where or card.get('name', 'model card')}: sampling_scale must be a "
                         f"finite number in (0, 1], got {value!r}")
    return float(value)


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
    card_sampling_scale(cards[name], f"model card {MODELS_DIR / (name + '.json')}")
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
    card_sampling_scale(card, f"model card {card_path}")
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
