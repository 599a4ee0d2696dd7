"""``georefscale onboard | ground | roundtrip``: the main job on GeoTIFFs, one scene at a time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

DEFAULT_MODEL = "refscale-s2-x4"  # kept equal to georefscale.pipeline.DEFAULT_MODEL (tested)
MIN_AGREEMENT = 0.2  # kept equal to georefscale.pipeline.MIN_AGREEMENT (tested)
_tile = click.option(
    "--tile",
    type=int,
    default=512,
    show_default=True,
    help="Tile core size in HR pixels (multiple of the factor).",
)
_halo = click.option(
    "--halo",
    type=int,
    default=32,
    show_default=True,
    help="Tile overlap on each side in HR pixels (multiple of the factor).",
)
_cog = click.option("--cog", is_flag=True, help="Write Cloud-Optimized GeoTIFFs.")
_refs = click.option(
    "-r",
    "--reference",
    "references",
    multiple=True,
    type=click.Path(),
    help="Reference GeoTIFF: an older image of the same place (repeat to mosaic several).",
)
_catalog = click.option(
    "-c",
    "--catalog",
    type=click.Path(),
    default=None,
    help="Reference catalog (.parquet from `georefscale catalog build`) to pick the reference "
    "from, instead of --reference.",
)
_archive = click.option(
    "--archive",
    type=click.Path(),
    default=None,
    help="Root directory of the catalog's images (default: the one recorded in the catalog).",
)
_model = click.option(
    "-m",
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Model: a shipped one (refscale-s2-x4, noref-s2-x4, refscale-naip-x4, ...; see "
    "`georefscale info NAME`), bicubic, or a trained model's .safetensors file (card beside it).",
)
_factor = click.option(
    "-f", "--factor", type=int, default=None, help="Rescaling factor, 2 or 4 (default: the model's)"
)
_codec = click.option(
    "--codec",
    default=None,
    help="Code the LR product for the downlink, e.g. jpeg2000 (default: a lossless GeoTIFF).",
)
_quality = click.option(
    "--quality",
    type=float,
    default=None,
    help="Codec quality (jpeg2000: coded size in % of raw, 0-100).",
)
_allow_noref = click.option(
    "--allow-noref",
    is_flag=True,
    help="If no reference is found, use the model's no-reference twin instead of failing.",
)
_no_fallback = click.option(
    "--no-fallback",
    is_flag=True,
    help="Never fall back to the no-reference model on tiles where the reference is useless.",
)
_min_agreement = click.option(
    "--min-agreement",
    type=float,
    default=MIN_AGREEMENT,
    show_default=True,
    help="Tiles whose reference agrees less than this with the target's detail (correlation, "
    "-1..1) fall back to the no-reference model; 0 = off.",
)
_alpha = click.option(
    "--alpha",
    type=float,
    default=1.0,
    show_default=True,
    help="Latent temperature: z ~ N(0, alpha^2); 0 gives the mean (smoothest) reconstruction.",
)
_seed = click.option("--seed", type=int, default=0, show_default=True, help="Latent seed.")
_quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bars, no summary.")
_json = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")


def register(group: click.Group) -> None:
    group.add_command(onboard_cmd)
    group.add_command(ground_cmd)
    group.add_command(roundtrip_cmd)


def _progress(quiet: bool) -> bool | None:
    """Progress bars on stderr: off with --quiet, else only when stderr is a terminal."""
    return False if quiet else None


def _report(summary: dict, quiet: bool, as_json: bool, lines: list[str]) -> None:
    if as_json:
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                 for k, v in summary.items()}
        click.echo(json.dumps(clean, indent=2, default=str))
    elif not quiet:
        click.echo("\n".join(lines))


def _lr_lines(s: dict) -> list[str]:
    refs = ", ".join(s["references"]) or "none"
    lines = [
        f"LR   {s['lr']}",
        f"     {s['codec']}, {s['bytes']:,} bytes = {s['bits_per_pixel']:.3f} bits per HR pixel",
        f"     model {s['model']} x{s['factor']}, reference {refs}",
    ]
    if s["fallback_model"]:
        lines.append(
            f"     {s['fallback_tiles']} of {s['tiles']} tiles without the reference "
            f"({s['fallback_model']})"
        )
    return lines


@click.command("onboard")
@click.argument("target", type=click.Path())
@_refs
@_catalog
@_archive
@_factor
@_model
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="LR product to write (a GeoTIFF; with --codec the codec's extension is used).",
)
@_codec
@_quality
@_allow_noref
@_no_fallback
@_min_agreement
@click.option("--no-shift", is_flag=True, help="Do not estimate/correct the reference shift.")
@_tile
@_halo
@_cog
@_quiet
@_json
def onboard_cmd(target, references, catalog, archive, factor, model, output, codec, quality,
                allow_noref, no_fallback, min_agreement, no_shift, tile, halo, cog, quiet,
                as_json):
    """On board: shrink TARGET (a GeoTIFF) 2x or 4x into a tagged LR product.

    The reference (an older image of the same place) comes from --reference or is picked from
    --catalog. The LR product records the model, the reference ids and checksums and the
    original grid, so `georefscale ground` can rebuild the full-resolution scene.

    \b
    Example:
      georefscale onboard new.tif --catalog catalogs/naip.parquet -m refscale-naip-x4 \\
          --codec jpeg2000 --quality 20 -o lr.jp2
    """
    from georefscale.pipeline import describe_lr, onboard

    out = onboard(
        target,
        list(references) or None,
        out=output,
        catalog=catalog,
        archive=archive,
        factor=factor,
        model=model,
        codec=codec,
        quality=quality,
        allow_noref=allow_noref,
        noref_model=None if no_fallback else "auto",
        min_agreement=min_agreement,
        tile=tile,
        halo=halo,
        cog=cog,
        correct_shift=not no_shift,
        progress=_progress(quiet),
    )
    summary = describe_lr(out)
    _report(summary, quiet, as_json, _lr_lines(summary))


@click.command("ground")
@click.argument("lr", type=click.Path())
@_refs
@_catalog
@_archive
@click.option("-o", "--output", required=True, type=click.Path(), help="HR GeoTIFF to write.")
@click.option(
    "--relevance",
    type=click.Path(),
    default=None,
    help="Also write the relevance map (float32 GeoTIFF, 0..1: where the reference was used).",
)
@_alpha
@_seed
@click.option("--tile", type=int, default=None, help="Tile size (default: as recorded).")
@click.option("--halo", type=int, default=None, help="Halo (default: as recorded).")
@_cog
@_quiet
@_json
def ground_cmd(lr, references, catalog, archive, output, relevance, alpha, seed, tile, halo, cog,
               quiet, as_json):
    """On the ground: rebuild the full-resolution scene from the LR product LR.

    Needs the same reference as on board: give it with --reference, or --catalog to find it by
    the id recorded in LR. Its SHA-256 must match the recorded one. The output has the original
    grid, CRS, nodata and band names.

    \b
    Example:
      georefscale ground lr.jp2 --catalog catalogs/naip.parquet -o hr.tif --relevance rel.tif
    """
    from georefscale.pipeline import ground

    out = ground(
        lr,
        list(references) or None,
        out=output,
        catalog=catalog,
        archive=archive,
        alpha=alpha,
        seed=seed,
        tile=tile,
        halo=halo,
        cog=cog,
        relevance_out=relevance,
        progress=_progress(quiet),
    )
    summary = {"lr": str(lr), "hr": str(out), "alpha": alpha, "seed": seed,
               "relevance": str(relevance) if relevance else None}
    lines = [f"HR   {out}"] + ([f"relevance {relevance}"] if relevance else [])
    _report(summary, quiet, as_json, lines)


@click.command("roundtrip")
@click.argument("target", type=click.Path())
@_refs
@_catalog
@_archive
@_factor
@_model
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(),
    help="Directory for <target>_lr.tif (or .jp2 ...), <target>_hr.tif and the relevance map.",
)
@_codec
@_quality
@_allow_noref
@_no_fallback
@click.option("--relevance", is_flag=True, help="Also write <target>_relevance.tif.")
@_alpha
@_seed
@_tile
@_halo
@_cog
@_quiet
@_json
def roundtrip_cmd(target, references, catalog, archive, factor, model, output_dir, codec,
                  quality, allow_noref, no_fallback, relevance, alpha, seed, tile, halo, cog,
                  quiet, as_json):
    """Onboard then ground in one go; prints the LR size and the reconstruction error.

    The error is the RMSE in DN and the PSNR in dB (peak: reflectance 1.0 for Sentinel-2,
    255 for 8-bit) over the target's valid pixels.
    """
    from georefscale.pipeline import roundtrip

    stem = Path(target).stem
    d = Path(output_dir)
    res = roundtrip(
        target,
        list(references) or None,
        lr_out=d / f"{stem}_lr.tif",
        hr_out=d / f"{stem}_hr.tif",
        catalog=catalog,
        archive=archive,
        factor=factor,
        model=model,
        codec=codec,
        quality=quality,
        allow_noref=allow_noref,
        noref_model=None if no_fallback else "auto",
        alpha=alpha,
        seed=seed,
        tile=tile,
        halo=halo,
        cog=cog,
        relevance_out=d / f"{stem}_relevance.tif" if relevance else None,
        progress=_progress(quiet),
    )
    psnr = "inf" if math.isinf(res["psnr_db"]) else f"{res['psnr_db']:.2f}"
    lines = [*_lr_lines(res), f"HR   {res['hr']}"]
    if relevance:
        lines.append(f"relevance {res['relevance']}")
    lines.append(f"RMSE {res['rmse_dn']:.2f} DN   PSNR {psnr} dB")
    _report(res, quiet, as_json, lines)
