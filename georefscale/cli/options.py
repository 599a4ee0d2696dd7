"""Click options shared by the commands, built from :mod:`georefscale.options` (the only copy
of every default), in the manner of rasterio's ``rio/options.py``; and the conversion of the
parsed values into the option value types."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from georefscale.options import (
    DECISIONS,
    DEFAULT_CODED_MODEL,
    DEFAULT_MODEL,
    MASK_RULES,
    CodecChoice,
    FallbackPolicy,
    GroundOptions,
    OnboardOptions,
    RateTarget,
    TilingOptions,
)

TILING = TilingOptions()
FALLBACK = FallbackPolicy()
GROUND = GroundOptions()
ONBOARD = OnboardOptions()

tile_opt = click.option(
    "--tile",
    type=int,
    default=TILING.tile,
    show_default=True,
    help="Tile core size in HR pixels (multiple of the factor).",
)
halo_opt = click.option(
    "--halo",
    type=int,
    default=TILING.halo,
    show_default=True,
    help="Tile overlap on each side in HR pixels (multiple of the factor).",
)
cog_opt = click.option("--cog", is_flag=True, help="Write Cloud-Optimized GeoTIFFs.")
refs_opt = click.option(
    "-r",
    "--reference",
    "references",
    multiple=True,
    type=click.Path(),
    help="Reference GeoTIFF: an older image of the same place (repeat to mosaic several).",
)
ref_masks_opt = click.option(
    "--reference-mask",
    "reference_masks",
    multiple=True,
    type=click.Path(),
    help="Cloud / shadow mask raster of a reference, in the references' order (repeat per "
    "reference); replaces its mask asset and the spectral cloud test. On the ground: the mask "
    "the product was made with.",
)
mask_rule_opt = click.option(
    "--reference-mask-rule",
    type=click.Choice(MASK_RULES),
    default=ONBOARD.reference_mask_rule,
    show_default=True,
    help="How --reference-mask values mark masked pixels: nonzero (any value but 0), or scl "
    "(Sentinel-2 L2A scene classes: 3, 8, 9, 10 cloudy, 0 no data).",
)
catalog_opt = click.option(
    "-c",
    "--catalog",
    type=click.Path(),
    default=None,
    help="Reference catalog (.parquet from `georefscale catalog build`) to pick the reference "
    "from, instead of --reference.",
)
archive_opt = click.option(
    "--archive",
    type=click.Path(),
    default=None,
    help="Root directory of the catalog's images (default: the one recorded in the catalog).",
)
model_opt = click.option(
    "-m",
    "--model",
    default=None,
    help=f"Model: a shipped one (refscale-s2-x4, noref-s2-x4, refscale-naip-x4, ...; see "
    f"`georefscale info NAME`), bicubic, a trained model's .safetensors file (card beside it), or "
    f"(archive) 'auto' to pick a shipped model fitting each scene. Default: {DEFAULT_MODEL}, or "
    f"{DEFAULT_CODED_MODEL} when the LR is coded with JPEG 2000 (--codec jpeg2000 or a rate "
    f"target).",
)
factor_opt = click.option(
    "-f", "--factor", type=int, default=None, help="Rescaling factor, 2 or 4 (default: the model's)"
)
codec_opt = click.option(
    "--codec",
    default=None,
    help="Code the LR product for the downlink, e.g. jpeg2000 (default: a lossless GeoTIFF).",
)
quality_opt = click.option(
    "--quality",
    type=float,
    default=None,
    help="Codec quality (jpeg2000: coded size in % of raw, 0-100).",
)
allow_noref_opt = click.option(
    "--allow-noref",
    is_flag=True,
    help="If no reference is found, use the model's no-reference twin instead of failing.",
)
no_fallback_opt = click.option(
    "--no-fallback",
    is_flag=True,
    help="Never fall back to the no-reference model on tiles where the reference is useless.",
)
min_agreement_opt = click.option(
    "--min-agreement",
    type=float,
    default=FALLBACK.min_agreement,
    show_default=True,
    help="Tiles whose reference agrees less than this with the target's detail (correlation, "
    "-1..1) fall back to the no-reference model; 0 = off.",
)
decide_opt = click.option(
    "--decide",
    type=click.Choice(DECISIONS),
    default=FALLBACK.decide,
    show_default=True,
    help="How each tile picks between the reference model, its no-reference twin and bicubic: "
    "'agreement' (the fallback tests alone) or 'measure' (rebuild each on board, keep the best; "
    "records the decision and the reference's gain per tile; about 3-4x the network passes).",
)
#: the one wording of ``--alpha`` (``ground``, ``roundtrip``, ``archive``, ``evaluate``)
ALPHA_HELP = ("Latent temperature, relative to the model's latent: z ~ N(0, (alpha * s)^2), s = "
              "the model card's sampling_scale (the forward latent's RMS where it is below 1, "
              "else 1; `georefscale info` shows it); 0 gives the mean (smoothest) "
              "reconstruction.")
alpha_opt = click.option(
    "--alpha",
    type=float,
    default=GROUND.alpha,
    show_default=True,
    help=ALPHA_HELP,
)
seed_opt = click.option("--seed", type=int, default=GROUND.seed, show_default=True,
                        help="Latent seed.")
quiet_opt = click.option("-q", "--quiet", is_flag=True, help="No progress bars, no summary.")
json_opt = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")


no_shift_opt = click.option("--no-shift", is_flag=True,
                            help="Do not estimate/correct the reference shift.")
bands_opt = click.option(
    "--bands",
    default=None,
    help="The input band for each of the model's bands, in the model's order, as 1-based "
    "indexes (e.g. 2,3,4,8 of a 13-band Sentinel-2 stack) or names (B02,B03,B04,B08); for the "
    "target and its references alike. Default: found by the band descriptions.",
)


rate_opts = [
    click.option("--max-bytes", type=int, default=None,
                 help="Two-layer product: the best quality in at most this many bytes (both "
                 "files)."),
    click.option("--bpp", type=float, default=None,
                 help="Two-layer product: the same as bits per HR pixel."),
    click.option("--target-psnr", type=float, default=None,
                 help="Two-layer product: the fewest bytes reaching this PSNR (dB)."),
    click.option("--max-error", type=int, default=None,
                 help="Two-layer product: every valid pixel within this many DN of the target "
                 "(0: lossless)."),
    click.option("--try-factor", "try_factors", type=click.Choice(["2", "4"]), multiple=True,
                 help="Rate search: also measure base layers of this factor (the model's "
                 "family; repeatable; each costs one more on-board LR)."),
    click.option("--no-direct", is_flag=True,
                 help="Rate search: never code the target directly (always two layers)."),
]


def _rate(max_bytes: int | None, bpp: float | None, target_psnr: float | None,
          max_error: int | None, try_factors: tuple[str, ...], no_direct: bool
          ) -> RateTarget | None:
    if (max_bytes, bpp, target_psnr, max_error) == (None, None, None, None):
        if try_factors or no_direct:
            raise click.UsageError("--try-factor and --no-direct need a rate target "
                                   "(--max-bytes, --bpp, --target-psnr or --max-error)")
        return None
    return RateTarget(max_bytes=max_bytes, bpp=bpp, target_psnr=target_psnr,
                      max_error=max_error, factors=tuple(int(f) for f in try_factors),
                      direct=not no_direct)


def onboard_option_group(*, allow_noref: bool = True) -> Callable:
    """Decorator: the on-board options (model, factor, codec, fallback, shift, tiling, COG) as
    click options, handed to the command as one ``options`` :class:`OnboardOptions`.

    Args:
        allow_noref: also offer ``--allow-noref``.
    """
    opts = [model_opt, factor_opt, codec_opt, quality_opt, *rate_opts,
            *([allow_noref_opt] if allow_noref else []), no_fallback_opt, min_agreement_opt,
            decide_opt, no_shift_opt, bands_opt, tile_opt, halo_opt, cog_opt]

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args: Any, **kw: Any) -> Any:
            kw["options"] = OnboardOptions(
                model=kw.pop("model"),
                factor=kw.pop("factor"),
                tiling=TilingOptions(kw.pop("tile"), kw.pop("halo")),
                fallback=FallbackPolicy(
                    noref_model=None if kw.pop("no_fallback") else FALLBACK.noref_model,
                    min_agreement=kw.pop("min_agreement"), decide=kw.pop("decide")),
                codec=CodecChoice(kw.pop("codec"), kw.pop("quality")),
                rate=_rate(kw.pop("max_bytes"), kw.pop("bpp"), kw.pop("target_psnr"),
                           kw.pop("max_error"), kw.pop("try_factors"), kw.pop("no_direct")),
                correct_shift=not kw.pop("no_shift"),
                allow_noref=kw.pop("allow_noref", False),
                cog=kw.pop("cog"),
                bands=kw.pop("bands"),
            )
            return command(*args, **kw)

        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper

    return decorate
