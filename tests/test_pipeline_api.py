"""The public pipeline API: DataArrays, catalog-picked references, per-tile fallback, relevance
maps, codec output, and the CLI options built on them. Real data (OSCD Paris, NAIP), real GDAL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import georefscale
from georefscale.catalog import Catalog, record_from_raster
from georefscale.cli import main
from georefscale.engine.cards import noref_name
from georefscale.errors import InputError, NoCandidateError, ReferenceMismatchError
from georefscale.product import LRInfo, decode_ranges, encode_ranges
from georefscale.raster.grid import Grid
from georefscale.raster.io import write_geotiff
from georefscale.references import identity_of
from georefscale.report import describe_lr

REPO = Path(__file__).resolve().parents[1]
NAIP = "m_4709963_se_14_1_{}.tif"
FAST = {"tile": 128, "halo": 16}


@pytest.fixture(scope="module")
def paris(oscd_dir):
    return oscd_dir / "paris_20171107.tif", oscd_dir / "paris_20161130.tif"


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Untrained RefScale x4 network and its no-reference twin, saved and loaded like shipped
    models. Weights are perturbed so the output depends on the reference, except the gates:
    their sigmoid(0) = 0.5 everywhere is the known relevance."""
    torch = pytest.importorskip("torch")
    from georefscale.engine import NetConfig, RefScaleNet
    from georefscale.engine.weights import load_file_model, save_model

    d = tmp_path_factory.mktemp("models")
    out = []
    for name, use_ref in (("refscale-test-x4", True), ("noref-test-x4", False)):
        torch.manual_seed(0)
        net = RefScaleNet(NetConfig(bands=4, factor=4, blocks=1, hidden=8, ref_features=4,
                                    use_reference=use_ref))
        with torch.no_grad():
            for pname, p in net.named_parameters():
                if ".gate." not in pname:
                    p.add_(0.05 * torch.randn_like(p))
        card = {"name": name, "dtype": "uint16", "scale": 10000.0}
        weights = save_model(net, card, d)
        out.append(load_file_model(weights, {**card, "config": net.cfg.to_dict()}))
    return tuple(out)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), Grid.from_dataset(ds), ds.descriptions, ds.tags()


def _psnr(a, b, peak):
    return 20 * np.log10(peak / np.sqrt(np.mean((a.astype(float) - b) ** 2)))


