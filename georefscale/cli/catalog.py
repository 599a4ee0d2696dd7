"""``georefscale catalog build|query|show``: the reference catalog from the command line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import click

from georefscale.errors import InputError


def register(group: click.Group) -> None:
    group.add_command(catalog)


@click.group()
def catalog() -> None:
    """Index GeoTIFF archives (stac-geoparquet) and pick references by AOI and time."""


@catalog.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Catalog file (.parquet); an existing catalog is updated.")
@click.option("--date-pattern", help="Regex on file names whose group 1 (or group 'date') is the "
              "acquisition date, e.g. '_(\\d{8})\\.tif$'. Default: ACQUISITION_DATE tag, then a "
              "YYYYMMDD token in the name.")
@click.option("--sensor", help="Platform/sensor name for the records (default: SENSOR tag).")
@click.option("--band-names", help="Comma-separated band names, e.g. red,green,blue,nir.")
@click.option("--collection", help="STAC collection id for the records.")
@click.option("--footprint", type=click.Choice(["auto", "valid", "bounds"]), default="auto",
              show_default=True,
              help="valid: from the nodata mask; auto: valid when a mask exists.")
@click.option("--archive", type=click.Path(file_okay=False, exists=True),
              help="Store hrefs relative to this folder (default: the catalog's folder).")
@click.option("--fresh", is_flag=True, help="Start a new catalog even if OUTPUT exists.")
def build(paths: tuple[str, ...], output: str, date_pattern: str | None, sensor: str | None,
          band_names: str | None, collection: str | None, footprint: str, archive: str | None,
          fresh: bool) -> None:
    """Build or update a catalog from GeoTIFF files, folders, globs or STAC JSON."""
    from georefscale.atomic import guard_outputs
    from georefscale.catalog import Catalog, IngestWarning

    out = Path(output)
    guard_outputs([out], [p for p in paths if Path(p).is_file()])
    cat = Catalog.load(out) if out.exists() and not fresh else Catalog()
    names = [n.strip() for n in band_names.split(",")] if band_names else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        result = cat.ingest(paths, date_pattern=date_pattern, platform=sensor, band_names=names,
                            collection=collection, footprint=footprint)
    for source, reason in result.skipped:
        click.echo(f"georefscale: warning: {source}: skipped: {reason}", err=True)
    if not result.records:
        raise InputError(f"{', '.join(paths)}: no readable raster or STAC item; {out} not written")
    guard_outputs([out], [r.href for r in cat])
    cat.save(out, archive=archive)
    click.echo(f"{out}: {len(cat)} records ({result.added} added, {result.updated} updated, "
               f"{len(result.skipped)} skipped)")


@catalog.command()
@click.argument("catalog_file", metavar="CATALOG", type=click.Path(dir_okay=False))
@click.option("--aoi", help="AOI: WKT, GeoJSON, a GeoJSON file or 'minx,miny,maxx,maxy'.")
@click.option("--aoi-crs", default="EPSG:4326", show_default=True, help="CRS of the AOI.")
@click.option("--target", help="Instead of --aoi: find references for this raster or STAC Item "
              "(file or URL; its footprint, date, gsd).")
@click.option("--before", help="Only records acquired strictly before this date/datetime.")
@click.option("--at", "at_time", help="Rank by nearness to this date (either side).")
@click.option("--max-age-days", type=float, help="Largest time gap in days.")
@click.option("--min-overlap", type=float, default=0.0, show_default=True,
              help="Smallest fraction of the AOI a record must cover.")
@click.option("--sensor", help="Case-insensitive substring of the platform/sensor.")
@click.option("--bands", "band_count", type=int, help="Required band count.")
@click.option("--gsd", type=float, help="Wanted resolution (m), used for ranking.")
@click.option("--gsd-tolerance", type=float, help="Relative resolution tolerance, e.g. 0.25.")
@click.option("--max-cloud", type=float, help="Largest cloud cover in percent.")
@click.option("--limit", type=int, default=10, show_default=True)
@click.option("--archive", type=click.Path(file_okay=False),
              help="Resolve relative hrefs against this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of records.")
def query(catalog_file: str, aoi: str | None, aoi_crs: str, target: str | None,
          before: str | None, at_time: str | None, max_age_days: float | None,
          min_overlap: float, sensor: str | None, band_count: int | None, gsd: float | None,
          gsd_tolerance: float | None, max_cloud: float | None, limit: int,
          archive: str | None, as_json: bool) -> None:
    """Ranked references for an AOI and a time (exit code 3 when there is none)."""
    from georefscale.catalog import Catalog

    if (aoi is None) == (target is None):
        raise InputError("give exactly one of --aoi and --target")
    cat = Catalog.load(catalog_file, archive=archive)
    filters: dict[str, Any] = dict(max_age_days=max_age_days, min_overlap=min_overlap,
                                   sensor=sensor, band_count=band_count,
                                   gsd_tolerance=gsd_tolerance, max_cloud=max_cloud, limit=limit)
    if target is not None:
        if before is not None and at_time is not None:
            raise InputError("give either --before or --at, not both")
        when = before or at_time
        if gsd is not None:
            filters["gsd"] = gsd
        result = cat.references_for(target, time="before" if before else "nearest", when=when,
                                    **filters)
    else:
        result = cat.query(aoi, aoi_crs=aoi_crs, before=before, at=at_time, gsd=gsd, **filters)
    rows = [{"rank": i + 1, **c.to_dict()} for i, c in enumerate(result.candidates)]
    in_mosaic = {c.record.id for c in result.mosaic or []}
    for row in rows:
        row["in_mosaic"] = row["id"] in in_mosaic
    listed = {row["id"] for row in rows}
    rows += [{"rank": None, **c.to_dict(), "in_mosaic": True}
             for c in result.mosaic or [] if c.record.id not in listed]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'rank':>4}  {'id':<36} {'date':<10} {'overlap':>7} {'gap d':>6} "
               f"{'score':>7}  href")
    for row in rows:
        rank = row["rank"] if row["rank"] is not None else "+"
        click.echo(f"{rank:>4}  {row['id']:<36} {row['datetime'][:10]:<10} "
                   f"{row['overlap']:>7.1%} {row['ranking']['time_gap_days'] or 0:>6.0f} "
                   f"{row['score']:>7.3f}  {row['href']}")
    if result.mosaic:
        click.echo(f"no single record covers the AOI; mosaic of {len(result.mosaic)}: "
                   + ", ".join(c.record.id for c in result.mosaic))


@catalog.command()
@click.argument("catalog_file", metavar="CATALOG", type=click.Path(dir_okay=False))
@click.argument("record_id", required=False)
@click.option("--archive", type=click.Path(file_okay=False),
              help="Resolve relative hrefs against this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--export", type=click.Path(dir_okay=False),
              help="Also write all records as a STAC ItemCollection JSON file.")
def show(catalog_file: str, record_id: str | None, archive: str | None, as_json: bool,
         export: str | None) -> None:
    """Summarise a catalog, or print one record (a STAC Item) with RECORD_ID."""
    from georefscale.catalog import Catalog

    cat = Catalog.load(catalog_file, archive=archive)
    if export:
        cat.export_items(export)
    if record_id is not None:
        click.echo(json.dumps(cat.get(record_id).to_item().to_dict(include_self_link=False),
                              indent=1))
        return
    records = list(cat)
    summary: dict[str, Any] = {"catalog": str(cat.path), "archive": str(cat.archive),
                               "records": len(records)}
    if records:
        times = sorted(r.datetime for r in records)
        west = min(r.bbox[0] for r in records)
        south = min(r.bbox[1] for r in records)
        east = max(r.bbox[2] for r in records)
        north = max(r.bbox[3] for r in records)
        summary.update({
            "first": times[0].isoformat(), "last": times[-1].isoformat(),
            "bbox": [west, south, east, north],
            "crs": sorted({r.crs or "?" for r in records}),
            "platforms": sorted({r.platform or "?" for r in records}),
            "ids": [r.id for r in records],
        })
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    for key, value in summary.items():
        if key == "ids":
            value = ", ".join(value[:6]) + (" ..." if len(value) > 6 else "")
        click.echo(f"{key:>10}: {value}")
