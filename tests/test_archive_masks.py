"""The archive masks a reference by its catalog record's mask asset as ``onboard --catalog``
does (issue 24), on real Rio crops: the reference has a drawn cloud and shadow and an SCL-like
``scl`` asset (``test_refmask``), target and reference are band-asset STAC Items. The archive's
LR (pixels and GEOREFSCALE tags) and HR are those of ``onboard --catalog`` / ``ground
--catalog``, serially and on Dask workers (split or not); a changed mask recomputes the scene; a
broken mask asset fails only its scene, naming the record and the mask; mask files given to the
archive are refused."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from test_clouds import _blob, _clouded
from test_refmask import _scl, _write_mask

from georefscale.api import ground, onboard
from georefscale.archive import process_archive
from georefscale.catalog import Catalog
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.options import ClusterOptions, GroundOptions, OnboardOptions, TilingOptions
from georefscale.product import LRInfo
from georefscale.raster.io import georefscale_tags
from georefscale.sample_stac import band_item

SIZE = 256
TILING = TilingOptions(tile=128, halo=16)
FAST = ["--tile", "128", "--halo", "16"]
TARGET, REF = "rio_20171011", "rio_20160424"
NAMES = (TARGET, REF, "montpellier_20150812", "montpellier_20171030")


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _tags(path: Path) -> dict[str, str]:
    with rasterio.open(path) as ds:
        return georefscale_tags(ds)


def _items(oscd_dir: Path, crop, d: Path) -> dict[str, Path]:
    """Band-asset Items of the Rio target, the clouded Rio reference (with its ``scl`` asset)
    and a Montpellier pair without masks; returns the files by name."""
    clear = crop(oscd_dir / f"{REF}.tif", d / "clear.tif", SIZE)
    cloudy, alpha = _clouded(clear, d / f"{REF}.tif", shadow=True)
    with rasterio.open(clear) as src, rasterio.open(cloudy, "r+") as dst:
        dst.update_tags(**src.tags())  # its date, for the Item
    shadow = _blob(SIZE, SIZE, 0.02, centre=(0.83, 0.5)) >= 1
    folder = d / "items"
    folder.mkdir()
    files = {"scl": _write_mask(folder / "scl.tif", _scl(alpha, shadow), clear), REF: cloudy}
    for name in NAMES:
        if name != REF:
            files[name] = crop(oscd_dir / f"{name}.tif", d / f"{name}.tif", SIZE)
        item = band_item(files[name], folder)
        if name == REF:
            item["assets"]["scl"] = {"href": "scl.tif", "roles": ["data"],
                                     "type": "image/tiff; application=geotiff"}
        files[f"{name}.json"] = folder / f"{name}.json"
        files[f"{name}.json"].write_text(json.dumps(item))
    return files


@pytest.fixture(scope="module")
def archived(oscd_dir: Path, crop, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The catalog of the four Items, a serial CLI archive of it with ``--ground``, and
    ``onboard --catalog`` / ``ground --catalog`` of the Rio target."""
    d = tmp_path_factory.mktemp("archive_masks")
    files = _items(oscd_dir, crop, d)
    cat = Catalog()
    assert not cat.ingest([files[f"{n}.json"] for n in NAMES]).skipped
    cat.save(d / "cat.parquet")
    out = d / "serial"
    res = CliRunner().invoke(main, ["archive", str(d / "cat.parquet"), "-o", str(out),
                                    "--workers", "0", "--ground", "--no-progress", *FAST])
    assert res.exit_code == 0 and "2 processed" in res.output, res.output
    lr = onboard(files[f"{TARGET}.json"], catalog=d / "cat.parquet", out=d / "onboard_lr.tif",
                 options=OnboardOptions(tiling=TILING))
    hr = ground(lr, catalog=d / "cat.parquet", out=d / "ground_hr.tif")
    return {"dir": d, "files": files, "cat": d / "cat.parquet", "out": out, "lr": lr, "hr": hr}


def _scene(out: Path, name: str = TARGET) -> tuple[Path, Path]:
    return out / name / f"{name}_lr.tif", out / name / f"{name}_hr.tif"


def test_archive_masks_like_onboard_catalog(archived: dict) -> None:
    """The archive's LR has ``onboard --catalog``'s pixels and GEOREFSCALE tags (the SCL asset
    recorded in REFERENCE_MASKS, FORMAT 3, no spectral test); its ground stage gives ``ground
    --catalog``'s HR; the scene manifest records the mask; a scene whose reference has no mask
    asset runs the spectral test as before."""
    lr, hr = _scene(archived["out"])
    np.testing.assert_array_equal(_read(lr), _read(archived["lr"]))
    tags = _tags(lr)
    assert tags == _tags(archived["lr"])
    assert tags["FORMAT"] == "3" and "REFERENCE_CLOUDS" not in tags
    with rasterio.open(lr) as ds:
        (mask,) = LRInfo.from_dataset(ds, lr).reference_masks
    assert (mask.source, mask.rule) == ("asset", "scl")
    np.testing.assert_array_equal(_read(hr), _read(archived["hr"]))
    manifest = json.loads((archived["out"] / TARGET / "manifest.json").read_text())
    spec = manifest["references"][0]["mask"]
    assert spec["href"] == str(archived["files"]["scl"]) and spec["rule"] == "scl"
    assert len(spec["sha256"]) == 64
    mont, _ = _scene(archived["out"], "montpellier_20171030")
    assert "REFERENCE_MASKS" not in _tags(mont)
    assert "mask" not in json.loads((mont.parent / "manifest.json").read_text())["references"][0]


