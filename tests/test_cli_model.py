"""`georefscale info` and `georefscale evaluate` on real data through the CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner

from georefscale.cli import main
from georefscale.engine.weights import MODELS_DIR


def test_info_reports_params_flops_and_throughput():
    res = CliRunner().invoke(main, ["info", "bicubic", "--tile", "64", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["model"] == "bicubic" and report["parameters"] == 0
    assert report["tiles_per_s_upscale"] > 0


def test_info_of_a_shipped_model_quotes_its_card():
    res = CliRunner().invoke(main, ["info", "refscale-s2-x2", "--tile", "64", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    card = json.loads((MODELS_DIR / "refscale-s2-x2.json").read_text())
    assert report["parameters"] == card["parameters"] and report["factor"] == 2
    assert report["val_psnr_db_by_alpha"] == {
        a: round(v, 2) for a, v in card["temperature"]["psnr"].items()}
    assert report["latent_rms"] == round(card["temperature"]["latent_rms"], 3)


def test_info_unknown_model_lists_available():
    res = CliRunner().invoke(main, ["info", "nope"])
    assert res.exit_code == 1
    assert "unknown model 'nope'; available: bicubic" in res.output


def test_evaluate_writes_the_documented_json(oscd_dir, tmp_path):
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(main, ["evaluate", "--pairs", str(oscd_dir), "--factor", "4",
                                    "--site", "norcia", "--json", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["factor"] == 4
    (site,) = result["sites"]
    assert site["site"] == "norcia"
    assert site["target"] == "norcia_20171018.tif" and site["reference"] == "norcia_20150711.tif"
    # bicubic x4 on a real Sentinel-2 city: a plausible, not perfect, reconstruction
    assert 25 < site["psnr"]["bicubic"] < 45
    assert 0.5 < site["ssim"]["bicubic"] < 1
    assert result["mean"]["psnr"]["bicubic"] == site["psnr"]["bicubic"]
    # the networks' LR products stay close to, but are not, the bicubic LR
    assert set(site["lr_psnr"]) == {"noref", "refscale"}
    assert all(35 < v < 80 for v in site["lr_psnr"].values())
    assert "LR product vs bicubic LR" in res.output
    assert "10000 DN" in result["convention"]


def test_evaluate_bad_factor_is_a_clear_error(oscd_dir):
    res = CliRunner().invoke(main, ["evaluate", "--pairs", str(oscd_dir), "--factor", "3"])
    assert res.exit_code == 2
    assert "'3' is not one of '2', '4'" in res.output
