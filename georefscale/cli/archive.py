"""``georefscale archive``: every scene of a catalog through the pipeline on Dask distributed."""

from __future__ import annotations

import click

DEFAULT_MODEL = "refscale-s2-x4"  # kept equal to georefscale.pipeline.DEFAULT_MODEL (tested)


def register(group: click.Group) -> None:
    group.add_command(archive_cmd)


@click.command("archive")
@click.argument("catalog", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), help="Output directory.")
@click.option("--after", default=None, help="Targets acquired on or after this date.")
@click.option("--before", default=None, help="Targets acquired strictly before this date.")
@click.option("--aoi", default=None, help="AOI: bbox, WKT, GeoJSON or a GeoJSON file.")
@click.option("--aoi-crs", default=None, help="CRS of --aoi (default EPSG:4326).")
@click.option(
    "-m",
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Model name, a trained model's .safetensors file, or 'auto' to pick a shipped model "
    "fitting each scene.",
)
@click.option("-f", "--factor", type=int, default=None, help="2 or 4 (default: the model's).")
@click.option("--ground", "do_ground", is_flag=True, help="Also rebuild the HR scene and score it.")
@click.option("--alpha", type=float, default=1.0, show_default=True, help="Latent temperature.")
@click.option("--seed", type=int, default=0, show_default=True, help="Latent seed.")
@click.option("--tile", type=int, default=512, show_default=True, help="Tile core (HR pixels).")
@click.option("--halo", type=int, default=32, show_default=True, help="Tile overlap (HR pixels).")
@click.option("--cog", is_flag=True, help="Write Cloud-Optimized GeoTIFFs.")
@click.option(
    "-w",
    "--workers",
    type=int,
    default=None,
    help="LocalCluster process workers (default: one per core; 0: serial, no Dask).",
)
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler.")
@click.option(
    "--split-pixels",
    type=int,
    default=64_000_000,
    show_default=True,
    help="Scenes with more pixels are split into tile bands across workers.",
)
@click.option("--archive-root", default=None, type=click.Path(), help="Where catalog hrefs live.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def archive_cmd(catalog, out, after, before, aoi, aoi_crs, model, factor, do_ground, alpha, seed,
                tile, halo, cog, workers, scheduler, split_pixels, archive_root, no_progress):
    """Process every CATALOG record acquired in [--after, --before) (and --aoi) as a target:
    its reference is picked among earlier records, then onboard (and ground) run as one task per
    scene; results go to OUT/<id>/ with a manifest, OUT/manifest.json summarises the archive.
    Rerunning skips finished scenes. Exit code 1 when a scene failed."""
    from georefscale.catalog import Catalog
    from georefscale.distributed import process_archive
    from georefscale.errors import GeoRefScaleError, InputError

    if workers is not None and scheduler is not None:
        raise InputError("give either --workers or --scheduler, not both")
    result = process_archive(
        Catalog.load(catalog, archive_root),
        out,
        after=after,
        before=before,
        aoi=aoi,
        aoi_crs=aoi_crs,
        model=model,
        factor=factor,
        ground=do_ground,
        alpha=alpha,
        seed=seed,
        tile=tile,
        halo=halo,
        cog=cog,
        workers=workers,
        scheduler=scheduler,
        split_pixels=split_pixels,
        progress=not no_progress,
        log=lambda msg: click.echo(msg, err=True),
    )
    failed = result.failed
    if failed:
        raise GeoRefScaleError(
            f"{len(failed)} of {len(result.scenes)} scenes failed (first: {failed[0]['id']}: "
            f"{failed[0]['error']}); see {result.manifest}"
        )
