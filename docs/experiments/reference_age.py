"""How much does the reference's age matter? The oracle bound and the NAIP model against the
time between reference and target.

Three real sources of reference/target pairs with different gaps:

- the Sentinel-2 B03 pair of tile T33UUU (10 days apart, one band, 1024 x 1024);
- the five OSCD test cities (17-27 months apart, four bands);
- the NAIP series: the 2020 target with each earlier date as its reference (1-11 years).

For each pair, :func:`reference_bound.bound` gives the PSNR of bicubic and of bicubic plus the
reference's own detail with the oracle per-block gain (what the reference alone can add, at best).
On NAIP the shipped ``refscale-naip-x4`` also runs with each reference (LR quantised to uint8,
alpha = 1, seed 0), so the trained model's gain can be set beside the bound. Gains are in dB over
bicubic (peak 10000 DN for Sentinel-2, 255 for NAIP).

Run: ``python docs/experiments/reference_age.py [--factor 4] [--crop N]``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from _common import (
    DATA,
    OSCD_TEST,
    downscale,
    get_model,
    load_scene,
    md_table,
    pyplot,
    scores,
    upscale,
    write_outputs,
)
from reference_bound import bound

NAIP_MODEL = "refscale-naip-x4"


def acquired(path: Path) -> date:
    """The acquisition date in a file name (its 8-digit YYYYMMDD token), by the catalog's rule."""
    from georefscale.catalog.records import acquisition_datetime

    return acquisition_datetime(path, {}, None)[0].date()


def gap_days(site) -> int:
    """Days between the reference and the target of a :class:`georefscale.evaluation.sites.Site`."""
    return (acquired(site.target) - acquired(site.reference)).days


def pairs() -> list[tuple[str, object]]:
    """(data set, Site) for every pair of the study, the target always the later date."""
    from georefscale.evaluation.sites import Site, dated_files, find_sites

    out = []
    b03 = sorted((DATA / "sentinel2-b03").glob("*.tif"), key=acquired)
    out.append(("sentinel2-b03", Site("T33UUU", b03[-1], b03[0])))
    out += [("oscd", s) for s in find_sites(DATA / "oscd", list(OSCD_TEST))]
    ((site, dates),) = dated_files(DATA / "naip").items()
    target = dates[-1][1]
    out += [("naip", Site(f"{site} ref {d}", target, p)) for d, p in dates[:-1]]
    return out


def study(factor: int, crop: int | None) -> list[dict]:
    """One row per pair: gap in days, bicubic / oracle-bound PSNR and, on NAIP, the model's."""
    model = get_model(NAIP_MODEL)
    rows = []
    for data, site in pairs():
        scene = load_scene(site, factor, crop)
        row = {"data": data, "site": site.name, "target": site.target.name,
               "reference": site.reference.name,
               "gap_days": gap_days(site),
               **bound(scene, factor)}
        if data == "naip" and factor == model.factor:
            y = downscale(model, scene, scene.reference)
            hr = upscale(model, scene, y, scene.reference)
            row[NAIP_MODEL] = scores(scene, hr)["psnr"]
        rows.append(row)
        print(row["data"], row["site"], row["gap_days"], round(row["oracle gain"], 2))
    return rows


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--factor", type=int, default=4, choices=(2, 4))
    p.add_argument("--crop", type=int, default=None, help="central crop (pixels) of each scene")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    rows = study(args.factor, args.crop)
    for r in rows:
        r["bound_gain"] = r["oracle gain"] - r["bicubic"]
        r["paste_gain"] = r["ref detail"] - r["bicubic"]
        if NAIP_MODEL in r:
            r["model_gain"] = r[NAIP_MODEL] - r["bicubic"]
    result = {"factor": args.factor, "crop": args.crop, "model": NAIP_MODEL,
              "peak": "10000 DN (Sentinel-2 uint16), 255 (NAIP uint8)", "pairs": rows}
    head = ["data", "target <- reference", "gap (days)", "bicubic", "+ detail as is",
            "+ detail, oracle gain", f"{NAIP_MODEL}"]
    table = [[r["data"], f"{r['target']} <- {r['reference']}", r["gap_days"], r["bicubic"],
              r["ref detail"], r["oracle gain"], r.get(NAIP_MODEL, "–")] for r in rows]
    md = [__doc__.splitlines()[0], "", f"x{args.factor}, PSNR dB", "", md_table(head, table)]

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for data, marker in (("sentinel2-b03", "s"), ("oscd", "o"), ("naip", "^")):
        sel = [r for r in rows if r["data"] == data]
        ax.plot([r["gap_days"] for r in sel], [r["bound_gain"] for r in sel], marker,
                label=f"{data}: reference detail, oracle gain")
    naip = [r for r in rows if "model_gain" in r]
    if naip:
        ax.plot([r["gap_days"] for r in naip], [r["model_gain"] for r in naip], "v--",
                label=f"naip: {NAIP_MODEL} (trained)")
    ax.set_xscale("log")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("days between reference and target")
    ax.set_ylabel(f"dB over bicubic (x{args.factor})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_outputs(args.out, "reference_age", result, "\n".join(md), fig)


if __name__ == "__main__":
    main()
