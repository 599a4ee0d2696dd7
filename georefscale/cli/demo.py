"""``georefscale demo``: the main job on the bundled sample archive."""

from __future__ import annotations

import json

import click


@click.command("demo")
@click.option("-o", "--out", "out_dir", default="demo-out", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the outputs (created).")
@click.option("--archive", type=click.Path(file_okay=False), default=None,
              help="Sample archive root (default $GEOREFSCALE_DATA or ../shared/data).")
@click.option("--factor", type=click.Choice(["2", "4"]), default="4", show_default=True)
@click.option("--quality", type=float, default=20.0, show_default=True,
              help="JPEG 2000 quality on the link (percent of the raw LR size).")
@click.option("--crop", type=int, default=None,
              help="Use a centred CROP x CROP window of each target (faster).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def demo_cmd(out_dir, archive, factor, quality, crop, as_json):
    """Catalog -> reference choice -> onboard + JPEG 2000 -> ground, on the sample archive.

    Writes LR and HR GeoTIFFs, JPEG 2000 bitstreams, relevance maps, metrics.json and demo.png.
    """
    from georefscale.demo import run_demo

    results = run_demo(out_dir, archive, factor=int(factor), quality=quality, crop=crop)
    if as_json:
        click.echo(json.dumps(results, indent=1))
        return
    for label, res in results.items():
        click.echo(f"{label}: target {res['target']}")
        click.echo(f"  reference {', '.join(res['references'])}, model {res['model']}")
        for method in ("refscale", "bicubic", "layered"):
            if method not in res:
                continue
            r = res[method]
            click.echo(f"  {method:>9}: {r['bytes']:>7} bytes ({r['bpp_hr']:.3f} bits/HR pixel), "
                       f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}"
                       + (f" (asked: {r['target_psnr']:g} dB)" if "target_psnr" in r else "")
                       + (", the target coded directly" if r.get("product") == "direct" else ""))
    click.echo(f"wrote {out_dir}/metrics.json and {out_dir}/demo.png")


def register(group: click.Group) -> None:
    group.add_command(demo_cmd)
