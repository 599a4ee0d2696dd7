"""``georefscale demo``: the main job on the bundled sample archive, end to end.

1. index the archive (NAIP series + OSCD Sentinel-2 cities) into a stac-geoparquet catalog;
2. take the newest NAIP date and a Sentinel-2 test city as new acquisitions;
3. pick each one's reference from the catalog (older records only);
4. on board: RefScale downscale (the shipped model that fits the bands and dtype, trained
   through JPEG 2000 where there is one), then JPEG 2000 on the link; on the ground: decode,
   reconstruct (alpha = 1, seed 0);
5. the same link budget with bicubic rescaling, for comparison;
6. write the GeoTIFFs, the relevance maps, ``metrics.json`` and ``demo.png``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rasterio.windows import Window

from georefscale import codecs
from georefscale.atomic import write_json
from georefscale.catalog import Catalog
from georefscale.errors import InputError
from georefscale.evaluation import score_files
from georefscale.raster.grid import Grid
from georefscale.raster.io import open_raster, write_geotiff

log = logging.getLogger(__name__)

#: Sentinel-2 test city used as a new acquisition (never seen in training).
S2_CITY = "montpellier"
DEFAULT_QUALITY = 20.0
#: PSNR (dB) the demo asks of the two-layer product, by model family: above what the plain
#: RefScale product reaches (about 36 dB on Sentinel-2, 29 dB on NAIP at x4).
LAYERED_PSNR = {"s2": 40.0, "naip": 33.0}


@dataclass(frozen=True)
class Case:
    """One demo acquisition: a label, the target file and the model family."""

    label: str
    target: Path
    family: str


def default_archive() -> Path:
    """``$GEOREFSCALE_DATA`` or ``../shared/data`` (relative to the working directory)."""
    return Path(os.environ.get("GEOREFSCALE_DATA", "../shared/data"))


def _check_archive(archive: Path) -> None:
    if not (archive / "naip").is_dir() or not (archive / "oscd").is_dir():
        raise InputError(
            f"{archive}: sample archive not found (needs naip/ and oscd/; see README.md, "
            "'The sample archive'); pass --archive DIR or set GEOREFSCALE_DATA"
        )


def cases(catalog: Catalog, archive: Path) -> list[Case]:
    """The newest NAIP record and the newest date of the Sentinel-2 test city."""
    naip = [r for r in (catalog.get(i) for i in catalog.ids) if r.id.startswith("m_")]
    if not naip:
        raise InputError(f"{archive}: no NAIP record in the catalog")
    newest = max(naip, key=lambda r: r.datetime)
    city = sorted((archive / "oscd").glob(f"{S2_CITY}_*.tif"))
    if not city:
        raise InputError(f"{archive}/oscd: no {S2_CITY}_<date>.tif")
    return [Case("naip", Path(newest.href), "naip"), Case("sentinel2", city[-1], "s2")]


def _crop(path: Path, size: int, out: Path) -> Path:
    """A centred ``size`` x ``size`` window of ``path`` written as a GeoTIFF (same tags)."""
    with open_raster(path, "target") as ds:
        h, w = min(size, ds.height), min(size, ds.width)
        win = Window((ds.width - w) // 2, (ds.height - h) // 2, w, h)
        grid = Grid(ds.crs, ds.window_transform(win), w, h)
        write_geotiff(out, ds.read(window=win), grid, nodata=ds.nodata,
                      descriptions=ds.descriptions, tags=ds.tags())
    return out


def _model_for(path: Path, family: str, factor: int) -> str:
    from georefscale.engine import models_for

    with open_raster(path, "target") as ds:
        fits = models_for(ds.count, ds.dtypes[0], factor)
    for preferred in (f"refscale-{family}-x{factor}-jp2", f"refscale-{family}-x{factor}"):
        if preferred in fits:  # the LR goes down the link as JPEG 2000 in every product
            return preferred
    ref_models = [m for m in fits if m.startswith("refscale-")]
    if ref_models:
        return ref_models[0]
    log.warning("%s: no shipped RefScale model fits; using bicubic", path.name)
    return "bicubic"


def _link(lr: Path, out: Path, quality: float) -> int:
    """JPEG 2000 of the LR product (tags kept); returns the bitstream size in bytes."""
    with open_raster(lr, "LR product") as ds:
        arr, profile, tags, desc = ds.read(), ds.profile, ds.tags(), ds.descriptions
    return codecs.write_compressed(out, arr, profile, tags, "jpeg2000", quality,
                                   descriptions=desc)


def run_case(case: Case, catalog: Catalog, out: Path, *, factor: int, quality: float,
             crop: int | None) -> dict:
    """Onboard -> JPEG 2000 -> ground for one acquisition, with RefScale and with bicubic."""
    from georefscale.api import ground, onboard, relevance_map
    from georefscale.layers import enhancement_path
    from georefscale.options import GroundOptions, OnboardOptions, RateTarget

    target = _crop(case.target, crop, out / f"{case.label}_target.tif") if crop else case.target
    found = catalog.references_for(case.target, time="before")
    refs = [Path(r.href) for r in found.references]
    model = _model_for(target, case.family, factor)
    result = {"target": str(case.target), "crop": crop, "model": model,
              "references": [r.id for r in found.references],
              "ranking": found.best.ranking, "factor": factor, "codec": "jpeg2000",
              "quality": quality}
    with open_raster(target, "target") as ds:
        hr_pixels = ds.width * ds.height
    methods = {"refscale": model, "bicubic": "bicubic"} if model != "bicubic" else {
        "bicubic": "bicubic"}
    for tag, method in methods.items():
        lr = out / f"{case.label}_{tag}_lr.tif"
        jp2 = out / f"{case.label}_{tag}_lr.jp2"
        hr = out / f"{case.label}_{tag}_hr.tif"
        onboard(target, refs, out=lr, options=OnboardOptions(model=method, factor=factor))
        nbytes = _link(lr, jp2, quality)
        ground(jp2, refs, out=hr, options=GroundOptions(alpha=1.0, seed=0))
        fig = score_files(target, hr)
        psnr, ssim = fig["psnr_db"], fig["ssim"]
        result[tag] = {"lr": lr.name, "bitstream": jp2.name, "hr": hr.name, "bytes": nbytes,
                       "bpp_hr": codecs.bits_per_pixel(nbytes, (1, hr_pixels)),
                       "psnr": psnr, "ssim": ssim}
        if tag == "refscale":
            rel = out / f"{case.label}_relevance.tif"
            relevance_map(jp2, refs, out=rel)
            result["relevance"] = rel.name
    if model != "bicubic":  # the two-layer product at a target quality, beside the plain one
        goal = LAYERED_PSNR[case.family]
        base = out / f"{case.label}_layered_lr.jp2"
        hr = out / f"{case.label}_layered_hr.tif"
        options = OnboardOptions(model=model, factor=factor, rate=RateTarget(target_psnr=goal))
        onboard(target, refs, out=base, options=options)
        ground(base, refs, out=hr)
        enh = enhancement_path(base)  # none when the search coded the target directly
        nbytes = base.stat().st_size + (enh.stat().st_size if enh.is_file() else 0)
        fig = score_files(target, hr)
        psnr, ssim = fig["psnr_db"], fig["ssim"]
        result["layered"] = {"target_psnr": goal, "bitstream": base.name,
                             "product": "layered" if enh.is_file() else "direct",
                             "enhancement": enh.name if enh.is_file() else None, "hr": hr.name,
                             "bytes": nbytes,
                             "bpp_hr": codecs.bits_per_pixel(nbytes, (1, hr_pixels)),
                             "psnr": psnr, "ssim": ssim}
    result["reference"] = str(refs[0])
    result["target_used"] = str(target)
    return result


def run_demo(out_dir: str | Path, archive: str | Path | None = None, *, factor: int = 4,
             quality: float = DEFAULT_QUALITY, crop: int | None = None) -> dict:
    """Run the demo into ``out_dir``; returns the metrics written to ``metrics.json``."""
    from georefscale.demo_figure import figure

    archive = Path(archive) if archive else default_archive()
    _check_archive(archive)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_records([])
    catalog.ingest([archive / "naip", archive / "oscd"])
    catalog.save(out / "catalog.parquet")
    results = {c.label: run_case(c, catalog, out, factor=factor, quality=quality, crop=crop)
               for c in cases(catalog, archive)}
    write_json(out / "metrics.json", results)
    figure(results, out, out / "demo.png")
    return results
