"""The experiment scripts of docs/experiments/: each core function on a small crop of a real OSCD
test city with an untrained network of the shipped architecture."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

EXP = Path(__file__).resolve().parents[1] / "docs" / "experiments"
sys.path.insert(0, str(EXP))

import _common  # noqa: E402
import fig4_latent_samples as fig4  # noqa: E402
import fig5_temperature as fig5  # noqa: E402
import fig6_misalignment as fig6  # noqa: E402
import reference_age  # noqa: E402
import reference_bound  # noqa: E402
import table1_complexity as table1  # noqa: E402
import table2_compression as table2  # noqa: E402
import training_curves  # noqa: E402

CROP = 64


@pytest.fixture(scope="module")
def model():
    return _common.get_model("untrained-x4")


@pytest.fixture(scope="module")
def scene(oscd_dir):
    from georefscale.evaluation.sites import find_sites

    return _common.load_scene(find_sites(oscd_dir, ["norcia"])[0], 4, CROP)


@pytest.fixture(scope="module")
def other(oscd_dir):
    from georefscale.evaluation.sites import find_sites

    return _common.load_scene(find_sites(oscd_dir, ["rio"])[0], 4, 48)


def test_scene_is_a_central_crop_with_an_aligned_reference(scene, oscd_dir):
    assert scene.target.shape == scene.reference.shape == (4, CROP, CROP)
    assert scene.dtype == "uint16" and scene.peak == 10000.0
    assert scene.valid.all() and np.isfinite(scene.reference).all()
    with rasterio.open(oscd_dir / scene.target_file) as src:
        win = Window((src.width - CROP) // 2, (src.height - CROP) // 2, CROP, CROP)
        assert np.array_equal(src.read(window=win), scene.target)
    assert scene.reference_file < scene.target_file  # the earlier date


def test_latent_samples_differ_between_seeds_only(model, scene):
    run = fig4.latent_samples(model, scene, seeds=(0, 1, 2))
    s = run["stats"]
    assert run["samples"].shape == (3, 4, CROP, CROP)
    assert s["pair_rms_dn"] > 0 and s["sample_std_dn"] > 0
    assert 0 <= s["hf_fraction"] <= 1 and -1 <= s["lag1_corr"] <= 1
    assert np.isfinite(s["recon_psnr_db"]) and np.isfinite(s["edge_corr"])
    again = fig4.latent_samples(model, scene, seeds=(0, 0))
    assert again["stats"]["pair_rms_dn"] == 0  # same seed, same reconstruction


def test_spectral_statistics_tell_noise_from_structure():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(2, 128, 128))
    ramp = np.broadcast_to(np.sin(np.linspace(0, 3, 128)), (2, 128, 128)).copy()
    assert abs(fig4.hf_fraction(noise) - 0.75) < 0.03
    assert fig4.hf_fraction(ramp) < 0.05
    assert abs(fig4.lag1_corr(noise)) < 0.05
    assert fig4.lag1_corr(ramp) > 0.5


def test_temperature_sweep_degrades_with_alpha(model, scene):
    run = fig5.temperature_sweep(model, scene, alphas=(0.0, 1.0, 9.0))
    assert run["alpha"] == [0.0, 1.0, 9.0]
    assert len(run["psnr"]) == len(run["ssim"]) == len(run["images"]) == 3
    assert run["psnr"][0] > run["psnr"][2] and run["ssim"][0] > run["ssim"][2]
    assert 20 < run["bicubic"]["psnr"] < 60


def test_translate_and_rotate_resample_the_reference(scene):
    ref = scene.reference
    moved = fig6.translate(ref, 20)
    assert np.isnan(moved[:, :, :20]).all()
    np.testing.assert_allclose(moved[:, :, 20:], ref[:, :, :-20], rtol=1e-4, atol=0.5)
    np.testing.assert_allclose(fig6.rotate(ref, 0.0), ref, rtol=1e-4, atol=0.5)
    turned = fig6.rotate(ref, 10.0)
    assert np.isnan(turned[:, 0, 0]).all() and np.isfinite(turned[:, CROP // 2, CROP // 2]).all()
    assert not np.allclose(np.nan_to_num(turned), ref)
    assert fig6.fit_to(ref[:, :40, :50], (CROP, CROP)).shape == (4, CROP, CROP)


def test_misalignment_rows_cover_every_case(model, scene, other):
    noref = _common.get_model("untrained-noref-x4")
    run = fig6.misalignment(model, scene, other.reference, noref)
    cases = [(r["case"], r["where"]) for r in run["rows"]]
    assert cases[0] == ("aligned", "both")
    for case in ("translate 20 px", "translate 40 px", "rotate 5 deg", "rotate 10 deg", "zeros",
                 "other city"):
        assert (case, "ground") in cases and (case, "both") in cases
    assert ("no-reference model", "both") in cases and ("bicubic", "both") in cases
    for r in run["rows"]:
        assert np.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1
        if r["relevance"] is not None:
            assert 0 <= r["relevance"] <= 1
    t40 = next(r for r in run["rows"] if r["case"] == "translate 40 px")
    assert t40["covered_fraction"] == pytest.approx(1 - 40 / CROP)
    assert run["maps"]["aligned"].shape == (CROP, CROP)
    mean = fig6.mean_rows([run, run])
    assert [m["psnr"] for m in mean] == pytest.approx([r["psnr"] for r in run["rows"]])


def test_complexity_counts_parameters_and_flops():
    x2 = table1.complexity(_common.get_model("untrained-x2"), tile=64)
    x4 = table1.complexity(_common.get_model("untrained-x4"), tile=64)
    for r in (x2, x4):
        assert r["parameters"] > r["encoder_parameters"] > 0
        assert r["gflops_downscale"] > 0 and r["gflops_upscale"] > 0
    assert x4["parameters"] > x2["parameters"]
    assert "| x2 |" in table1.table([x2, x4])


def test_compression_table_from_the_rd_evaluator(oscd_dir, tmp_path, crop):
    for path in oscd_dir.glob("norcia_*.tif"):
        crop(path, tmp_path / path.name, 96)
    result = table2.run_rd(tmp_path, ["norcia"], 4, "jpeg2000", ["bicubic"],
                           bpp=(0.2, 0.5, 1.0, 2.0, 3.0))
    assert result["sites"]["norcia"]["hr_pixels"] == 96 * 96
    summ = table2.summary(result, levels=(20.0, 30.0, 90.0))
    totals = summ["total_bits_at_psnr"]
    assert totals["90"]["direct"] is None and totals["90"]["bicubic"] is None
    assert totals["20"]["direct"] <= totals["30"]["direct"]
    assert 20 < summ["ceiling_psnr"]["bicubic"] < 60
    md = table2.markdown(summ)
    assert "direct (no rescaling)" in md and "bicubic" in md


def test_bits_at_psnr_interpolates_in_log_rate():
    curve = [[0.1, 30.0], [0.4, 34.0], [1.6, 38.0], [3.2, 38.01]]
    assert table2.bits_at_psnr(curve, 32.0, 100) == pytest.approx(20.0)
    assert table2.bits_at_psnr(curve, 25.0, 100) == pytest.approx(10.0)
    assert table2.bits_at_psnr(curve, 39.0, 100) is None


def test_outputs_are_written_atomically(model, scene, tmp_path):
    run = fig4.latent_samples(model, scene, seeds=(0, 1))
    written = _common.write_outputs(tmp_path, "fig4", {"stats": run["stats"]}, "| a |",
                                    fig4.figure(scene, run, crop=32))
    assert [p.name for p in written] == ["fig4.json", "fig4.md", "fig4.png"]
    assert json.loads(written[0].read_text())["stats"]["site"] == "norcia"
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig4.json", "fig4.md", "fig4.png"]


def test_reference_bound_orders_the_oracles(scene):
    from dataclasses import replace

    got = reference_bound.bound(scene, 4)
    assert set(got) == set(reference_bound.METHODS)
    # g = 0 and g = 1 are among the least-squares gains' choices, on/off includes g = 0
    assert got["oracle gain"] >= got["oracle on/off"] - 1e-6 >= got["bicubic"] - 2e-6
    assert 20 < got["bicubic"] < 50
    # a reference that is the target itself carries all the missing detail
    same = reference_bound.bound(replace(scene, reference=scene.target.copy()), 4)
    assert same["ref detail"] > 100 and same["oracle gain"] > 100


def test_reference_age_pairs_span_days_to_years(data_dir):
    from datetime import date

    assert reference_age.acquired(Path("S2A_T33UUU_20160529_B03_crop1024.tif")) == date(2016, 5, 29)
    assert reference_age.acquired(Path("rio_20171011.tif")) == date(2017, 10, 11)
    found = reference_age.pairs()
    gaps = {data: sorted(reference_age.gap_days(s) for d, s in found if d == data)
            for data, _ in found}
    assert gaps["sentinel2-b03"] == [10]
    assert len(gaps["oscd"]) == 5 and 500 < min(gaps["oscd"])
    assert len(gaps["naip"]) == 9 and gaps["naip"][0] == 362 and gaps["naip"][-1] > 4000
    assert {s.target.name for d, s in found if d == "naip"} == {"m_4709963_se_14_1_20200831.tif"}


def test_training_curves_read_the_same_history_from_run_and_card(oscd_dir, tmp_path):
    from georefscale.engine import NetConfig
    from georefscale.training import TrainConfig, train

    cfg = TrainConfig(name="tiny", folder=str(oscd_dir), dtype="uint16", scale=10000.0,
                      band_names=["B02", "B03", "B04", "B08"],
                      net=NetConfig(factor=4, blocks=1, hidden=8, ref_features=4),
                      train_sites=["pisa"], val_sites=["bercy"], steps=4, batch=2, crop=32,
                      warmup=2, val_every=2, val_crop=64, ckpt_every=4, threads=2,
                      compile=False)
    train(cfg, tmp_path, progress=False, device="cpu")
    from_log = training_curves.history(str(tmp_path))
    from_card = training_curves.history(str(tmp_path / "tiny.json"))
    assert [r["step"] for r in from_log] == [2, 4]
    assert from_log == from_card
    assert training_curves.psnr_at(from_log, 3) == from_log[0]["psnr"]
    assert training_curves.psnr_at(from_log, 5) is None
