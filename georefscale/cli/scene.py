"""``georefscale onboard | ground | roundtrip``: the main job on GeoTIFFs, one scene at a time."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from georefscale.cli.options import (
    alpha_opt,
    archive_opt,
    catalog_opt,
    cog_opt,
    json_opt,
    mask_rule_opt,
    onboard_option_group,
    quiet_opt,
    ref_masks_opt,
    refs_opt,
    seed_opt,
)


def target_inputs(command: Callable) -> Callable:
    """Decorator: TARGET and where its reference comes from (``-r`` / ``--catalog`` /
    ``--archive``)."""
    for opt in (archive_opt, catalog_opt, refs_opt, click.argument("target", type=click.Path())):
        command = opt(command)
    return command


def register(group: click.Group) -> None:
    group.add_command(onboard_cmd)
    group.add_command(ground_cmd)
    group.add_command(roundtrip_cmd)


def _progress(quiet: bool) -> bool | None:
    """Progress bars on stderr: off with --quiet, else only when stderr is a terminal."""
    return False if quiet else None


def _report(summary: dict, quiet: bool, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(_finite(summary), indent=2, default=str))
    elif not quiet:
        click.echo("\n".join(lines))


def _finite(value: object) -> object:
    """``value`` with non-finite floats (an exact reconstruction's PSNR) as None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _lr_lines(s: dict) -> list[str]:
    if s.get("product") == "direct":
        bound = s["max_error"]
        return [f"LR   {s['lr']}",
                f"     the target coded directly ({s['codec']}; cheaper than two layers), "
                f"{s['bytes']:,} bytes = {s['bits_per_pixel']:.3f} bits per HR pixel"
                + (f", every valid pixel within {bound} DN" if bound is not None else "")]
    refs = ", ".join(s["references"]) or "none"
    lines = [
        f"LR   {s['lr']}",
        f"     {s['codec']}, {s['bytes']:,} bytes = {s['bits_per_pixel']:.3f} bits per HR pixel",
        f"     model {s['model']} x{s['factor']}, reference {refs}",
    ]
    if s.get("layers") == 2:
        lines.append(f"     base layer {s['base_bytes']:,} bytes + enhancement layer "
                     f"{s['enhancement_bytes']:,} bytes ({s['enhancement']})")
    if s["fallback_model"]:
        lines.append(
            f"     {s['fallback_tiles']} of {s['tiles']} tiles without the reference "
            f"({s['fallback_model']})"
        )
    return lines


@click.command("onboard")
@target_inputs
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="LR product to write (a GeoTIFF; with --codec the codec's extension is used).",
)
@onboard_option_group()
@ref_masks_opt
@mask_rule_opt
@quiet_opt
@json_opt
def onboard_cmd(target, references, catalog, archive, output, options, reference_masks,
                reference_mask_rule, quiet, as_json):
    """On board: shrink TARGET (a GeoTIFF or a STAC Item; a file or URL) 2x or 4x into a
    tagged LR product.

    The reference (an older image of the same place) comes from --reference or is picked from
    --catalog. The LR product records the model, the reference ids and checksums and the
    original grid, so `georefscale ground` can rebuild the full-resolution scene.

    \b
    Example:
      georefscale onboard new.tif --catalog catalogs/naip.parquet -m refscale-naip-x4 \\
          --codec jpeg2000 --quality 20 -o lr.jp2
    """
    from georefscale.api import onboard
    from georefscale.report import describe_lr

    options = replace(options, reference_masks=reference_masks,
                      reference_mask_rule=reference_mask_rule)
    out = onboard(target, list(references) or None, out=output, catalog=catalog,
                  archive=archive, options=options, progress=_progress(quiet))
    summary = describe_lr(out)
    _report(summary, quiet, as_json, _lr_lines(summary))


@click.command("ground")
@click.argument("lr", type=click.Path())
@refs_opt
@catalog_opt
@archive_opt
@click.option("-o", "--output", required=True, type=click.Path(), help="HR GeoTIFF to write.")
@click.option(
    "--relevance",
    type=click.Path(),
    default=None,
    help="Also write the relevance map (float32 GeoTIFF, 0..1: where the reference was used).",
)
@alpha_opt
@seed_opt
@click.option("--tile", type=int, default=None, help="Tile size (default: as recorded).")
@click.option("--halo", type=int, default=None, help="Halo (default: as recorded).")
@click.option("-m", "--model", "model_file", type=click.Path(), default=None,
              help="The trained model's .safetensors file the product was made with (its card "
              "name must be the recorded one; default: the recorded shipped model).")
@click.option("--noref-model", "noref_file", type=click.Path(), default=None,
              help="The same for the recorded no-reference model.")
