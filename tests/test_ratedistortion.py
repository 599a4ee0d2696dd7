"""Rate-distortion evaluation and the ``rd`` command on a real OSCD city (norcia, 241 x 385)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rasterio.windows import Window

from georefscale import codecs
from georefscale.errors import InputError
from georefscale.evaluation import ratedistortion
from georefscale.evaluation.sites import find_sites

SMALL_BPP = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


@pytest.fixture(scope="module")
def norcia_dir(oscd_dir: Path, tmp_path_factory) -> Path:
    """A pairs folder with norcia's two dates (symlinks) and a single-date decoy site."""
    d = tmp_path_factory.mktemp("pairs")
    for p in oscd_dir.glob("norcia_*.tif"):
        (d / p.name).symlink_to(p)
    (d / "lonely_20170101.tif").symlink_to(oscd_dir / "rio_20171011.tif")
    (d / "notes.txt").write_text("not a raster")
    return d


@pytest.fixture(scope="module")
def result(norcia_dir: Path) -> dict:
    return ratedistortion.evaluate(norcia_dir, 4, "jpeg2000", ["bicubic"], bpp=SMALL_BPP)


def test_jpeg2000_ladder_samples_the_same_hr_rates_for_lr_and_direct():
    hr = (4, 240, 384)
    direct = ratedistortion.ladder("jpeg2000", hr, hr, "uint16", bpp=(0.1, 1.0, 40.0))
    lr = ratedistortion.ladder("jpeg2000", (4, 60, 96), hr, "uint16", bpp=(0.1, 1.0, 40.0))
    # 0.1 bit per HR pixel of 4 x 16-bit bands = 0.15625 % of raw; the LR raw is 16x smaller
    assert direct == pytest.approx([0.1562, 1.5625, 62.5])
    assert lr == pytest.approx([2.5, 25.0])  # 1000 % dropped
    assert ratedistortion.ladder("jpeg", hr, hr, "uint8", qualities=(10, 90)) == [10, 90]
    with pytest.raises(InputError, match="lossless"):
        ratedistortion.ladder("zstd", hr, hr, "uint16")


def test_rising_drops_plateaus():
    curve = [[0.1, 30.0], [0.2, 31.0], [0.4, 31.02], [0.8, 31.5], [1.6, 31.5]]
    assert ratedistortion.rising(curve) == [[0.1, 30.0], [0.2, 31.0], [0.8, 31.5]]


def test_result_layout_and_values(result):
    assert result["codec"] == "jpeg2000" and result["factor"] == 4
    assert set(result) >= {"curves", "bd_rate", "sites", "psnr"}
    assert list(result["sites"]) == ["norcia"]
    site = result["sites"]["norcia"]
    assert site["target"] == "norcia_20171018.tif" and site["reference"] == "norcia_20150711.tif"
    direct, bicubic = np.array(site["curves"]["direct"]), np.array(site["curves"]["bicubic"])
    assert len(direct) == len(SMALL_BPP) and len(bicubic) == len(SMALL_BPP)
    # rates land near the requested bits per HR pixel (header + GeoJP2 box on top)
    assert np.all(np.abs(direct[:, 0] - SMALL_BPP) < 0.05 + 0.1 * np.array(SMALL_BPP))
    assert np.all(np.diff(direct[:, 1]) > 0)
    # coding can only lose: every bicubic point is at or below its uncoded ceiling
    assert np.all(bicubic[:, 1] <= site["ceiling"]["bicubic"] + 0.01)
    assert 25 < site["ceiling"]["bicubic"] < 45
    bd = site["bd_rate"]["bicubic"]
    assert bd is not None and -1 < bd < 1
    assert result["bd_rate"]["bicubic"] == pytest.approx(bd)
    json.dumps(result)  # JSON-ready


def test_bpp_accounting_matches_coded_bytes(norcia_dir):
    site = find_sites(norcia_dir)[0]
    target, valid, profile = ratedistortion._load_target(site, 4)
    assert target.shape == (4, 240, 384)  # cropped from 241 x 385 to a multiple of 4
    q = ratedistortion.ladder("jpeg2000", target.shape, target.shape, "uint16", bpp=(0.3,))
    curve = ratedistortion.direct_curve(target, valid, "jpeg2000", 10000.0, q, profile)
    nbytes = len(codecs.encode(target, "jpeg2000", q[0], profile=profile))
    assert curve[0][0] == pytest.approx(8 * nbytes / (240 * 384))


def test_unloadable_methods_are_skipped_with_a_warning(norcia_dir, caplog):
    with caplog.at_level(logging.WARNING):
        models = ratedistortion.load_methods(["bicubic", "no-such-model"], 4)
    assert list(models) == ["bicubic"]
    assert "no-such-model" in caplog.text
    with pytest.raises(InputError, match="none of the methods"):
        ratedistortion.load_methods(["no-such-model"], 4)


def test_lossless_codec_has_no_curve(norcia_dir):
    with pytest.raises(InputError, match="lossless"):
        ratedistortion.evaluate(norcia_dir, 4, "deflate", ["bicubic"])


