"""``georefscale archive``: every scene of a catalog through the pipeline on Dask distributed."""

from __future__ import annotations

import click

from georefscale.cli.options import (
    alpha_opt,
    onboard_option_group,
    seed_opt,
)
from georefscale.options import ClusterOptions

CLUSTER = ClusterOptions()



def register(group: click.Group) -> None:
    group.add_command(archive_cmd)


@click.command("archive")
@click.argument("catalog", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), help="Output directory.")
@click.option("--after", default=None, help="Targets acquired on or after this date.")
@click.option("--before", default=None, help="Targets acquired strictly before this date.")
@click.option("--aoi", default=None, help="AOI: bbox, WKT, GeoJSON or a GeoJSON file.")
@click.option("--aoi-crs", default=None, help="CRS of --aoi (default EPSG:4326).")
@onboard_option_group(allow_noref=False)
@click.option("--ground", "do_ground", is_flag=True, help="Also rebuild the HR scene and score it.")
@alpha_opt
@seed_opt
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
    default=CLUSTER.split_pixels,
    show_default=True,
    help="Scenes with more pixels are split into tile bands across workers.",
)
@click.option("--archive-root", default=None, type=click.Path(), help="Where catalog hrefs live.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
# taken only to be refused with the reason (plan_archive): masks come from each reference record
@click.option("--reference-mask", "reference_masks", multiple=True, hidden=True)
def archive_cmd(catalog, out, after, before, aoi, aoi_crs, options, do_ground, alpha, seed,
                workers, scheduler, split_pixels, archive_root, no_progress, reference_masks):
    """Process every CATALOG record acquired in [--after, --before) (and --aoi) as a target:
    its reference is picked among earlier records, then onboard (and ground) run as one task per
    scene; results go to OUT/<id>/ with a manifest, OUT/manifest.json summarises the archive.
    A reference is masked by its record's mask asset (scl, cloud, cloud-shadow, data-mask),
    else by the spectral cloud test. Rerunning skips finished scenes. Exit code 1 when a scene
    failed."""
    from dataclasses import replace

    from georefscale.archive import process_archive
    from georefscale.catalog import Catalog
    from georefscale.errors import GeoRefScaleError
    from georefscale.options import GroundOptions

    cluster = ClusterOptions(workers=workers, scheduler=scheduler, split_pixels=split_pixels)
    result = process_archive(
        Catalog.load(catalog, archive_root),
        out,
        selection={"after": after, "before": before, "aoi": aoi, "aoi_crs": aoi_crs},
        onboard=replace(options, reference_masks=reference_masks),
        ground=GroundOptions(alpha=alpha, seed=seed) if do_ground else None,
        cluster=cluster,
        progress=not no_progress,
        log=lambda msg: click.echo(msg, err=True),
    )
    failed = result.failed
    if failed:
        raise GeoRefScaleError(
            f"{len(failed)} of {len(result.scenes)} scenes failed (first: {failed[0]['id']}: "
            f"{failed[0]['error']}); see {result.manifest}"
        )