def test_import_is_lazy_and_reexports():
    code = ("import sys, georefscale; assert 'georefscale.api' not in sys.modules; "
            "f = georefscale.onboard; g = georefscale.ground; georefscale.roundtrip; "
            "georefscale.relevance_map; assert 'torch' not in sys.modules; print(f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "georefscale.api"
    with pytest.raises(AttributeError):
        georefscale.no_such_thing  # noqa: B018


def test_noref_names():
    assert noref_name("refscale-s2-x4") == "noref-s2-x4" and noref_name("bicubic") is None


def test_tile_ranges_round_trip():
    assert encode_ranges([7, 0, 1, 2, 5, 8]) == "0-2,5,7-8"
    assert decode_ranges("0-2,5,7-8") == (0, 1, 2, 5, 7, 8)
    assert encode_ranges([]) == "none" and decode_ranges("none") == decode_ranges("") == ()
    with pytest.raises(ValueError):
        decode_ranges("3-1")


# -- xarray ------------------------------------------------------------------------------------


def test_dataarrays_in_dataarrays_out(paris):
    import rioxarray

    target = rioxarray.open_rasterio(paris[0]).load()
    ref = rioxarray.open_rasterio(paris[1]).load()
    ref.name = "paris-2016"
    lr = georefscale.onboard(target, ref, model="bicubic", factor=4, **FAST)
    assert lr.rio.crs == target.rio.crs and lr.dtype == np.uint16
    assert lr.shape == (4, 102, 98)
    assert lr.rio.transform().almost_equals(Grid(target.rio.crs, target.rio.transform(), 390,
                                                 408).scaled(4).transform)
    assert tuple(lr.attrs["long_name"]) == ("B02 blue", "B03 green", "B04 red", "B08 nir")
    assert lr.attrs["GEOREFSCALE_REFERENCE_ID"] == "paris-2016"
    assert lr.attrs["ACQUISITION_DATE"] == "2017-11-07"
    hr = georefscale.ground(lr, ref)
    assert hr.shape == target.shape and hr.dtype == np.uint16
    assert hr.rio.transform().almost_equals(target.rio.transform())
    assert tuple(hr.attrs["long_name"]) == tuple(target.attrs["long_name"])
    assert _psnr(target.values, hr.values, 10000) > 30
    other = ref.copy(data=ref.values + 1)  # same name, other pixels: the content hash differs
    with pytest.raises(ReferenceMismatchError, match="paris-2016"):
        georefscale.ground(lr, other)


def test_masked_dataarray_keeps_integer_nodata(naip_dir, tmp_path):
    """open_rasterio(masked=True) gives float NaN; the LR product is uint8 with nodata 0 again."""
    import rioxarray

    t = rioxarray.open_rasterio(naip_dir / NAIP.format("20200831"), masked=True)
    t = t.isel(x=slice(0, 200), y=slice(0, 160)).load()
    lr = georefscale.onboard(t, model="bicubic", factor=2, out=tmp_path / "lr.tif", **FAST)
    assert lr.dtype == np.uint8 and lr.rio.nodata == 0
    assert (tmp_path / "lr.tif").exists() and lr.shape == (4, 80, 100)


def test_dataarray_without_crs(paris):
    import rioxarray

    da = rioxarray.open_rasterio(paris[0]).load()
    da = da.drop_vars("spatial_ref")
    da.attrs.pop("spatial_ref", None)
    with pytest.raises(InputError, match="target DataArray: has no CRS"):
        georefscale.onboard(da, paris[1], model="bicubic", factor=4)
    with pytest.raises(InputError, match="reference DataArray 'r': has no CRS"):
        georefscale.onboard(paris[0], da.rename("r"), model="bicubic", factor=4,
                            out="/tmp/never.tif")
    assert not Path("/tmp/never.tif").exists()


def test_roundtrip_dataarray(paris):
    import rioxarray

    target = rioxarray.open_rasterio(paris[0]).load()
    res = georefscale.roundtrip(target, paris[1], model="bicubic", factor=4, **FAST)
    assert res["hr"].shape == target.shape and res["lr"].shape == (4, 102, 98)
    assert res["psnr_db"] > 30 and res["references"] == ["paris_20161130"]
    assert res["bits_per_pixel"] > 0 and res["codec"] == "geotiff"


# -- catalog -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def naip_catalog(data_dir):
    return Catalog.load(REPO / "catalogs" / "naip.parquet", archive=data_dir)


@pytest.fixture(scope="module")
def naip_crop(naip_dir, tmp_path_factory):
    """A 256 x 320 crop of the newest NAIP date, named with its date (the catalog reads it)."""
    src = naip_dir / NAIP.format("20200831")
    out = tmp_path_factory.mktemp("crop") / src.name
    with rasterio.open(src) as ds:
        win = rasterio.windows.Window(300, 200, 320, 256)
        grid = Grid(ds.crs, ds.window_transform(win), 320, 256)
        write_geotiff(out, ds.read(window=win), grid, nodata=ds.nodata,
                      descriptions=ds.descriptions, tags=ds.tags())
    return out


def test_catalog_picks_and_ground_finds_the_reference(naip_crop, naip_catalog, naip_dir,
                                                      tmp_path):
    lr = georefscale.onboard(naip_crop, catalog=naip_catalog, model="bicubic", factor=4,
                             out=tmp_path / "lr.tif", **FAST)
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    ref = naip_dir / NAIP.format("20190904")  # the newest earlier date
    assert info.reference_ids == ("m_4709963_se_14_1_20190904",)
    assert info.reference_identity == (identity_of(ref),)
    # the catalog given as a path, as on the command line
    hr = georefscale.ground(lr, catalog=REPO / "catalogs" / "naip.parquet",
                            archive=naip_dir.parent, out=tmp_path / "hr.tif")
    same = georefscale.ground(lr, ref, out=tmp_path / "hr2.tif")
    np.testing.assert_array_equal(_read(hr)[0], _read(same)[0])
    with pytest.raises(InputError, match="reference or a catalog, not both"):
        georefscale.ground(lr, ref, catalog=naip_catalog, out=tmp_path / "hr3.tif")


def _copy(src: Path, dst: Path, cols: slice = slice(None), rows: slice = slice(None)) -> Path:
    """``src[rows, cols]`` as a GeoTIFF (same CRS, pixel size, tags, band names)."""
    with rasterio.open(src) as ds:
        arr, t = ds.read()[:, rows, cols], ds.transform
        desc, tags, crs = ds.descriptions, ds.tags(), ds.crs
    off = t @ t.translation(cols.start or 0, rows.start or 0)
    return write_geotiff(dst, arr, Grid(crs, off, arr.shape[2], arr.shape[1]),
                         descriptions=desc, tags=tags)


def test_catalog_mosaic_and_changed_reference(paris, tmp_path):
    """Two half references (a mosaic) found by id on the ground; one changed on disk since:
    the checksum catches it on both sides."""
    arch = tmp_path / "archive"
    arch.mkdir()
    left = _copy(paris[1], arch / "paris_left_20161130.tif", slice(0, 220))
    right = _copy(paris[1], arch / "paris_right_20161130.tif", slice(180, None))
    cat = Catalog.from_records([record_from_raster(p) for p in (left, right)])
    lr = georefscale.onboard(paris[0], catalog=cat, model="bicubic", factor=4,
                             out=tmp_path / "lr.tif", **FAST)
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    assert sorted(info.reference_ids) == ["paris_left_20161130", "paris_right_20161130"]
    georefscale.ground(lr, catalog=cat, out=tmp_path / "hr.tif")
    with rasterio.open(left, "r+") as ds:
        ds.write(ds.read(1, window=((3, 4), (3, 4))) + 1, 1, window=((3, 4), (3, 4)))
    with pytest.raises(ReferenceMismatchError, match="paris_left_20161130.tif: content"):
        georefscale.ground(lr, catalog=cat, out=tmp_path / "hr2.tif")
    with pytest.raises(ReferenceMismatchError, match="changed since"):
        georefscale.onboard(paris[0], catalog=cat, model="bicubic", factor=4,
                            out=tmp_path / "lr2.tif")
    assert not (tmp_path / "hr2.tif").exists() and not (tmp_path / "lr2.tif").exists()


def test_no_reference_in_catalog(oscd_dir, nets, tmp_path):
    refnet, noref = nets
    old = oscd_dir / "paris_20161130.tif"  # nothing in the catalog is older
    cat = REPO / "catalogs" / "oscd.parquet"
    with pytest.raises(NoCandidateError, match="no usable reference.*allow_noref"):
        georefscale.onboard(old, catalog=cat, archive=oscd_dir.parent, model=refnet,
                            out=tmp_path / "lr.tif")
    with pytest.raises(InputError, match="no no-reference model for refscale-test-x4"):
        georefscale.onboard(old, catalog=cat, archive=oscd_dir.parent, model=refnet,
                            allow_noref=True, noref_model="auto", out=tmp_path / "lr.tif")
    lr = georefscale.onboard(old, catalog=cat, archive=oscd_dir.parent, model=refnet,
                             allow_noref=True, noref_model=noref, out=tmp_path / "lr.tif",
                             **FAST)
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    assert info.model == "noref-test-x4" and info.reference_ids == ()
    hr = georefscale.ground(lr, out=tmp_path / "hr.tif", model=noref)
    assert _read(hr)[0].shape == (4, 408, 390)


# -- per-tile fallback and relevance -----------------------------------------------------------


def test_fallback_where_the_reference_is_missing(paris, nets, tmp_path):
    """A reference covering only the left half: tiles it does not cover are made with the
    no-reference model on board, recorded, and rebuilt the same way on the ground (identical
    to a pure no-reference run away from the blend zone)."""
    refnet, noref = nets
    target = _copy(paris[0], tmp_path / "target.tif", slice(0, 256), slice(0, 192))
    half = _copy(paris[1], tmp_path / "half.tif", slice(0, 128))
    opts = {"tile": 64, "halo": 8}  # 3 x 4 tiles
    lr = georefscale.onboard(target, half, model=refnet, noref_model=noref,
                             out=tmp_path / "lr.tif", **opts)
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    assert info.fallback_model == "noref-test-x4" and info.fallback_tiles == (2, 3, 6, 7, 10, 11)
    assert _read(lr)[3]["GEOREFSCALE_FALLBACK_TILES"] == "2-3,6-7,10-11"
    hr = georefscale.ground(lr, half, out=tmp_path / "hr.tif", model=refnet, noref_model=noref,
                            relevance_out=tmp_path / "rel.tif", seed=3)
    pure_lr = georefscale.onboard(target, model=noref, out=tmp_path / "pure_lr.tif", **opts)
    pure_hr = georefscale.ground(pure_lr, out=tmp_path / "pure_hr.tif", model=noref, seed=3)
    np.testing.assert_array_equal(_read(lr)[0][:, :, 36:], _read(pure_lr)[0][:, :, 36:])
    # beyond the LR blend zone (HR 120-136) plus the network's receptive field
    np.testing.assert_array_equal(_read(hr)[0][:, :, 168:], _read(pure_hr)[0][:, :, 168:])
    assert (_read(hr)[0][:, :, :112] != _read(pure_hr)[0][:, :, :112]).any()
    rel, grid, desc, tags = _read(tmp_path / "rel.tif")
    assert rel.shape == (1, 192, 256) and rel.dtype == np.float32 and grid == _read(target)[1]
    assert np.allclose(rel[0, :, :116], 0.5) and np.all(rel[0, :, 140:] == 0)
    assert tags["GEOREFSCALE_PRODUCT"] == "reference relevance"
    again = georefscale.relevance_map(lr, half, out=tmp_path / "rel2.tif", model=refnet)
    np.testing.assert_array_equal(_read(again)[0], rel)
    with pytest.raises(InputError, match="ground with the recorded tiling"):
        georefscale.ground(lr, half, out=tmp_path / "x.tif", model=refnet, noref_model=noref,
                           tile=128)


def test_fallback_where_the_reference_does_not_show_the_target(paris, nets, tmp_path):
    refnet, noref = nets
    target = _copy(paris[0], tmp_path / "target.tif", slice(0, 256), slice(0, 192))
    with rasterio.open(paris[1]) as ds:  # same grid and footprint, turned by 180 degrees
        turned = write_geotiff(tmp_path / "turned.tif", ds.read()[:, ::-1, ::-1],
                               Grid.from_dataset(ds), descriptions=ds.descriptions)
    run = {"model": refnet, "noref_model": noref, "tile": 128, "halo": 16}
    right = georefscale.onboard(target, paris[1], out=tmp_path / "right.tif", **run)
    assert _read(right)[3]["GEOREFSCALE_FALLBACK_TILES"] == "none"
    wrong = georefscale.onboard(target, turned, out=tmp_path / "wrong.tif", **run)
    assert _read(wrong)[3]["GEOREFSCALE_FALLBACK_TILES"] == "0-3"
    off = georefscale.onboard(target, turned, out=tmp_path / "off.tif", min_agreement=0, **run)
    assert _read(off)[3]["GEOREFSCALE_FALLBACK_TILES"] == "none"


def test_no_fallback_model_no_fallback_tags(paris, nets, tmp_path):
    refnet, _ = nets
    lr = georefscale.onboard(paris[0], paris[1], model=refnet, noref_model=None,
                             out=tmp_path / "lr.tif", tile=256, halo=16)
    tags = _read(lr)[3]
    assert "GEOREFSCALE_FALLBACK_MODEL" not in tags
    with pytest.raises(InputError, match="lr.tif: made with model refscale-test-x4, not noref"):
        georefscale.ground(lr, paris[1], out=tmp_path / "hr.tif", model=nets[1])


def test_relevance_needs_a_reference_model(paris, tmp_path):
    lr = georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4,
                             out=tmp_path / "lr.tif", **FAST)
    with pytest.raises(InputError, match="uses no reference"):
        georefscale.relevance_map(lr, paris[1], out=tmp_path / "rel.tif")
    assert not (tmp_path / "rel.tif").exists()


