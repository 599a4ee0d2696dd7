"""A standing suite of hostile and careless inputs on real data: every case must end in a clear
error naming the file and the problem, destroy nothing and leave nothing half-written.

Numbers in the test names are the defects of the reliability issue they keep fixed."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale.api import ground, onboard
from georefscale.archive import process_archive
from georefscale.archive.plan import folder_name
from georefscale.catalog import Catalog, ingest
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.options import ClusterOptions, OnboardOptions, TilingOptions
from georefscale.product import tags_digest
from georefscale.raster.align import overlaps
from georefscale.raster.grid import Grid
from georefscale.raster.io import georefscale_tags, open_raster, sha256_file, write_geotiff

FAST = OnboardOptions(model="bicubic", tiling=TilingOptions(128, 16))


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def rio(oscd_dir, tmp_path):
    """Copies of the rio pair (the tests may try to destroy them)."""
    out = []
    (tmp_path / "data").mkdir()
    for name in ("rio_20171011.tif", "rio_20160424.tif"):
        dst = tmp_path / "data" / name
        dst.write_bytes((oscd_dir / name).read_bytes())
        out.append(dst)
    return out


@pytest.fixture
def rio_lr(rio, tmp_path):
    lr = tmp_path / "lr.tif"
    onboard(rio[0], rio[1], out=lr, options=FAST)
    return lr


# -- 1. ids from catalogs never escape the output folder ---------------------------------------


@pytest.mark.parametrize("rid", ["./../../victim", "../x", "/etc/passwd", "a/b", "..", ".hidden",
                                 "x" * 300, "tab\there"])
def test_01_folder_names_from_ids_stay_inside(rid):
    name = folder_name(rid)
    assert "/" not in name and not name.startswith(".") and len(name) <= 100
    assert folder_name(rid) == name and folder_name(rid + "y") != name


def test_01_archive_with_a_hostile_id_writes_inside(oscd_dir, tmp_path):
    records = ingest([oscd_dir / "rio_20160424.tif", oscd_dir / "rio_20171011.tif"]).records
    hostile = [dataclasses.replace(r, id="./../../victim" if "2017" in r.id else r.id)
               for r in records]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    out = tmp_path / "a" / "b" / "out"
    result = process_archive(Catalog.from_records(hostile), out, onboard=FAST,
                             cluster=ClusterOptions(workers=0), progress=False)
    assert not result.failed, result.failed
    assert (victim / "keep.txt").read_text() == "precious"
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["id"] == "./../../victim" and folder.parent == out


# -- 2. an output never replaces an input -------------------------------------------------------


def test_02_outputs_that_are_inputs_are_refused(rio, rio_lr, tmp_path):
    target, ref = rio
    before = {p: sha256_file(p) for p in (target, ref, rio_lr)}
    cases = [
        ("onboard", target, "-r", ref, "-m", "bicubic", "-o", target),
        ("onboard", target, "-r", ref, "-m", "bicubic", "-o", ref),
        ("ground", rio_lr, "-r", ref, "-o", rio_lr),
        ("ground", rio_lr, "-r", ref, "-o", tmp_path / "hr.tif", "--relevance", rio_lr),
        ("ground", rio_lr, "-r", ref, "-o", tmp_path / "hr.tif", "--relevance",
         tmp_path / "hr.tif"),
    ]
    link = tmp_path / "alias.tif"
    link.symlink_to(target)
    cases.append(("onboard", target, "-r", ref, "-m", "bicubic", "-o", link))
    for args in cases:
        res = _cli(*args)
        assert res.exit_code == 1, (args, res.output)
        assert "georefscale: error:" in res.output
        assert "would be destroyed" in res.output or "two outputs" in res.output or (
            "symbolic link" in res.output), res.output
    assert {p: sha256_file(p) for p in before} == before
    assert not (tmp_path / "hr.tif").exists()


def test_02_catalog_build_onto_a_raster(rio, tmp_path):
    before = sha256_file(rio[0])
    res = _cli("catalog", "build", tmp_path, "-o", rio[0], "--fresh")
    assert res.exit_code == 1 and "would be destroyed" in res.output
    assert sha256_file(rio[0]) == before


# -- 3. only regular files are replaced ---------------------------------------------------------


def test_03_a_device_is_never_replaced(rio, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    res = _cli("onboard", rio[0], "-r", rio[1], "-m", "bicubic", "-o", fifo)
    assert res.exit_code == 1 and "not a regular file" in res.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    res = _cli("onboard", rio[0], "-r", rio[1], "-m", "bicubic", "-o", "/dev/null")
    assert res.exit_code == 1 and "not a regular file" in res.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# -- 4. the archive's output is apart from the imagery ------------------------------------------


def test_04_archive_out_inside_or_around_the_imagery(oscd_dir, tmp_path):
    data = tmp_path / "data"
    for name in ("rio_20160424", "rio_20171011"):  # folder per item, as STAC archives are
        (data / name).mkdir(parents=True)
        (data / name / f"{name}.tif").write_bytes((oscd_dir / f"{name}.tif").read_bytes())
    cat = Catalog.from_records(ingest([data]).records)
    for out in (data, data / "rio_20171011", data / "rio_20160424" / "out"):
        with pytest.raises(InputError, match="overlaps the folder"):
            process_archive(cat, out, onboard=FAST, cluster=ClusterOptions(workers=0),
                            progress=False)
    assert sorted(p.name for p in (data / "rio_20171011").iterdir()) == ["rio_20171011.tif"]


# -- 6. crafted product tags are refused before any work ---------------------------------------


@pytest.mark.parametrize("tag, value, match", [
    ("TILE", "400000000", "tile"),
    ("HALO", "40000000", "halo"),
    ("FALLBACK_MODEL", "noref-s2-x4", None),
    ("SOURCE_DTYPE", "not_a_dtype", "SOURCE_DTYPE"),
    ("SOURCE_DTYPE", "complex64", "SOURCE_DTYPE"),
    ("SHIFT", "[1, 2, 3]", "SHIFT"),
    ("SHIFT", "[NaN, 0]", "SHIFT"),
    ("SHIFT", "[1e9, 0]", "SHIFT"),
    ("SCALE", "-10000", "SCALE"),
    ("TARGET_WIDTH", "427", "tags were changed"),
    ("TARGET_WIDTH", "440", "TARGET_WIDTH"),
    ("FORMAT", "99", "FORMAT"),
    ("MODEL", "/tmp/evil.safetensors", "not a model name"),
    ("MODEL", "evil.safetensors", "not a model name"),
    ("REFERENCE_IDENTITY", "zz", "REFERENCE_IDENTITY"),
])
def test_06_crafted_tags(rio, rio_lr, tmp_path, tag, value, match):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(rio_lr.read_bytes())
    with rasterio.open(bad, "r+") as ds:
        tags = {f"GEOREFSCALE_{tag}": value}
        if tag == "FALLBACK_MODEL":  # two billion fallback tiles
            tags["GEOREFSCALE_FALLBACK_TILES"] = "0-2000000000"
            match = "bad tile range"
        ds.update_tags(**tags)
        if match != "tags were changed":  # a crafter recomputes the integrity digest
            ds.update_tags(GEOREFSCALE_TAGS_SHA256=tags_digest(georefscale_tags(ds)))
    with pytest.raises(InputError, match="bad.tif: georefscale tags") as err:
        ground(bad, rio[1], out=tmp_path / "hr.tif")
    assert match.lower() in str(err.value).lower()
    assert not (tmp_path / "hr.tif").exists()


# -- 7. the model must fit the product ----------------------------------------------------------


def test_07_model_of_another_family_is_refused(rio, tmp_path):
    lr = tmp_path / "lr.tif"
    onboard(rio[0], None, out=lr, options=OnboardOptions(model="noref-s2-x4",
                                                           tiling=TilingOptions(128, 16)))
    with rasterio.open(lr, "r+") as ds:
        ds.update_tags(GEOREFSCALE_MODEL="noref-naip-x4")
        ds.update_tags(GEOREFSCALE_TAGS_SHA256=tags_digest(georefscale_tags(ds)))
    with pytest.raises(InputError, match="model noref-naip-x4 does not fit the product .*"
                                         "data type uint8, not uint16.*models that fit: "):
        ground(lr, None, out=tmp_path / "hr.tif")
    assert not (tmp_path / "hr.tif").exists()


# -- 10. special files never hang ---------------------------------------------------------------


def test_10_special_files_as_inputs(rio, tmp_path):
    fifo = tmp_path / "ref.fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.tif"
    zero.symlink_to("/dev/zero")
    for bad in (fifo, zero):
        res = _cli("onboard", rio[0], "-r", bad, "-m", "bicubic", "-o", tmp_path / "lr.tif")
        assert res.exit_code == 1 and "not a regular file" in res.output, res.output
        res = _cli("onboard", bad, "-r", rio[1], "-m", "bicubic", "-o", tmp_path / "lr.tif")
        assert res.exit_code == 1 and "not a regular file" in res.output, res.output
    assert not (tmp_path / "lr.tif").exists()


# -- 11. option values are checked where they are defined ---------------------------------------


@pytest.mark.parametrize("args, match", [
    (["--tile", "4"], "tile 4 must be an integer"),
    (["--min-agreement", "nan"], "min_agreement"),
    (["--min-agreement", "5"], "min_agreement"),
])
def test_11_bad_onboard_options(rio, tmp_path, args, match):
    res = _cli("onboard", rio[0], "-r", rio[1], "-m", "bicubic", "-o", tmp_path / "lr.tif",
               *args)
    assert res.exit_code == 1 and match in res.output
    assert not (tmp_path / "lr.tif").exists()


@pytest.mark.parametrize("alpha", ["nan", "inf", "-1"])
def test_11_bad_alpha(rio, rio_lr, tmp_path, alpha):
    res = _cli("ground", rio_lr, "-r", rio[1], "-o", tmp_path / "hr.tif", "--alpha", alpha)
    assert res.exit_code == 1 and "alpha must be a finite number" in res.output
    assert not (tmp_path / "hr.tif").exists()


# -- 9. a killed run's temporaries are removed by the next one ----------------------------------


def test_09_stale_temporaries_are_removed(rio, tmp_path):
    lr = tmp_path / "lr.tif"
    stale = [tmp_path / ".lr.tif.abc123.tmp.tif", tmp_path / ".lr.tif.def456.cog.tmp.tif"]
    for p in stale:
        p.write_bytes(b"half")
    other = tmp_path / ".other.tif.abc.tmp.tif"
    other.write_bytes(b"not ours")
    onboard(rio[0], rio[1], out=lr, options=FAST)
    assert not any(p.exists() for p in stale) and other.exists()


# -- 15. grids of every orientation -------------------------------------------------------------


@pytest.mark.parametrize("flip", ["south-up", "west-left", "rot180"])
def test_15_unusual_orientations_overlap(rio, tmp_path, flip):
    with rasterio.open(rio[0]) as ds:
        arr, grid = ds.read(), Grid.from_dataset(ds)
    t = grid.transform
    if flip == "south-up":
        transform = t * rasterio.Affine.translation(0, grid.height) * rasterio.Affine.scale(1, -1)
        arr = arr[:, ::-1]
    elif flip == "west-left":
        transform = t * rasterio.Affine.translation(grid.width, 0) * rasterio.Affine.scale(-1, 1)
        arr = arr[:, :, ::-1]
    else:
        transform = t * rasterio.Affine.translation(grid.width, grid.height) * \
            rasterio.Affine.scale(-1, -1)
        arr = arr[:, ::-1, ::-1]
    g = Grid(crs=grid.crs, transform=transform, width=grid.width, height=grid.height)
    path = write_geotiff(tmp_path / f"{flip}.tif", np.ascontiguousarray(arr), g)
    with open_raster(path) as ds:
        assert overlaps(ds, grid) and overlaps(ds, g)


# -- 16. the archive checks the target's checksum -----------------------------------------------


def test_16_target_edited_after_cataloguing(rio, tmp_path):
    cat = Catalog.from_records(ingest(rio).records)
    with rasterio.open(rio[0], "r+") as ds:
        ds.write(ds.read(1, window=((0, 1), (0, 1))) + 1, 1, window=((0, 1), (0, 1)))
    result = process_archive(cat, tmp_path / "out", onboard=FAST,
                             cluster=ClusterOptions(workers=0), progress=False)
    (failed,) = result.failed
    assert "target rio_20171011 changed since it was catalogued" in failed["error"]


# -- 17. a product made with a trained model file is grounded from the CLI ---------------------


def test_17_ground_with_a_model_file(rio, tmp_path):
    torch = pytest.importorskip("torch")
    from georefscale.engine import NetConfig, RefScaleNet
    from georefscale.engine.weights import save_model

    torch.manual_seed(0)
    net = RefScaleNet(NetConfig(bands=4, factor=4, hidden=8, blocks=1, use_reference=False))
    weights = save_model(net, {"name": "noref-mine-x4", "dtype": "uint16", "scale": 10000.0},
                         tmp_path / "models")
    lr = tmp_path / "lr.tif"
    res = _cli("onboard", rio[0], "-m", weights, "--tile", "128", "--halo", "16", "-o", lr, "-q")
    assert res.exit_code == 0, res.output
    res = _cli("ground", lr, "-o", tmp_path / "hr.tif", "-q")
    assert res.exit_code == 1 and "unknown model 'noref-mine-x4'" in res.output
    res = _cli("ground", lr, "-m", weights, "-o", tmp_path / "hr.tif", "-q")
    assert res.exit_code == 0, res.output


# -- 18. a full disk is one line ----------------------------------------------------------------


def test_18_file_size_limit_is_one_line(rio, tmp_path):
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run([sys.executable, "-m", "georefscale", "onboard", str(rio[0]), "-r",
                          str(rio[1]), "-m", "bicubic", "-o", str(out / "lr.tif")],
                         capture_output=True, text=True, preexec_fn=limit, timeout=300)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and last.startswith("georefscale: error:"), res.stderr
    assert "Traceback" not in res.stderr and "disk full" in last
    assert list(out.iterdir()) == []


# -- bad inputs that already had clear errors (kept) -------------------------------------------


def test_known_bad_inputs(rio, rio_lr, tmp_path):
    target, ref = rio
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    cases = [
        (("onboard", tmp_path / "missing.tif", "-r", ref, "-o", tmp_path / "o.tif"),
         "target file does not exist"),
        (("onboard", text, "-r", ref, "-o", tmp_path / "o.tif"), "not a raster GDAL can read"),
        (("onboard", target, "-r", text, "-m", "bicubic", "-o", tmp_path / "o.tif"),
         "not a raster GDAL can read"),
        (("onboard", target, "-r", ref, "-o", tmp_path / "nodir" / "o.tif"),
         "does not exist"),
        (("onboard", target, "-r", ref, "-f", "3", "-o", tmp_path / "o.tif"),
         "factor must be 2 or 4"),
        (("ground", target, "-r", ref, "-o", tmp_path / "o.tif"), "not a georefscale LR product"),
        (("ground", rio_lr, "-o", tmp_path / "o.tif"), "made with 1 reference(s)"),
        (("ground", rio_lr, "-r", target, "-o", tmp_path / "o.tif"), "differs from reference"),
        (("onboard", target, "-r", ref, "--codec", "nope", "-o", tmp_path / "o.tif"), "codec"),
        (("onboard", target, "-r", ref, "--quality", "5", "-o", tmp_path / "o.tif"),
         "a quality needs a codec"),
    ]
    for args, match in cases:
        res = _cli(*args)
        assert res.exit_code == 1 and match in res.output, (args, res.output)
    assert not (tmp_path / "o.tif").exists()



# -- 13. metadata is kept -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", [None, "jpeg2000"])
def test_13_band_metadata_reaches_lr_and_hr(naip_dir, tmp_path, codec):
    src = naip_dir / "m_4709963_se_14_1_20200831.tif"
    target = tmp_path / "target.tif"
    with rasterio.open(src) as ds:
        arr, grid = ds.read(window=((0, 256), (0, 320))), Grid.from_dataset(ds)
        grid = grid.window_grid(rasterio.windows.Window(0, 0, 320, 256))
    profile = {"driver": "GTiff", "width": 320, "height": 256, "count": 4, "dtype": "uint8",
               "crs": grid.crs, "transform": grid.transform, "photometric": "RGB"}
    with rasterio.open(target, "w", **profile) as ds:
        ds.write(arr)
        ds.scales, ds.offsets = (0.0001,) * 4, (-0.1,) * 4
        ds.units = ("reflectance",) * 4
        for i, wl in enumerate((0.65, 0.56, 0.49, 0.83), start=1):
            ds.update_tags(i, WAVELENGTH=str(wl))
        ds.update_tags(ns="ACQUISITION", SENSOR="NAIP")
        ds.colorinterp = [rasterio.enums.ColorInterp[c]
                          for c in ("red", "green", "blue", "undefined")]
    lr = tmp_path / "lr.tif"
    options = OnboardOptions(model="bicubic", factor=4, tiling=TilingOptions(128, 16))
    if codec:
        options = dataclasses.replace(options, codec=dataclasses.replace(options.codec,
                                                                         name=codec))
    lr = onboard(target, None, out=lr, options=options)
    hr = ground(lr, None, out=tmp_path / "hr.tif")
    for path in ([lr] if codec is None else []) + [hr]:
        with rasterio.open(path) as ds:
            assert ds.scales == (0.0001,) * 4 and ds.offsets == (-0.1,) * 4, path
            assert ds.units == ("reflectance",) * 4
            assert ds.tags(1)["WAVELENGTH"] == "0.65" and ds.tags(4)["WAVELENGTH"] == "0.83"
            assert ds.tags(ns="ACQUISITION") == {"SENSOR": "NAIP"}
            assert [c.name for c in ds.colorinterp][:3] == ["red", "green", "blue"]


def _masked_target(oscd_dir, path, *, as_nodata: bool = False):
    """A Montpellier crop (Sentinel-2, uint16) with an irregular hole: a circle and a strip of
    partial 4 x 4 blocks at the right edge, zero under the hole. The hole is a GDAL internal
    mask without a nodata value, or (``as_nodata``) the same hole as nodata 0. Returns the path,
    the pixels and the hole (True: masked)."""
    with rasterio.open(oscd_dir / "montpellier_20171030.tif") as ds:
        win = rasterio.windows.Window(0, 0, 320, 256)
        a, grid = ds.read(window=win), Grid.from_dataset(ds).window_grid(win)
    assert a.min() > 0  # 0 is free to be the nodata value of the twin
    yy, xx = np.mgrid[:256, :320]
    hole = (yy - 130) ** 2 + (xx - 150) ** 2 < 61**2  # not aligned to 4 x 4 blocks
    hole[42:201, 301:] = True  # partial blocks on the edge
    b = np.where(hole, 0, a).astype(a.dtype)
    if as_nodata:
        return write_geotiff(path, b, grid, nodata=0), a, hole
    profile = {"driver": "GTiff", "width": 320, "height": 256, "count": 4, "dtype": "uint16",
               "crs": grid.crs, "transform": grid.transform}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as ds:
        ds.write(b)
        ds.write_mask(~hole)
    return path, a, hole


def _dataset_mask(path) -> np.ndarray:
    """The per-dataset mask of a GeoTIFF without nodata (True: masked)."""
    with rasterio.open(path) as ds:
        assert ds.nodata is None, path
        assert all(rasterio.enums.MaskFlags.per_dataset in f for f in ds.mask_flag_enums), path
        return ds.read_masks(1) == 0


@pytest.mark.parametrize("via", ["api", "cli-cog"])
def test_13_internal_mask_is_carried(oscd_dir, tmp_path, via):
    from scipy.ndimage import binary_dilation

    from georefscale.convention import block_all
    from georefscale.report import reconstruction_error

    target, a, hole = _masked_target(oscd_dir, tmp_path / "t.tif")
    twin, _, _ = _masked_target(oscd_dir, tmp_path / "twin.tif", as_nodata=True)
    options = OnboardOptions(model="noref-s2-x4", tiling=TilingOptions(128, 16))
    hrs = {}
    for name, src in (("mask", target), ("nodata", twin)):
        lr, hr = tmp_path / f"{name}_lr.tif", tmp_path / f"{name}_hr.tif"
        if via == "api" or name == "nodata":
            onboard(src, None, out=lr, options=options)
            ground(lr, None, out=hr)
        else:
            res = _cli("onboard", src, "-m", "noref-s2-x4", "--tile", 128, "--halo", 16,
                       "--cog", "-o", lr, "-q")
            assert res.exit_code == 0, res.output
            res = _cli("ground", lr, "--cog", "-o", hr, "-q")
            assert res.exit_code == 0, res.output
        with rasterio.open(hr) as ds:
            hrs[name] = ds.read().astype(float)
        if name == "mask":
            np.testing.assert_array_equal(_dataset_mask(lr), block_all(hole[None], 4)[0])
            np.testing.assert_array_equal(_dataset_mask(hr), hole)
            if via == "cli-cog":
                for path in (lr, hr):
                    with rasterio.open(path) as ds:
                        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", path
    ring = binary_dilation(hole, iterations=6) & ~hole  # valid pixels beside the hole
    rmse = {k: np.sqrt(((h - a) ** 2)[:, ring].mean()) for k, h in hrs.items()}
    assert rmse["mask"] <= rmse["nodata"] * 1.001, rmse
    scores = [reconstruction_error(t, tmp_path / f"{k}_hr.tif", 10000.0)["rmse_dn"]
              for k, t in (("mask", target), ("nodata", twin))]  # masked samples not scored
    assert scores[0] == pytest.approx(scores[1], rel=1e-3), scores


@pytest.mark.parametrize("how", ["jpeg2000", "layers", "archive"])
def test_13_internal_mask_through_codec_layers_and_archive(oscd_dir, tmp_path, how):
    from georefscale.options import CodecChoice, GroundOptions, RateTarget

    (tmp_path / "data").mkdir()
    target, a, hole = _masked_target(oscd_dir, tmp_path / "data" / "montpellier_20171030.tif")
    options = OnboardOptions(model="bicubic", factor=4, tiling=TilingOptions(128, 16))
    if how == "archive":
        ref = tmp_path / "data" / "montpellier_20150812.tif"
        ref.write_bytes((oscd_dir / ref.name).read_bytes())
        result = process_archive(Catalog.from_records(ingest([ref, target]).records),
                                 tmp_path / "out", onboard=options, ground=GroundOptions(),
                                 cluster=ClusterOptions(workers=0), progress=False)
        assert not result.failed, result.failed
        hr = next((tmp_path / "out").rglob("*hr*.tif"))
    else:
        if how == "jpeg2000":
            options = dataclasses.replace(options, codec=CodecChoice("jpeg2000", 20))
        else:
            options = dataclasses.replace(options, rate=RateTarget(max_error=3))
        lr = onboard(target, None, out=tmp_path / "lr.tif", options=options)
        hr = ground(lr, None, out=tmp_path / "hr.tif")
    np.testing.assert_array_equal(_dataset_mask(hr), hole)
    with rasterio.open(hr) as ds:
        err = np.abs(ds.read().astype(float) - a)
    if how == "layers":
        assert err[:, ~hole].max() <= 3
    if how == "jpeg2000":  # the decoded LR's hole is filled as a nodata hole is
        from scipy.ndimage import binary_dilation

        twin, _, _ = _masked_target(oscd_dir, tmp_path / "twin.tif", as_nodata=True)
        lr = onboard(twin, None, out=tmp_path / "twin_lr.tif", options=options)
        with rasterio.open(ground(lr, None, out=tmp_path / "twin_hr.tif")) as ds:
            err_nodata = np.abs(ds.read().astype(float) - a)
        ring = binary_dilation(hole, iterations=6) & ~hole
        assert (err[:, ring] ** 2).mean() <= (err_nodata[:, ring] ** 2).mean() * 1.001


def test_13_internal_mask_left_out_of_coregistration(oscd_dir, tmp_path):
    from georefscale.raster.coreg import coregister

    found = []
    with rasterio.open(oscd_dir / "montpellier_20150812.tif") as ref:
        for as_nodata in (False, True):
            path, _, _ = _masked_target(oscd_dir, tmp_path / f"{as_nodata}.tif",
                                        as_nodata=as_nodata)
            with rasterio.open(path) as ds:
                found.append(coregister(ds, [ref], Grid.from_dataset(ds)))
    assert found[0] == found[1]


def test_13_nodata_and_internal_mask_together_are_refused(oscd_dir, tmp_path):
    target, _, hole = _masked_target(oscd_dir, tmp_path / "t.tif")
    with rasterio.open(target, "r+") as ds:
        ds.nodata = 0
    res = _cli("onboard", target, "-m", "bicubic", "-f", 4, "-o", tmp_path / "lr.tif", "-q")
    assert res.exit_code == 1, res.output
    assert f"{target}: has both a nodata value and an internal mask" in res.output
    assert not (tmp_path / "lr.tif").exists()


# -- 12. the HR nodata mask is the target's, exactly, and holes do not ring ---------------------


@pytest.mark.parametrize("nodata, dtype, model, codec", [
    (0, "uint16", "noref-s2-x4", None),
    (65535, "uint16", "noref-s2-x4", "jpeg2000"),
    (float("nan"), "float32", "bicubic", None),
])
def test_12_nodata_mask_is_exact(oscd_dir, tmp_path, nodata, dtype, model, codec):
    from scipy.ndimage import binary_dilation

    from georefscale.options import CodecChoice

    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        a, grid = ds.read().astype(dtype), Grid.from_dataset(ds)
    if dtype == "float32":
        a /= 10000
    yy, xx = np.mgrid[: a.shape[1], : a.shape[2]]
    hole = (yy - 150) ** 2 + (xx - 200) ** 2 < 61**2  # not aligned to 4 x 4 blocks
    b = a.copy()
    b[:, hole] = nodata
    b[2, 10:13, 30:37] = nodata  # one band only
    target = write_geotiff(tmp_path / "t.tif", b, grid, nodata=nodata)
    options = OnboardOptions(model=model, factor=4, codec=CodecChoice(codec, 20 if codec else None))
    lr = onboard(target, None, out=tmp_path / "lr.tif", options=options)
    hr = ground(lr, None, out=tmp_path / "hr.tif")
    with rasterio.open(hr) as ds:
        h = ds.read()
    want = np.isnan(b) if np.isnan(nodata) else b == nodata
    got = np.isnan(h) if np.isnan(nodata) else h == nodata
    np.testing.assert_array_equal(got, want)
    if model != "bicubic":  # valid pixels beside the hole are not much worse than elsewhere
        err = (h.astype(float) - a) ** 2
        ring = binary_dilation(hole, iterations=6) & ~hole
        far = ~binary_dilation(hole, iterations=30)
        assert np.sqrt(err[:, ring].mean()) < 1.6 * np.sqrt(err[:, far].mean())


def test_11_evaluate_and_rd_refuse_empty_results(oscd_dir, tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for day in ("20200101", "20210101"):
        (pairs / f"x_{day}.tif").write_text("not a raster")
    res = _cli("evaluate", "--pairs", pairs, "--include-seen", "--json", tmp_path / "e.json")
    assert res.exit_code == 1 and "no site could be scored" in res.output, res.output
    res = _cli("rd", "--pairs", pairs, "--include-seen", "--json", tmp_path / "r.json")
    assert res.exit_code == 1 and "x_20210101.tif: target is not a raster" in res.output
    res = _cli("rd", "--pairs", oscd_dir, "--bpp", "-1,0", "--json", tmp_path / "r.json")
    assert res.exit_code == 1 and "--bpp values must be positive" in res.output, res.output
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "r.json").exists()


# -- 14. DataArrays decoded with scale / offset, and results that outlive their files ----------


def test_14_dataarrays(oscd_dir, tmp_path):
    rioxarray = pytest.importorskip("rioxarray")
    import georefscale
    from georefscale.options import GroundOptions

    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        a, grid = ds.read(), Grid.from_dataset(ds)
    path = tmp_path / "scaled.tif"
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 4,
               "dtype": "uint16", "crs": grid.crs, "transform": grid.transform, "nodata": 0}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(a)
        ds.scales, ds.offsets = (0.0001,) * 4, (-0.1,) * 4
    da = rioxarray.open_rasterio(path, mask_and_scale=True).load()
    res = georefscale.roundtrip(da, None, options=(FAST, GroundOptions()))
    hr = res["hr"]
    assert hr.dtype == np.float32 and res["psnr_db"] > 25
    assert abs(float(hr.mean()) - float(da.mean())) < 0.01  # same decoded convention
    lr = georefscale.onboard(rioxarray.open_rasterio(oscd_dir / "rio_20171011.tif").load(), None,
                             options=FAST)
    assert lr.rio.nodata is None  # no longer refers to a deleted temporary file
    lr.rio.to_raster(tmp_path / "lr_again.tif")
    hr.rio.to_raster(tmp_path / "hr_again.tif")


def test_15_gcp_raster_is_named_and_rotated_grids_overlap(rio, tmp_path):
    from rasterio.control import GroundControlPoint

    with rasterio.open(rio[0]) as ds:
        arr, grid = ds.read(), Grid.from_dataset(ds)
    gcp_path = tmp_path / "gcps.tif"
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 4,
               "dtype": "uint16"}
    with rasterio.open(gcp_path, "w", **profile) as ds:
        ds.write(arr)
        corners = [(0, 0), (0, grid.width), (grid.height, 0), (grid.height, grid.width)]
        gcps = [GroundControlPoint(r, c, *(grid.transform * (c, r))) for r, c in corners]
        ds.gcps = (gcps, grid.crs)
    with pytest.raises(InputError, match="georeferenced by GCPs only"):
        open_raster(gcp_path, "target").close()
    t = grid.transform  # turned by 90 degrees about the top-left corner
    turned = rasterio.Affine(0, -t.e, t.c, t.a, 0, t.f) if t.b == 0 else t
    g90 = Grid(crs=grid.crs, transform=turned, width=grid.height, height=grid.width)
    path = write_geotiff(tmp_path / "rot90.tif", np.ascontiguousarray(arr.transpose(0, 2, 1)), g90)
    with open_raster(path) as ds:
        assert overlaps(ds, Grid(crs=grid.crs, transform=turned, width=10, height=10))
