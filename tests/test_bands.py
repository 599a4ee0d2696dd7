"""Bands by name and data conventions (Sentinel-2 L2A offset, float32 reflectance), on the real
sample data: the 13-band L1C stack, Montpellier crops re-encoded as users
have them (bands reordered, an extra band, no names, float reflectance, L2A DN), NAIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

import georefscale
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.options import OnboardOptions, parse_bands

CROP = 128
FAST = {"tiling": georefscale.TilingOptions(128, 16)}
L2A_TAGS = {"PROCESSING_BASELINE": "04.00", "PROCESSING_LEVEL": "Level-2A"}


def _write(src: Path, out: Path, *, bands=None, descriptions=None, convert=None, tags=None,
           band_tags=None, scales=None, offsets=None, size: int | None = CROP) -> Path:
    """A re-encoded crop of the real file ``src``: chosen bands (1-based), values converted,
    descriptions / tags / scales / offsets as given (descriptions: [] drops them)."""
    with rasterio.open(src) as ds:
        idx = list(bands or range(1, ds.count + 1))
        win = Window(0, 0, size or ds.width, size or ds.height)
        a = ds.read(idx, window=win)
        desc = [ds.descriptions[i - 1] for i in idx]
        profile = {**ds.profile, "count": len(idx), "width": int(win.width),
                   "height": int(win.height), "transform": ds.window_transform(win)}
        src_tags = ds.tags()
    if convert is not None:
        a = convert(a)
        profile["dtype"] = a.dtype.name
    with rasterio.open(out, "w", **profile) as o:
        o.write(a)
        for i, d in enumerate(desc if descriptions is None else descriptions, start=1):
            if d:
                o.set_band_description(i, d)
        o.update_tags(**{**src_tags, **(tags or {})})
        for i, t in (band_tags or {}).items():
            o.update_tags(i, **t)
        if scales is not None:
            o.scales, o.offsets = scales, offsets
    return out


def _roundtrip(target: Path, ref: Path, tmp: Path, name: str, **options) -> dict:
    on = OnboardOptions(**{**FAST, **options})
    return georefscale.roundtrip(target, ref, lr_out=tmp / f"{name}_lr.tif",
                                 hr_out=tmp / f"{name}_hr.tif",
                                 options=(on, georefscale.GroundOptions()))


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.fixture(scope="module")
def montpellier(oscd_dir, tmp_path_factory):
    """The Montpellier L1C crops as they ship (4 bands, model order) and their round trip."""
    tmp = tmp_path_factory.mktemp("montpellier")
    t = _write(oscd_dir / "montpellier_20171030.tif", tmp / "t.tif")
    r = _write(oscd_dir / "montpellier_20150812.tif", tmp / "r.tif")
    return t, r, _roundtrip(t, r, tmp, "orig"), tmp


@pytest.fixture(scope="module")
def slovenia(data_dir):
    files = sorted((data_dir / "sentinel2-l1c-13band").glob("slovenia_*.tif"))
    return files[-1], files[-2]  # 2015-09-09 <- 2015-08-30


def test_13_band_stack_is_mapped_by_band_names(slovenia, tmp_path):
    target, ref = slovenia
    res = _roundtrip(target, ref, tmp_path, "stack")
    four = [_write(f, tmp_path / f"four_{f.name}", bands=[2, 3, 4, 8], size=None)
            for f in (target, ref)]
    plain = _roundtrip(*four, tmp_path, "four")
    with rasterio.open(tmp_path / "stack_lr.tif") as ds:  # the LR says which bands it holds
        assert ds.descriptions == ("B02", "B03", "B04", "B08") and ds.count == 4
    assert np.array_equal(_read(tmp_path / "stack_lr.tif"), _read(tmp_path / "four_lr.tif"))
    assert np.array_equal(_read(tmp_path / "stack_hr.tif"), _read(tmp_path / "four_hr.tif"))
    assert res["psnr_db"] == plain["psnr_db"] and len(res["bands"]) == 4


def test_bands_given_by_index_or_name_on_the_cli(slovenia, tmp_path):
    target, ref = slovenia
    runs = {}
    for how, bands in (("index", "2,3,4,8"), ("name", "B02,B03,B04,B08")):
        res = CliRunner().invoke(main, [
            "roundtrip", str(target), "-r", str(ref), "--bands", bands, "--tile", "128",
            "--halo", "16", "-o", str(tmp_path / how), "--json", "-q"])
        assert res.exit_code == 0, res.output
        runs[how] = json.loads(res.output)
    assert runs["index"]["psnr_db"] == runs["name"]["psnr_db"]
    lrs = [_read(Path(runs[how]["lr"])) for how in ("index", "name")]
    assert np.array_equal(*lrs) and lrs[0].shape[0] == 4
    # an index beyond the file names the band
    with pytest.raises(InputError, match="has 13 bands, --bands asks for band 14"):
        _roundtrip(target, ref, tmp_path, "beyond", bands=(2, 3, 4, 14))


def test_reordered_and_extra_bands_give_the_same_product(montpellier, tmp_path):
    t, r, orig, tmp = montpellier
    lr = _read(tmp / "orig_lr.tif")
    rev = [_write(f, tmp_path / f"rev_{f.name}", bands=[4, 3, 2, 1]) for f in (t, r)]
    res = _roundtrip(*rev, tmp_path, "rev")
    assert np.array_equal(_read(tmp_path / "rev_lr.tif"), lr)
    assert res["psnr_db"] == orig["psnr_db"]
    # five bands, the fifth described as another Sentinel-2 band
    five = [_write(f, tmp_path / f"five_{f.name}", bands=[1, 2, 3, 4, 1],
                   descriptions=["B02 blue", "B03 green", "B04 red", "B08 nir", "B11"])
            for f in (t, r)]
    _roundtrip(*five, tmp_path, "five")
    assert np.array_equal(_read(tmp_path / "five_lr.tif"), lr)


def test_unnamed_and_ambiguous_bands_are_errors_that_say_how(montpellier, tmp_path):
    t, r, _, tmp = montpellier
    unnamed = [_write(f, tmp_path / f"unnamed_{f.name}", bands=[1, 2, 3, 4, 4], descriptions=[])
               for f in (t, r)]
    with pytest.raises(InputError, match=r"has 5 bands.*name none of them.*--bands 1,2,3,4"):
        _roundtrip(*unnamed, tmp_path, "unnamed")
    assert not (tmp_path / "unnamed_lr.tif").exists()
    _roundtrip(*unnamed, tmp_path, "given", bands="1,2,3,4")
    assert np.array_equal(_read(tmp_path / "given_lr.tif"), _read(tmp / "orig_lr.tif"))
    no_nir = _write(t, tmp_path / "no_nir.tif",
                    descriptions=["B02 blue", "B03 green", "B04 red", "B8A"])
    with pytest.raises(InputError, match=r"no_nir.tif: no band is described as 'B08 nir'"):
        _roundtrip(no_nir, r, tmp_path, "no_nir")
    twice = _write(t, tmp_path / "twice.tif", descriptions=["B02", "blue", "B04", "B08"])
    with pytest.raises(InputError, match=r"bands 1 and 2 are both described as 'B02 blue'"):
        _roundtrip(twice, r, tmp_path, "twice")
    for bad in ("1,1,2,3", "0,1,2,3", "1,B02,3,4", ""):
        with pytest.raises(InputError, match="bands"):
            parse_bands(bad)


def test_dtype_and_band_mismatches_name_the_models_that_fit(naip_dir, montpellier, tmp_path):
    naip = sorted(naip_dir.glob("*.tif"))
    with pytest.raises(InputError, match=r"data type uint8.*refscale-s2-x4 expects uint16.*"
                                         r"refscale-naip-x4"):
        _roundtrip(naip[-1], naip[-2], tmp_path, "naip")
    t, r, _, _ = montpellier
    three = _write(t, tmp_path / "three.tif", bands=[1, 2, 3], descriptions=[])
    with pytest.raises(InputError, match=r"has 3 bands.*shipped models for 3 bands of uint16"):
        _roundtrip(three, r, tmp_path, "three")


def _l2a(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.int64) + 1000).clip(0, 65535).astype(np.uint16)


def test_l2a_offset_round_trip_keeps_the_convention(montpellier, tmp_path):
    t, r, orig, tmp = montpellier
    declared = {  # the three ways an L2A declares its -1000 DN
        "tag": {"tags": {**L2A_TAGS, "BOA_ADD_OFFSET": "-1000"}},
        "band_tag": {"tags": L2A_TAGS, "band_tags": {i: {"BOA_ADD_OFFSET": "-1000"}
                                                      for i in range(1, 5)}},
        "gdal": {"tags": L2A_TAGS, "scales": [1e-4] * 4, "offsets": [-0.1] * 4},
    }
    lr0 = _read(tmp / "orig_lr.tif").astype(np.int64)
    for how, kw in declared.items():
        files = [_write(f, tmp_path / f"{how}_{f.name}", convert=_l2a, **kw) for f in (t, r)]
        res = _roundtrip(*files, tmp_path, how)
        assert abs(res["psnr_db"] - orig["psnr_db"]) < 0.05, how
        assert abs(res["spectral_angle_deg"] - orig["spectral_angle_deg"]) < 0.01, how
        with rasterio.open(tmp_path / f"{how}_lr.tif") as lr, \
                rasterio.open(tmp_path / f"{how}_hr.tif") as hr:
            assert lr.dtypes[0] == hr.dtypes[0] == "uint16"
            assert lr.tags()["GEOREFSCALE_OFFSET"] == "-1000.0"
            assert np.abs(lr.read().astype(np.int64) - 1000 - lr0).max() <= 1
        assert res["offset"] == -1000.0
    # an L2A reference against an L1C target: converted to the model's DN, same product
    l2a_ref = tmp_path / f"tag_{r.name}"
    _roundtrip(t, l2a_ref, tmp_path, "mixed")
    assert np.abs(_read(tmp_path / "mixed_lr.tif").astype(np.int64) - lr0).max() <= 1


def test_an_undeclared_l2a_offset_is_refused(montpellier, tmp_path):
    t, r, _, _ = montpellier
    bare = _write(t, tmp_path / "bare.tif", convert=_l2a, tags=L2A_TAGS)
    with pytest.raises(InputError, match=r"bare.tif: Sentinel-2 L2A of processing baseline "
                                         r"04.00 or later.*declares no offset"):
        _roundtrip(bare, r, tmp_path, "bare")
    assert not (tmp_path / "bare_lr.tif").exists()
    both = _write(t, tmp_path / "both.tif", convert=_l2a, tags={"BOA_ADD_OFFSET": "-1000"},
                  scales=[1.0] * 4, offsets=[-500.0] * 4)
    with pytest.raises(InputError, match="both.tif: the band offset .* disagree"):
        _roundtrip(both, r, tmp_path, "both")


def test_float32_reflectance_in_float32_out(montpellier, tmp_path):
    t, r, orig, _ = montpellier

    def reflectance(a: np.ndarray) -> np.ndarray:
        return (a / np.float32(10000)).astype(np.float32)

    files = [_write(f, tmp_path / f"refl_{f.name}", convert=reflectance) for f in (t, r)]
    res = _roundtrip(*files, tmp_path, "refl")
    assert abs(res["psnr_db"] - orig["psnr_db"]) < 0.05
    assert res["scale"] == 1.0
    for kind in ("lr", "hr"):
        with rasterio.open(tmp_path / f"refl_{kind}.tif") as ds:
            assert ds.dtypes[0] == "float32"
            assert 0.0 <= float(np.median(ds.read())) < 1.0  # reflectance, not DN
    # a float reference for a uint16 target is converted to the model's DN
    mixed = _roundtrip(t, files[1], tmp_path, "mixed")
    assert abs(mixed["psnr_db"] - orig["psnr_db"]) < 0.05