# -- codecs ------------------------------------------------------------------------------------


def test_jpeg2000_lr_product(paris, tmp_path):
    out = georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4, codec="jpeg2000",
                              quality=20, out=tmp_path / "lr.tif", **FAST)
    assert out == tmp_path / "lr.jp2" and sorted(p.name for p in tmp_path.iterdir()) == ["lr.jp2"]
    s = describe_lr(out)
    assert s["bytes"] == out.stat().st_size and s["codec"] == "jpeg2000" and s["quality"] == 20
    assert s["bits_per_pixel"] == pytest.approx(8 * s["bytes"] / (408 * 390))
    assert s["bits_per_pixel"] < 16 * 4 / 16 * 0.25  # well under 20 % of the raw LR bits
    with rasterio.open(out) as ds:
        assert ds.driver == "JP2OpenJPEG" and not any(ds.descriptions)
    hr = georefscale.ground(out, paris[1], out=tmp_path / "hr.tif")
    arr, grid, desc, _ = _read(hr)
    target, tgrid, tdesc, _ = _read(paris[0])
    assert grid == tgrid and desc == tdesc  # band names restored from GEOREFSCALE_BANDS
    assert _psnr(target, arr, 10000) > 25


def test_bad_codec_fails_before_any_work(paris, naip_crop, tmp_path):
    with pytest.raises(InputError, match="unknown codec 'jpeg3000'"):
        georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4, codec="jpeg3000",
                            out=tmp_path / "lr.tif")
    with pytest.raises(InputError, match="paris_20171107.tif.*jpeg"):
        georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4, codec="jpeg",
                            out=tmp_path / "lr.tif")
    with pytest.raises(InputError, match="quality"):
        georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4, codec="jpeg2000",
                            quality=0, out=tmp_path / "lr.tif")
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_on_stderr(paris, tmp_path, capsys):
    georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4, out=tmp_path / "lr.tif",
                        progress=True, **FAST)
    assert "onboard" in capsys.readouterr().err
    georefscale.onboard(paris[0], paris[1], model="bicubic", factor=4, out=tmp_path / "lr.tif",
                        **FAST)
    assert capsys.readouterr().err == ""