def test_archive_on_dask_workers_masks_the_same(archived: dict, tmp_path: Path) -> None:
    """On a LocalCluster process worker, the Rio scene as one task (the job pickled to the
    worker) and split into 1-row tile bands (the masked reference staged by the client, read by
    the band tasks): the same LR and HR bytes as the serial archive."""
    from georefscale.archive import connect

    with connect(workers=1) as client:
        for name, split in (("whole", 10**9), ("split", 10_000)):
            result = process_archive(
                archived["cat"], tmp_path / name, selection={"after": "2017-10-01"},
                onboard=OnboardOptions(tiling=TILING), ground=GroundOptions(),
                cluster=ClusterOptions(split_pixels=split, band_rows=1), client=client,
                progress=False)
            (entry,) = [s for s in result.scenes if s["id"] == TARGET]
            assert entry["status"] == "done" and bool(entry.get("split")) == (name == "split")
            for got, want in zip(_scene(tmp_path / name), _scene(archived["out"]), strict=True):
                assert got.read_bytes() == want.read_bytes(), (name, got.name)


def test_a_changed_mask_recomputes_the_scene(archived: dict, tmp_path: Path) -> None:
    """A rerun reuses the scene; once the mask file's bytes change, the scene is recomputed
    with the new mask (another identity in REFERENCE_MASKS)."""
    out = tmp_path / "out"
    shutil.copytree(archived["out"], out)
    args = ["archive", str(archived["cat"]), "-o", str(out), "--workers", "0", "--ground",
            "--no-progress", "--after", "2017-10-01", "--before", "2017-10-12", *FAST]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "1 already done" in res.output, res.output
    scl = archived["files"]["scl"]
    original = scl.read_bytes()
    try:
        with rasterio.open(scl, "r+") as ds:
            arr = ds.read(1)
            arr[-10:, -10:] = 9  # a new cloud in a corner
            ds.write(arr, 1)
        res = CliRunner().invoke(main, args)
    finally:
        scl.write_bytes(original)
    assert res.exit_code == 0 and "1 processed" in res.output, res.output
    lr, _ = _scene(out)
    before = _tags(_scene(archived["out"])[0])["REFERENCE_MASKS"]
    assert _tags(lr)["REFERENCE_MASKS"] != before
    assert not np.array_equal(_read(lr), _read(archived["lr"]))


@pytest.mark.parametrize("case", ["missing", "rule", "crs"])
def test_a_broken_mask_asset_fails_only_its_scene(archived: dict, tmp_path: Path,
                                                  case: str) -> None:
    """The Rio reference's mask asset missing, with a rule no catalog writes, or in another
    CRS: the Rio scene fails naming the record and the mask, nothing of it is published; the
    Montpellier scene is done."""
    cat = Catalog.load(archived["cat"])
    rec = cat.get(REF)
    masks = tmp_path / "masks"  # apart from the output folder
    masks.mkdir()
    if case == "missing":
        broken, match = replace(rec, mask_href=str(masks / "nowhere.tif")), "does not exist"
    elif case == "rule":
        broken, match = replace(rec, mask_rule="cloudy"), "mask rule 'cloudy' is not one of"
    else:
        other = _write_mask(masks / "m.tif", np.zeros((SIZE // 2, SIZE // 2), np.uint8),
                            archived["files"][REF], crs="EPSG:3857")
        broken, match = replace(rec, mask_href=str(other)), "mask CRS .* is not the CRS"
    records = [broken if r.id == REF else r for r in cat]
    result = process_archive(Catalog.from_records(records), tmp_path / "out",
                             onboard=OnboardOptions(tiling=TILING),
                             cluster=ClusterOptions(workers=0), progress=False)
    (failed,) = result.failed
    assert failed["id"] == TARGET
    assert f"{broken.mask_href} (mask asset of {REF} in catalog)" in failed["error"]
    assert re.search(match, failed["error"]), failed
    assert result.count("done") == 1 and not (tmp_path / "out" / TARGET).exists()


def test_mask_files_given_to_the_archive_are_refused(archived: dict, tmp_path: Path) -> None:
    """``--reference-mask`` (API ``reference_masks``) names one reference's mask: the archive
    refuses it before anything runs, saying where its masks come from."""
    res = CliRunner().invoke(main, ["archive", str(archived["cat"]), "-o", str(tmp_path / "o"),
                                    "--workers", "0", "--reference-mask",
                                    str(archived["files"]["scl"])])
    assert res.exit_code == 1 and "catalog record's mask asset" in res.output, res.output
    with pytest.raises(InputError, match="belongs to one reference"):
        process_archive(archived["cat"], tmp_path / "o",
                        onboard=OnboardOptions(reference_masks=(archived["files"]["scl"],)),
                        cluster=ClusterOptions(workers=0), progress=False)
    assert not (tmp_path / "o").exists()
