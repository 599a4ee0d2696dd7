"""Downlink commands: ``rd`` (rate-distortion of direct vs rescaled coding)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import click

from georefscale.cli.model import echo_skipped_seen


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from exc


@click.command("rd")
@click.option("--pairs", "pairs", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of <site>_<YYYYMMDD>.tif (latest = target, the one before = reference).")
@click.option("--factor", type=click.IntRange(2, 4), default=4, show_default=True,
              help="Rescaling factor (2 or 4).")
@click.option("--codec", default="jpeg2000", show_default=True,
              help="Lossy codec (see georefscale.codecs.available_codecs()).")
@click.option("--methods", default="bicubic,noref-s2-x4,refscale-s2-x4", show_default=True,
              help="Comma-separated engine models; those `load` does not accept are skipped.")
@click.option("--bpp", "bpp", default=None,
              help="jpeg2000 rate ladder, bits per HR pixel, comma-separated.")
@click.option("--qualities", default=None, help="Quality ladder of jpeg/webp, comma-separated.")
@click.option("--json", "json_out", required=True, type=click.Path(dir_okay=False),
              help="Write the curves and BD-rates here.")
@click.option("--site", "sites", multiple=True, help="Only these sites (repeatable).")
@click.option("--include-seen", is_flag=True,
              help="Also score sites whose target a model was trained or validated on.")
@click.option("--plot", "plot_out", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG of PSNR vs bits per HR pixel.")
@click.option("--layered", is_flag=True,
              help="Add the two-layer product (RefScale base + residual enhancement layer), "
              "bit savings at 36/40/44 dB and the near-lossless table.")
def rd_cmd(pairs, factor, codec, methods, bpp, qualities, json_out, sites, include_seen,
           plot_out, layered):
    """PSNR vs bits per HR pixel of direct coding and rescale + code, and BD-rates."""
    from georefscale.atomic import write_json
    from georefscale.errors import InputError
    from georefscale.evaluation import ratedistortion as rd
    from georefscale.options import check_factor

    check_factor(factor)
    for name, values in (("--bpp", _floats(bpp)), ("--qualities", _floats(qualities))):
        if values and not all(math.isfinite(v) and v > 0 for v in values):
            raise InputError(f"{name} values must be positive numbers, got {values}")
    for out in (json_out, plot_out):
        if out is not None and not Path(out).resolve().parent.is_dir():
            raise InputError(f"{out}: directory does not exist")
    logging.basicConfig(level=logging.WARNING, format="georefscale: warning: %(message)s")
    kwargs = {}
    if _floats(bpp):
        kwargs["bpp"] = _floats(bpp)
    if _floats(qualities):
        kwargs["qualities"] = _floats(qualities)
    result = rd.evaluate(pairs, factor, codec, [m for m in methods.split(",") if m],
                         sites=list(sites) or None, include_seen=include_seen, layered=layered,
                         **kwargs)
    echo_skipped_seen(result)
    if not result["sites"]:
        raise InputError(f"{pairs}: no site could be scored (see the warnings); "
                         f"{json_out} not written")
    write_json(json_out, result)
    if plot_out:
        rd.plot(result, plot_out)
    click.echo(f"{'site':<14}" + "".join(f"{m:>16}" for m in result["bd_rate"]))
    for site, s in list(result["sites"].items()) + [("mean", result)]:
        click.echo(f"{site:<14}" + "".join(f"{_percent(s['bd_rate'].get(m)):>16}"
                                           for m in result["bd_rate"]))
    click.echo(f"BD-rate vs direct {codec} (negative = fewer bits); JSON: {json_out}")
    for line in band_table(result):
        click.echo(line)
    if "near_lossless" in result:  # --layered, and at least one site the product codes
        lo, hi = result["bd_rate_range"]["psnr_db"]
        click.echo(f"BD-rate over {lo:g}-{hi:g} dB only: " + ", ".join(
            f"{name} {_percent(v)}" for name, v in result["bd_rate_range"].items()
            if name != "psnr_db"))
        for name, row in result["savings"].items():
            click.echo(f"{name:<16} bits saved vs direct at " + ", ".join(
                f"{p} dB {_percent(v)}" for p, v in row.items()))
        for e, row in result["near_lossless"].items():
            click.echo(f"max error {e:>3} DN: layered {row['layered_bpp']:.3f} bpp, saves "
                       f"{_percent(row['saving_vs_lossless'])} vs lossless and "
                       f"{_percent(row['saving_vs_quantised'])} vs quantised direct")


def band_table(result: dict) -> list[str]:
    """The per-band figures of ``rd``'s result as text lines: per site and method, the
    reconstruction without coding (``uncoded``), PSNR dB / SSIM per band and the spectral
    angle (degrees).

    Args:
        result: :func:`~georefscale.evaluation.ratedistortion.evaluate`'s result.

    Returns:
        A header and one line per site and method (none when no method was scored).
    """
    rows = [(site, method, fig) for site, s in result["sites"].items()
            for method, fig in s["uncoded"].items()]
    if not rows:
        return []
    count = max(len(fig["bands"]) for _, _, fig in rows)
    lines = ["without coding, per band PSNR dB / SSIM:",
             f"{'site':<14}{'method':<18}" + "".join(f"{f'band {i}':>14}"
                                                     for i in range(1, count + 1))
             + f"{'angle deg':>11}"]
    for site, method, fig in rows:
        angle = fig["spectral_angle_deg"]
        lines.append(f"{site:<14}{method:<18}" + "".join(
            f"{b['psnr_db']:>8.2f}/{b['ssim']:.3f}" for b in fig["bands"])
            + (f"{angle:>11.3f}" if angle is not None else f"{'n/a':>11}"))
    return lines


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:+.1f} %"


def register(group: click.Group) -> None:
    group.add_command(rd_cmd)
