"""What the redesign into option types, products, reference sets and plans fixed and made
possible: catalog ids kept through the archive, one valid-pixel rule, archive codec and fallback
options, split ground, roundtrip into a new folder, options checked once. Real data (OSCD)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale.api import ground, roundtrip
from georefscale.archive import process_archive
from georefscale.catalog import Catalog, ingest
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.options import (
    ClusterOptions,
    CodecChoice,
    FallbackPolicy,
    GroundOptions,
    OnboardOptions,
    TilingOptions,
    check_factor,
)
from georefscale.raster.grid import Grid
from georefscale.raster.io import write_geotiff
from georefscale.report import reconstruction_error

BICUBIC = OnboardOptions(model="bicubic", tiling=TilingOptions(128, 16))


@pytest.fixture(scope="module")
def stac_like_catalog(oscd_dir: Path, tmp_path_factory) -> Path:
    """The rio pair catalogued under ids that are not the file stems, as STAC items have."""
    records = ingest([oscd_dir / "rio_20160424.tif", oscd_dir / "rio_20171011.tif"]).records
    renamed = [dataclasses.replace(r, id=f"S2A_MSIL1C_{r.id.upper()}") for r in records]
    path = tmp_path_factory.mktemp("cat") / "rio.parquet"
    Catalog.from_records(renamed).save(path)
    return path


def test_archive_records_catalog_ids_and_ground_finds_them(stac_like_catalog, tmp_path):
    """Defect: the archive recorded the file stem, so `ground --catalog` failed."""
    out = tmp_path / "out"
    result = process_archive(stac_like_catalog, out, onboard=BICUBIC,
                             cluster=ClusterOptions(workers=0), progress=False)
    assert not result.failed, result.failed
    scene = "S2A_MSIL1C_RIO_20171011"
    lr = out / scene / f"{scene}_lr.tif"
    with rasterio.open(lr) as ds:
        assert ds.tags()["GEOREFSCALE_REFERENCE_ID"] == "S2A_MSIL1C_RIO_20160424"
    res = CliRunner().invoke(main, ["ground", str(lr), "--catalog", str(stac_like_catalog),
                                    "-o", str(tmp_path / "hr.tif"), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "hr.tif").is_file()


def test_reconstruction_error_ignores_nan_nodata(oscd_dir, tmp_path):
    """Defect: NaN nodata was tested by equality and gave psnr inf / rmse nan."""
    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        a = ds.read().astype(np.float32)
        grid = Grid.from_dataset(ds)
    a[:, :40, :40] = np.nan
    b = a + 10.0
    target = write_geotiff(tmp_path / "t.tif", a, grid, nodata=float("nan"))
    hr = write_geotiff(tmp_path / "h.tif", b, grid, nodata=float("nan"))
    err = reconstruction_error(target, hr, 10000.0)
    assert err["rmse_dn"] == pytest.approx(10.0, abs=1e-3)
    assert err["psnr_db"] == pytest.approx(60.0, abs=1e-3)


def test_archive_takes_codec_and_fallback_options(oscd_dir, tmp_path):
    """`archive --codec --quality --no-fallback --min-agreement --no-shift`, recorded in the
    manifests; the coded product is grounded."""
    cat = tmp_path / "cat.parquet"
    Catalog.from_records(ingest([oscd_dir / "rio_20160424.tif",
                                 oscd_dir / "rio_20171011.tif"]).records).save(cat)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [
        "archive", str(cat), "-o", str(out), "-m", "bicubic", "--tile", "128", "--halo", "16",
        "--codec", "jpeg2000", "--quality", "30", "--no-fallback", "--min-agreement", "0.3",
        "--no-shift", "--ground", "-w", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    scene = json.loads((out / "rio_20171011" / "manifest.json").read_text())
    assert scene["products"]["lr"]["file"] == "rio_20171011_lr.jp2"
    assert scene["options"]["codec"] == {"name": "jpeg2000", "quality": 30.0}
    assert scene["options"]["fallback"]["noref_model"] is None
    assert scene["options"]["fallback"]["min_agreement"] == 0.3
    assert scene["options"]["correct_shift"] is False
    assert scene["metrics"]["psnr_db"] > 25
    header = json.loads((out / "manifest.json").read_text())
    assert header["codec"] == {"name": "jpeg2000", "quality": 30.0}
    assert header["fallback"]["enabled"] is False
    assert sorted(p.name for p in (out / "rio_20171011").iterdir()) == [
        "manifest.json", "rio_20171011_hr.tif", "rio_20171011_lr.jp2"]


def test_roundtrip_creates_its_output_folder(oscd_dir, tmp_path):
    d = tmp_path / "new" / "deeper"
    res = CliRunner().invoke(main, ["roundtrip", str(oscd_dir / "rio_20171011.tif"), "-r",
                                    str(oscd_dir / "rio_20160424.tif"), "-m", "bicubic",
                                    "--tile", "128", "--halo", "16", "-o", str(d), "--json"])
    assert res.exit_code == 0, res.output
    assert (d / "rio_20171011_hr.tif").is_file() and (d / "rio_20171011_lr.tif").is_file()


@pytest.mark.parametrize("make, match", [
    (lambda: TilingOptions(tile=4), "tile 4 must be an integer of at least 32"),
    (lambda: TilingOptions(halo=-8), "halo -8"),
    (lambda: GroundOptions(alpha=float("nan")), "alpha must be a finite number"),
    (lambda: GroundOptions(alpha=float("inf")), "alpha must be a finite number"),
    (lambda: FallbackPolicy(min_agreement=float("nan")), "min_agreement"),
    (lambda: FallbackPolicy(min_agreement=5), "min_agreement"),
    (lambda: CodecChoice(quality=20), "a quality needs a codec"),
    (lambda: OnboardOptions(factor=3), "factor must be 2 or 4"),
    (lambda: ClusterOptions(workers=2, scheduler="tcp://x:1"), "not both"),
])
def test_options_are_checked_once_where_they_are_defined(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_one_factor_rule():
    for bad in (1, 3, 8, True):
        with pytest.raises(InputError, match="factor must be 2 or 4"):
            check_factor(bad)
    check_factor(2), check_factor(4), check_factor(None)


@pytest.mark.parametrize("args, match", [
    (["--tile", "4"], "tile 4 must be an integer of at least 32"),
    (["--alpha", "nan"], "alpha must be a finite number"),
    (["--min-agreement", "5"], "min_agreement must be a finite number in"),
])
def test_cli_refuses_bad_option_values(oscd_dir, tmp_path, args, match):
    res = CliRunner().invoke(main, ["roundtrip", str(oscd_dir / "rio_20171011.tif"), "-r",
                                    str(oscd_dir / "rio_20160424.tif"), "-m", "bicubic", "-o",
                                    str(tmp_path / "o"), *args])
    assert res.exit_code != 0 and match in res.output
    assert not (tmp_path / "o").exists()


def test_legacy_keywords_still_work_with_a_deprecation(oscd_dir, tmp_path):
    target, ref = oscd_dir / "rio_20171011.tif", oscd_dir / "rio_20160424.tif"
    with pytest.warns(DeprecationWarning, match=r"OnboardOptions\(tiling.tile=...\)"):
        res = roundtrip(target, ref, lr_out=tmp_path / "lr.tif", hr_out=tmp_path / "hr.tif",
                        model="bicubic", tile=128, halo=16)
    assert math.isfinite(res["psnr_db"])
    with pytest.warns(DeprecationWarning, match="moved to georefscale.api.ground"):
        from georefscale import pipeline

        assert pipeline.ground is ground


def test_packages_import_light():
    """torch only under engine/ and training/; `georefscale.raster` without scikit-image."""
    code = ("import sys; import georefscale, georefscale.options, georefscale.product, "
            "georefscale.references, georefscale.raster, georefscale.engine.cards, "
            "georefscale.evaluation.sites; "
            "georefscale.engine.cards.available_models(); "
            "print('torch' in sys.modules, 'skimage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_roundtrip_reports_per_band_figures(oscd_dir, tmp_path):
    res = CliRunner().invoke(main, ["roundtrip", str(oscd_dir / "rio_20171011.tif"), "-r",
                                    str(oscd_dir / "rio_20160424.tif"), "-m", "bicubic",
                                    "-o", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["bands"]) == 4 and 0 < out["spectral_angle_deg"] < 10
    pooled = 10 * math.log10(1e8 / np.mean([b["rmse_dn"] ** 2 for b in out["bands"]]))
    assert abs(pooled - out["psnr_db"]) < 0.01  # the bands have the same valid samples
    assert all(0 < b["ssim"] < 1 for b in out["bands"])
    assert out["ssim"] == pytest.approx(np.mean([b["ssim"] for b in out["bands"]]))
