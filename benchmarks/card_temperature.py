"""Give shipped model cards the ``sampling_scale`` of their latent (issue #23 point 4) without
retraining: the scale is :func:`georefscale.engine.cards.sampling_scale` of the card's recorded
``temperature.latent_rms``, and the card's PSNR table is measured again with the trainer's own
:func:`georefscale.training.trainer.temperature` on the same validation crops as in training
(``configs/<name>.yaml``). The script first checks that the re-measurement at scale 1
reproduces the recorded table and latent RMS (so the crops and weights are the ones the card
describes), then writes ``sampling_scale``, ``temperature.psnr`` (at that scale, what the ground
now draws) and ``temperature.psnr_unit_scale`` (the recorded table, scale 1) into the card.
Models whose scale is 1 are left as they are (a card without the field means 1).

    python benchmarks/card_temperature.py               # noref-s2-x4, the jp2 pair, noref-naip-x4
    python benchmarks/card_temperature.py refscale-s2-x2 --dry-run     # scale 1: nothing to do

A card measured before the reference alignment changed (refscale-s2-x4's, 2026-11-28: since the
co-registration of 2026-11-29 its validation reference is resampled a little differently, and
today's crops give 0.014 dB less) needs the crops of its time: build them with the code of the
commit that wrote the card and hand them over (safetensors, no pickle):

    git archive 18edd31 | tar -x -C /tmp/card-crops
    PYTHONPATH=/tmp/card-crops python benchmarks/card_temperature.py refscale-s2-x4 \
        --save-crops /tmp/val-refscale-s2-x4.safetensors
    python benchmarks/card_temperature.py refscale-s2-x4 \
        --crops /tmp/val-refscale-s2-x4.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# only names that older checkouts have too (--save-crops runs with their code)
from georefscale.training.data import PairCrops
from georefscale.training.trainer import load_config, training_pairs

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOREFSCALE_DATA", ROOT.parent / "shared" / "data"))
#: the shipped models whose forward latent is weaker than N(0, 1) (scale below 1), except
#: refscale-s2-x4, whose crops come from an older checkout (module docstring)
MODELS = ("noref-s2-x4", "refscale-s2-x4-jp2", "noref-s2-x4-jp2", "noref-naip-x4")
#: how close the re-measured scale-1 table must come to the recorded one (dB; the threads'
#: summation order moves it in the last bits)
TOLERANCE_DB = 0.01


def validation_crops(name: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The validation crops of ``configs/<name>.yaml`` as the trainer makes them with the code
    that runs (target, reference, the validation file names)."""
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", DATA)
    _, val_pairs = training_pairs(cfg)
    val_x, val_ref = PairCrops(val_pairs, cfg.scale, cfg.crop).fixed(len(val_pairs), cfg.val_crop)
    return val_x, val_ref, [Path(t).name for t, _ in val_pairs]


def remeasure(name: str, crops: Path | None = None) -> tuple[dict, dict]:
    """(the card, the trainer's temperature record of the shipped weights on the card's
    validation crops: made now, or read from ``crops``)."""
    from georefscale.engine.cards import MODELS_DIR
    from georefscale.engine.weights import load
    from georefscale.training.trainer import temperature

    card = json.loads((MODELS_DIR / f"{name}.json").read_text())
    if crops is None:
        val_x, val_ref, names = validation_crops(name)
    else:
        tensors = load_file(str(crops))
        with safe_open(str(crops), "pt") as f:
            names = json.loads(f.metadata()["validation"])
        val_x, val_ref = tensors["x"], tensors["ref"]
    if names != card["training"]["validation"]:
        raise SystemExit(f"{name}: validation files {names}, the card's "
                         f"{card['training']['validation']}")
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", DATA)
    net = load(name, device="cpu").net
    return card, temperature(net, cfg, val_x, val_ref)


def updated(card: dict, measured: dict) -> dict | None:
    """The card with its sampling scale and PSNR table at that scale; None when its scale is 1.

    Raises:
        SystemExit: the re-measurement at scale 1 does not reproduce the recorded table.
    """
    from georefscale.engine.cards import sampling_scale

    recorded = card["temperature"]
    scale = sampling_scale(recorded["latent_rms"])
    if scale == 1:
        return None
    unit = measured.get("psnr_unit_scale", measured["psnr"])
    worst = max(abs(unit[a] - v) for a, v in recorded.get("psnr_unit_scale",
                                                          recorded["psnr"]).items())
    if worst > TOLERANCE_DB or not math.isclose(measured["latent_rms"], recorded["latent_rms"],
                                                rel_tol=1e-4):
        raise SystemExit(f"{card['name']}: re-measured at scale 1 {unit} (latent RMS "
                         f"{measured['latent_rms']}), the card records {recorded}: not the same "
                         "crops or weights")
    if not math.isclose(sampling_scale(measured["latent_rms"]), scale, rel_tol=1e-4):
        raise SystemExit(f"{card['name']}: re-measured latent RMS gives another scale")
    temp = {"psnr": measured["psnr"], "latent_rms": recorded["latent_rms"],
            "psnr_unit_scale": recorded.get("psnr_unit_scale", recorded["psnr"])}
    out = {}
    for key, value in card.items():
        if key == "temperature":
            out["sampling_scale"] = scale
            out[key] = temp
        elif key != "sampling_scale":
            out[key] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--dry-run", action="store_true", help="measure and print, write nothing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crops", type=Path, default=None,
                        help="validation crops saved by --save-crops (one model)")
    parser.add_argument("--save-crops", type=Path, default=None,
                        help="only save the validation crops the running code makes (one model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if (args.crops or args.save_crops) and len(args.models) != 1:
        parser.error("--crops and --save-crops take one model")
    if args.save_crops:
        x, ref, names = validation_crops(args.models[0])
        save_file({"x": x.contiguous(), "ref": ref.contiguous()}, str(args.save_crops),
                  metadata={"validation": json.dumps(names)})
        print(f"wrote {args.save_crops}: {tuple(x.shape)} from {names}")
        return 0
    from georefscale.engine.cards import MODELS_DIR

    for name in args.models:
        card, measured = remeasure(name, args.crops)
        new = updated(card, measured)
        print(json.dumps({"model": name, "measured": measured,
                          "sampling_scale": None if new is None else new["sampling_scale"]}),
              flush=True)
        if new is not None and not args.dry_run:
            (MODELS_DIR / f"{name}.json").write_text(json.dumps(new, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
