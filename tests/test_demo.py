"""The demo end to end on a small crop of the real sample archive (CLI and outputs)."""

from __future__ import annotations

import json

import rasterio
from click.testing import CliRunner

from georefscale.cli import main


def test_demo_writes_products_metrics_and_figure(data_dir, tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--archive", str(data_dir),
                                    "--crop", "128", "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"naip", "sentinel2"}
    naip, s2 = metrics["naip"], metrics["sentinel2"]
    # references come from the catalog: the newest older date of the same place
    assert naip["references"] == ["m_4709963_se_14_1_20190904"]
    assert s2["references"] == ["montpellier_20150812"]
    assert s2["model"] == "refscale-s2-x4-jp2" and naip["model"] == "refscale-naip-x4"
    for case in (naip, s2):
        for method in ("refscale", "bicubic"):
            m = case[method]
            assert m["bytes"] > 0 and 0 < m["bpp_hr"] < 16
            assert 15 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
            with rasterio.open(out / m["hr"]) as hr, rasterio.open(case["target_used"]) as t:
                assert (hr.crs, hr.transform, hr.shape) == (t.crs, t.transform, t.shape)
                assert hr.dtypes == t.dtypes
        layered = case["layered"]  # the two-layer product reaches what it was asked, and more
        assert layered["target_psnr"] <= layered["psnr"] < layered["target_psnr"] + 0.5
        assert layered["psnr"] > case["refscale"]["psnr"] and layered["bytes"] > 0
        # on these 128 px crops coding the target directly may need fewer bytes than two
        # layers (the search writes whichever does); a two-layer product has its second file
        if layered["product"] == "layered":
            assert (out / layered["enhancement"]).is_file()
        else:
            assert layered["product"] == "direct" and layered["enhancement"] is None
        with rasterio.open(out / case["relevance"]) as rel:
            assert rel.count == 1 and rel.dtypes[0] == "float32"
            values = rel.read(1)
            assert 0 <= values.min() and values.max() <= 1
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert (out / "catalog.parquet").exists()


def test_demo_without_archive_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d"),
                                    "--archive", str(tmp_path)])
    assert res.exit_code == 1
    assert "sample archive not found" in res.output