def test_plot_writes_a_png(result, tmp_path):
    out = tmp_path / "rd.png"
    ratedistortion.plot(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rd.png"]


def test_rd_command(oscd_dir, norcia_dir, tmp_path):
    from georefscale.cli import main

    out, png = tmp_path / "rd.json", tmp_path / "rd.png"
    res = CliRunner().invoke(main, [
        "rd", "--pairs", str(oscd_dir), "--site", "norcia", "--factor", "4", "--codec", "jpeg2000",
        "--methods", "bicubic,no-such-model", "--bpp", "0.05,0.1,0.2,0.4,0.8",
        "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data["curves"]) == {"direct", "bicubic"}
    assert list(data["sites"]) == ["norcia"] and data["skipped_seen"] == []
    assert "norcia" in res.output and "mean" in res.output
    bands = data["sites"]["norcia"]["uncoded"]["bicubic"]["bands"]
    row = next(ln for ln in res.output.splitlines() if ln.startswith("norcia") and "bicubic" in ln)
    assert [f"{b['psnr_db']:.2f}/{b['ssim']:.3f}" for b in bands] == row.split()[2:6]
    assert png.stat().st_size > 1000
    bad = CliRunner().invoke(main, ["rd", "--pairs", str(norcia_dir), "--codec", "jpeg3000",
                                    "--json", str(tmp_path / "x.json")])
    assert bad.exit_code == 1
    assert "unknown codec 'jpeg3000'" in bad.output and "jpeg2000" in bad.output
    assert not (tmp_path / "x.json").exists()


def _rio_pairs(oscd_dir: Path, tmp_path: Path, win: Window, edit_target=None) -> Path:
    """A pairs folder with both dates of Rio cropped to ``win`` (GeoTIFFs on the window's grid);
    ``edit_target`` may change the target's (latest date's) pixels in place before writing."""
    import rasterio

    from georefscale.raster.grid import Grid
    from georefscale.raster.io import write_geotiff

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    sources = sorted(oscd_dir.glob("rio_*.tif"))
    for src in sources:
        with rasterio.open(src) as ds:
            data = ds.read(window=win)
            if edit_target is not None and src == sources[-1]:
                edit_target(data)
            write_geotiff(pairs / src.name, data, Grid.from_dataset(ds).window_grid(win),
                          descriptions=ds.descriptions)
    return pairs


def test_rd_layered_on_a_real_city(oscd_dir, tmp_path):
    """``rd --layered`` on a crop of Rio (both dates): the two-layer envelope spans the base
    layer alone below 31 dB up to near-lossless, saves bits against direct JPEG 2000 over
    30-44 dB, and its near-lossless table adds up."""
    from georefscale.cli import main
    from georefscale.evaluation.layered import BD_RANGE, MAX_ERRORS

    pairs = _rio_pairs(oscd_dir, tmp_path, Window(96, 64, 192, 160))
    out = tmp_path / "rd.json"
    res = CliRunner().invoke(main, [
        "rd", "--pairs", str(pairs), "--factor", "4", "--methods", "refscale-s2-x4",
        "--layered", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    site = data["sites"]["rio"]
    curve = site["curves"]["layered"]
    assert curve[0][1] < BD_RANGE[0] + 1 and curve[-1][1] > 50
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in zip(curve, curve[1:], strict=False))
    assert data["bd_rate_range"]["psnr_db"] == list(BD_RANGE)
    assert data["bd_rate_range"]["layered"] < 0
    assert "BD-rate over 30-44 dB only: " in res.output
    assert set(data["savings"]["layered"]) == {"36", "40", "44"}
    for e in MAX_ERRORS:
        row = site["near_lossless"][str(e)]
        assert row["saving_vs_lossless"] == pytest.approx(
            1 - row["layered_bytes"] / row["direct_lossless_bytes"])
        assert row["direct_quantised_bytes"] <= row["direct_lossless_bytes"]


def test_rd_layered_leaves_out_a_scene_the_product_refuses(oscd_dir, tmp_path, caplog):
    """A Rio crop whose target holds a 0 / 45000 DN checkerboard (far outside what the model
    saw): the rebuild leaves the enhancement layer's 16 bits at every base rate, so ``rd
    --layered`` warns, names the file and still scores the base layer (was an AttributeError)."""
    from georefscale.cli import main

    def checkerboard(data):
        yy, xx = np.mgrid[:16, :16]
        data[:, 16:32, 16:32] = np.where((yy + xx) % 2, 45000, 0)

    pairs = _rio_pairs(oscd_dir, tmp_path, Window(96, 64, 64, 64), edit_target=checkerboard)
    sources = sorted(pairs.glob("rio_*.tif"))
    out = tmp_path / "rd.json"
    res = CliRunner().invoke(main, [
        "rd", "--pairs", str(pairs), "--factor", "4", "--methods", "refscale-s2-x4",
        "--layered", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{sources[-1].name}: left out of the layered results" in caplog.text
    data = json.loads(out.read_text())
    site = data["sites"]["rio"]
    assert "layered" not in site["curves"] and "near_lossless" not in site
    assert "near_lossless" not in data and "refscale-s2-x4" in site["curves"]