# -- CLI ---------------------------------------------------------------------------------------


def _run(args, code=0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def test_cli_catalog_codec_json(naip_crop, data_dir, tmp_path):
    cat = REPO / "catalogs" / "naip.parquet"
    res = _run(["onboard", naip_crop, "--catalog", cat, "--archive", data_dir, "-m", "bicubic",
                "-f", "4", "--codec", "jpeg2000", "--quality", "25", "--tile", "128",
                "-o", tmp_path / "lr.tif", "--json"])
    summary = json.loads(res.stdout)
    assert summary["lr"] == str(tmp_path / "lr.jp2") and summary["codec"] == "jpeg2000"
    assert summary["references"] == ["m_4709963_se_14_1_20190904"]
    assert summary["bits_per_pixel"] == pytest.approx(8 * summary["bytes"] / (256 * 320))
    res = _run(["ground", tmp_path / "lr.jp2", "--catalog", cat, "--archive", data_dir,
                "-o", tmp_path / "hr.tif", "--json"])
    assert json.loads(res.stdout)["hr"] == str(tmp_path / "hr.tif")
    res = _run(["roundtrip", naip_crop, "--catalog", cat, "--archive", data_dir, "-m",
                "bicubic", "-f", "2", "--tile", "128", "-o", tmp_path, "-q"])
    assert res.stdout == "" and (tmp_path / f"{naip_crop.stem}_hr.tif").exists()


def test_cli_no_candidate_exit_code(oscd_dir, tmp_path):
    res = _run(["onboard", oscd_dir / "paris_20161130.tif", "--catalog",
                REPO / "catalogs" / "oscd.parquet", "--archive", oscd_dir.parent, "-m",
                "bicubic", "-f", "4", "-o", tmp_path / "lr.tif"], code=3)
    assert "no usable reference" in res.stderr and "--allow-noref" in res.stderr
    res = _run(["onboard", oscd_dir / "paris_20161130.tif", "--catalog",
                REPO / "catalogs" / "oscd.parquet", "--archive", oscd_dir.parent, "-m",
                "bicubic", "-f", "4", "--allow-noref", "-o", tmp_path / "lr.tif"])
    assert "reference none" in res.stdout


def test_cli_roundtrip_summary(paris, tmp_path):
    res = _run(["roundtrip", paris[0], "-r", paris[1], "-m", "bicubic", "-f", "4", "--codec",
                "jpeg2000", "--quality", "20", "-o", tmp_path])
    assert "bits per HR pixel" in res.stdout and "PSNR" in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paris_20171107_hr.tif",
                                                          "paris_20171107_lr.jp2"]