@click.option("--enhancement", type=click.Path(), default=None,
              help="Enhancement layer of a two-layer product (default: LR's <stem>.enh.jp2).")
@click.option("--base-only", is_flag=True,
              help="Of a two-layer product, rebuild the base layer alone.")
@ref_masks_opt
@cog_opt
@quiet_opt
@json_opt
def ground_cmd(lr, references, catalog, archive, output, relevance, alpha, seed, tile, halo,
               model_file, noref_file, enhancement, base_only, reference_masks, cog, quiet,
               as_json):
    """On the ground: rebuild the full-resolution scene from the LR product LR.

    Needs the same reference as on board: give it with --reference, or --catalog to find it by
    the id recorded in LR. Its SHA-256 must match the recorded one. The output has the original
    grid, CRS, nodata and band names.

    \b
    Example:
      georefscale ground lr.jp2 --catalog catalogs/naip.parquet -o hr.tif --relevance rel.tif
    """
    from georefscale.api import ground
    from georefscale.options import GroundOptions

    options = GroundOptions(alpha=alpha, seed=seed, tile=tile, halo=halo, cog=cog,
                            base_only=base_only, reference_masks=reference_masks)
    out = ground(lr, list(references) or None, out=output, catalog=catalog, archive=archive,
                 options=options, relevance_out=relevance, model=model_file,
                 noref_model=noref_file, enhancement=enhancement, progress=_progress(quiet))
    summary = {"lr": str(lr), "hr": str(out), "alpha": alpha, "seed": seed,
               "relevance": str(relevance) if relevance else None}
    import rasterio

    with rasterio.open(out) as ds:
        tags = ds.tags()
    bound = tags.get("GEOREFSCALE_MAX_ERROR")
    if tags.get("GEOREFSCALE_LAYERS") == "2":
        summary.update(layers=2, enhancement=tags.get("GEOREFSCALE_ENHANCEMENT"),
                       max_error_dn=int(bound) if bound else None,
                       alpha=float(tags["GEOREFSCALE_ALPHA"]),
                       seed=int(tags["GEOREFSCALE_SEED"]))
    elif tags.get("GEOREFSCALE_LAYERS") == "0":
        summary.update(layers=0, product="direct", max_error_dn=int(bound) if bound else None,
                       alpha=None, seed=None)
    lines = [f"HR   {out}"] + ([f"relevance {relevance}"] if relevance else [])
    if summary.get("product") == "direct":
        lines.append("     decoded from the directly coded target"
                     + (f", every valid pixel within {summary['max_error_dn']} DN"
                        if summary["max_error_dn"] is not None else ""))
    if summary.get("layers") == 2:
        lines.append(f"     base + enhancement {summary['enhancement']}"
                     + (f", every valid pixel within {summary['max_error_dn']} DN"
                        if summary["max_error_dn"] is not None else ""))
    _report(summary, quiet, as_json, lines)


@click.command("roundtrip")
@target_inputs
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(),
    help="Directory (created) for <target>_lr.tif (or .jp2 ...), <target>_hr.tif and the "
    "relevance map.",
)
@onboard_option_group()
@ref_masks_opt
@mask_rule_opt
@click.option("--relevance", is_flag=True, help="Also write <target>_relevance.tif.")
@alpha_opt
@seed_opt
@quiet_opt
@json_opt
def roundtrip_cmd(target, references, catalog, archive, output_dir, options, reference_masks,
                  reference_mask_rule, relevance, alpha, seed, quiet, as_json):
    """Onboard then ground in one go; prints the LR size and the reconstruction error.

    The error is the RMSE in DN and the PSNR in dB (peak: reflectance 1.0 for Sentinel-2,
    255 for 8-bit) over the target's valid pixels.
    """
    from georefscale.api import roundtrip
    from georefscale.options import GroundOptions

    stem = Path(target).stem
    d = Path(output_dir)
    options = replace(options, reference_masks=reference_masks,
                      reference_mask_rule=reference_mask_rule)
    res = roundtrip(target, list(references) or None, lr_out=d / f"{stem}_lr.tif",
                    hr_out=d / f"{stem}_hr.tif", catalog=catalog, archive=archive,
                    options=(options, GroundOptions(alpha=alpha, seed=seed)),
                    relevance_out=d / f"{stem}_relevance.tif" if relevance else None,
                    progress=_progress(quiet))
    psnr = "inf" if math.isinf(res["psnr_db"]) else f"{res['psnr_db']:.2f}"
    lines = [*_lr_lines(res), f"HR   {res['hr']}"]
    if relevance:
        lines.append(f"relevance {res['relevance']}")
    lines.append(f"RMSE {res['rmse_dn']:.2f} DN   PSNR {psnr} dB")
    _report(res, quiet, as_json, lines)
