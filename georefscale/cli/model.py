"""Model commands: ``train``, ``info``, ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from georefscale.cli.options import ALPHA_HELP


@click.command("train")
@click.option("--config", "config", required=True, type=click.Path(exists=True, dir_okay=False),
              help="YAML training config (see configs/ in the repository).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (checkpoint, log, weights); default runs/<name>; resumes.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Root the config's data folder is relative to (default $GEOREFSCALE_DATA or "
                   "../shared/data).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (resumable).")
@click.option("--install", is_flag=True, help="Copy the finished model into the package's models.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(config, out_dir, data_root, max_steps, install, quiet):
    """Train a model from CONFIG (resumable: rerun the same command to continue)."""
    import shutil

    from georefscale.engine.weights import MODELS_DIR
    from georefscale.training import load_config, train

    cfg = load_config(config, data_root)
    out = Path(out_dir or Path("runs") / cfg.name)
    result = train(cfg, out, progress=not quiet, max_steps=max_steps)
    if result.suffix == ".safetensors":
        click.echo(f"weights: {result}")
        if install:
            for suffix in (".safetensors", ".json"):
                src = result.with_suffix(suffix)
                shutil.copy2(src, MODELS_DIR / src.name)
            click.echo(f"installed {cfg.name} into {MODELS_DIR}")
    else:
        click.echo(f"checkpoint: {result} (rerun to continue)")


@click.command("info")
@click.argument("model")
@click.option("--tile", type=int, default=512, show_default=True, help="HR tile size (pixels).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(model, tile, as_json):
    """Parameters, FLOPs and throughput of MODEL for one HR tile (on a CUDA GPU when there is
    one, else the CPU)."""
    from georefscale.engine.profile import profile_model

    report = profile_model(model, tile)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        click.echo(f"{key:>24}: {value}")


@click.command("evaluate")
@click.option("--pairs", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of <site>_<YYYYMMDD>.tif; latest date = target, the one before = "
                   "reference.")
@click.option("--factor", type=click.Choice(["2", "4"]), default="4", show_default=True)
@click.option("--model", default=None, help="RefScale model: name or trained .safetensors "
              "(default refscale-<family>-x<F>).")
@click.option("--noref", default=None, help="No-reference model: name or trained "
              ".safetensors (default noref-<family>-x<F>).")
@click.option("--family", default="s2", show_default=True, help="Model family: s2 or naip.")
@click.option("--site", "sites", multiple=True, help="Only these sites (repeatable).")
@click.option("--include-seen", is_flag=True,
              help="Also score sites whose target a model was trained or validated on.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--alpha", type=float, default=1.0, show_default=True, help=ALPHA_HELP)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the result JSON here.")
def evaluate_cmd(pairs, factor, model, noref, family, sites, include_seen, seed, alpha,
                 json_out):
    """PSNR / SSIM of bicubic, no-ref and RefScale over the sites of PAIRS (full file pipeline)."""
    from georefscale.atomic import write_json
    from georefscale.evaluation import default_methods, evaluate

    methods = default_methods(int(factor), family)
    if model:
        methods["refscale"] = model
    if noref:
        methods["noref"] = noref
    result = evaluate(pairs, int(factor), methods, sites=list(sites) or None, seed=seed,
                      alpha=alpha, include_seen=include_seen)
    echo_skipped_seen(result)
    if not any(row["psnr"] for row in result["sites"]):
        from georefscale.errors import InputError

        raise InputError(f"{pairs}: no site could be scored"
                         + (f"; {json_out} not written" if json_out else ""))
    labels = list(result["mean"]["psnr"])
    click.echo(f"{'site':<14}" + "".join(f"{m:>12}" for m in labels) + "   (PSNR dB / SSIM)")
    for row in result["sites"] + [{"site": "mean", **result["mean"]}]:
        click.echo(f"{row['site']:<14}" + "".join(
            f"{row['psnr'].get(m, float('nan')):>6.2f}/{row['ssim'].get(m, float('nan')):.3f}"
            for m in labels))
    for m, bands in result["mean"]["bands"].items():
        angle = result["mean"]["spectral_angle_deg"].get(m)
        click.echo(f"{m}: mean per band PSNR dB / SSIM " + ", ".join(
            f"{b['psnr_db']:.2f}/{b['ssim']:.3f}" for b in bands)
            + (f"; spectral angle {angle:.3f} deg" if angle is not None else ""))
    if result["mean"]["lr_psnr"]:
        click.echo("LR product vs bicubic LR, mean PSNR dB: " + ", ".join(
            f"{m} {v:.2f}" for m, v in result["mean"]["lr_psnr"].items()))
    if json_out:
        write_json(json_out, result)
        click.echo(f"wrote {json_out}")


def echo_skipped_seen(result: dict) -> None:
    """Name the sites an evaluation left out because a model had seen them."""
    if result["skipped_seen"]:
        click.echo("left out, in a model's training or validation data: "
                   f"{', '.join(result['skipped_seen'])} (--include-seen keeps them)")


def register(group: click.Group) -> None:
    group.add_command(evaluate_cmd)
    group.add_command(train_cmd)
    group.add_command(info_cmd)