def test_jpeg2000_link_keeps_the_exact_nodata(paris, nets, tmp_path):
    """JPEG 2000 has no nodata field and lossy coding moves the nodata pixels: the product
    records both, and the ground side gives exactly the target's nodata back."""
    refnet, noref = nets
    with rasterio.open(paris[0]) as ds:
        arr = ds.read()
        grid, desc = Grid.from_dataset(ds), ds.descriptions
    arr[:, :, :120] = 0  # outside the swath
    target = write_geotiff(tmp_path / "target.tif", arr, grid, nodata=0, descriptions=desc)
    run = {"model": refnet, "noref_model": noref, "tile": 128, "halo": 16}
    lr = georefscale.onboard(target, paris[1], out=tmp_path / "lr.jp2", codec="jpeg2000",
                             quality=20, **run)
    hr = georefscale.ground(lr, paris[1], out=tmp_path / "hr.tif", model=refnet,
                            noref_model=noref)
    with rasterio.open(hr) as ds:
        out = ds.read()
        assert ds.nodata == 0 and tuple(ds.descriptions) == tuple(desc)
    np.testing.assert_array_equal(out == 0, arr == 0)


def test_ground_warns_above_the_trained_temperature(paris, nets, tmp_path):
    import warnings

    refnet, noref = nets
    run = {"model": refnet, "noref_model": noref}
    lr = georefscale.onboard(paris[0], paris[1], out=tmp_path / "lr.tif", tile=256, halo=16,
                             **run)
    with pytest.warns(UserWarning, match="alpha 3 is above the latent temperature"):
        georefscale.ground(lr, paris[1], out=tmp_path / "hot.tif", alpha=3.0, **run)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        georefscale.ground(lr, paris[1], out=tmp_path / "ok.tif", alpha=1.0, **run)
