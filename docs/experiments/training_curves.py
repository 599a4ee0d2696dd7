"""Learning curves: validation PSNR against training step, for comparing schedules.

Each curve comes from a model card's ``validation_history`` (shipped models and finished runs,
cards written since 2026-11-28) or from a run folder's ``log.jsonl`` (also for unfinished runs).
Validation is the trainer's: the held-out rennes crop (OSCD), round trip at alpha = 1, PSNR in dB
with peak 10000 DN; the bicubic round trip of the same crop is the floor.

Run: ``python docs/experiments/training_curves.py --curve LABEL=SOURCE [--curve ...]`` where
SOURCE is a shipped model name, a card ``.json`` or a run folder, e.g.
``--curve "x4 10000 steps=../../runs/exp-refscale-s2-x4-10k"
--curve "x4 20000 steps=refscale-s2-x4"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import RESULTS, md_table, pyplot, write_outputs

#: the table reports every curve at these fractions of the longest one's last step
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)


def history(source: str) -> list[dict]:
    """Validation records ``{"step", "psnr", "psnr_bicubic", ...}`` of a model card (by shipped
    name or path) or a run folder's ``log.jsonl``, in step order."""
    path = Path(source)
    if path.is_dir():
        from georefscale.training.trainer import validation_entry

        with (path / "log.jsonl").open() as log:
            return [validation_entry(json.loads(line)) for line in log if '"psnr"' in line]
    if path.suffix != ".json":
        from georefscale.engine.weights import MODELS_DIR

        path = MODELS_DIR / f"{source}.json"
    card = json.loads(path.read_text())
    if "validation_history" not in card:
        raise SystemExit(f"{path}: the card has no validation_history (written before 2026-11-28);"
                         " give the run folder instead")
    return card["validation_history"]


def psnr_at(curve: list[dict], step: int) -> float | None:
    """Validation PSNR of the last record at or before ``step`` (None past the curve's end)."""
    if step > curve[-1]["step"]:
        return None
    return max((r for r in curve if r["step"] <= step), key=lambda r: r["step"])["psnr"]


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--curve", action="append", required=True, metavar="LABEL=SOURCE")
    p.add_argument("--name", default="training_curves", help="output name in --out")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    curves = {}
    for item in args.curve:
        label, _, source = item.partition("=")
        if not source:
            raise SystemExit(f"--curve {item!r}: expected LABEL=SOURCE")
        curves[label] = {"source": source, "history": history(source)}

    longest = max(c["history"][-1]["step"] for c in curves.values())
    steps = [round(f * longest) for f in FRACTIONS]
    rows = [[label, c["history"][-1]["step"], c["history"][-1]["psnr_bicubic"]]
            + [psnr_at(c["history"], s) for s in steps]
            for label, c in curves.items()]
    md = ("Validation PSNR (dB, rennes crop, alpha 1) after the given number of steps\n\n"
          + md_table(["curve", "steps", "bicubic"] + [f"step {s}" for s in steps], rows))

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, c in curves.items():
        h = c["history"]
        ax.plot([r["step"] for r in h], [r["psnr"] for r in h], label=label)
    floor = next(iter(curves.values()))["history"][-1]["psnr_bicubic"]
    ax.axhline(floor, color="grey", linestyle=":", label="bicubic")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    result = {"experiment": "training_curves", "curves": curves,
              "validation": "rennes crop of the trainer, alpha 1, peak 10000 DN"}
    write_outputs(args.out, args.name, result, md, fig)
    print(md)


if __name__ == "__main__":
    main()
