"""``georefscale onboard | ground | roundtrip``: the file-level job on GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_MODEL = "refscale-s2-x4"  # kept equal to georefscale.pipeline.DEFAULT_MODEL (tested)
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
_cog = click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF.")
_refs = click.option(
    "-r",
    "--reference",
    "references",
    multiple=True,
    type=click.Path(),
    help="Reference GeoTIFF (repeat to mosaic several).",
)


def register(group: click.Group) -> None:
    group.add_command(onboard_cmd)
    group.add_command(ground_cmd)
    group.add_command(roundtrip_cmd)


@click.command("onboard")
@click.argument("target", type=click.Path())
@_refs
@click.option(
    "-f",
    "--factor",
    type=int,
    default=None,
    help="Rescaling factor, 2 or 4 (default: the model's).",
)
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model name.")
@click.option("-o", "--output", required=True, type=click.Path(), help="LR GeoTIFF to write.")
@click.option("--no-shift", is_flag=True, help="Do not estimate/correct the reference shift.")
@_tile
@_halo
@_cog
def onboard_cmd(target, references, factor, model, output, no_shift, tile, halo, cog):
    """Downscale TARGET with a co-registered reference into a tagged LR GeoTIFF."""
    from georefscale.pipeline import onboard

    out = onboard(
        target,
        list(references),
        out=output,
        factor=factor,
        model=model,
        tile=tile,
        halo=halo,
        cog=cog,
        correct_shift=not no_shift,
    )
    click.echo(str(out))


@click.command("ground")
@click.argument("lr", type=click.Path())
@_refs
@click.option("-o", "--output", required=True, type=click.Path(), help="HR GeoTIFF to write.")
@click.option(
    "--alpha",
    type=float,
    default=1.0,
    show_default=True,
    help="Latent temperature (z ~ N(0, alpha^2)).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Latent seed.")
@click.option("--tile", type=int, default=None, help="Tile size (default: as recorded).")
@click.option("--halo", type=int, default=None, help="Halo (default: as recorded).")
@_cog
def ground_cmd(lr, references, output, alpha, seed, tile, halo, cog):
    """Rebuild the HR scene from an LR product and the same reference, on the original grid."""
    from georefscale.pipeline import ground

    out = ground(
        lr, list(references), out=output, alpha=alpha, seed=seed, tile=tile, halo=halo, cog=cog
    )
    click.echo(str(out))


@click.command("roundtrip")
@click.argument("target", type=click.Path())
@_refs
@click.option("-f", "--factor", type=int, default=None, help="Rescaling factor, 2 or 4.")
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model name.")
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(),
    help="Directory for <target>_lr.tif and <target>_hr.tif.",
)
@click.option("--alpha", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_tile
@_halo
@_cog
def roundtrip_cmd(target, references, factor, model, output_dir, alpha, seed, tile, halo, cog):
    """onboard then ground; prints the reconstruction RMSE (DN) and PSNR (dB)."""
    from georefscale.pipeline import roundtrip

    stem = Path(target).stem
    res = roundtrip(
        target,
        list(references),
        lr_out=Path(output_dir) / f"{stem}_lr.tif",
        hr_out=Path(output_dir) / f"{stem}_hr.tif",
        factor=factor,
        model=model,
        alpha=alpha,
        seed=seed,
        tile=tile,
        halo=halo,
        cog=cog,
    )
    click.echo(
        f"LR  {res['lr']}\nHR  {res['hr']}\n"
        f"RMSE {res['rmse_dn']:.2f} DN   PSNR {res['psnr_db']:.2f} dB"
    )
