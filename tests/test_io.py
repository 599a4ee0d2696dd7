"""Raster I/O: checked opening, boundless reads, DN <-> float scaling, atomic (COG) writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from georefscale.errors import InputError
from georefscale.raster.grid import Grid
from georefscale.raster.io import (
    GeoTIFFWriter,
    check_output,
    default_scale,
    from_float,
    georefscale_tags,
    open_raster,
    prefixed,
    read_masked,
    read_window,
    reflect_index,
    to_float,
    write_geotiff,
)

UTM = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4000000), 40, 30)


def _plain_tiff(path, crs=None, transform=None):
    profile = dict(driver="GTiff", width=8, height=6, count=1, dtype="uint8")
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.ones((1, 6, 8), np.uint8))
    return path


def test_open_raster_rejects_non_raster(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("not an image")
    with pytest.raises(InputError, match=r"notes\.tif: target is not a raster"):
        open_raster(p, "target")


def test_open_raster_rejects_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_raster(tmp_path / "nope.tif")


def test_open_raster_rejects_missing_crs(tmp_path):
    p = _plain_tiff(tmp_path / "nocrs.tif", transform=UTM.transform)
    with pytest.raises(InputError, match=r"nocrs\.tif: reference has no CRS"):
        open_raster(p, "reference")


def test_open_raster_rejects_missing_transform(tmp_path):
    p = _plain_tiff(tmp_path / "nogeo.tif")
    with pytest.raises(InputError, match=r"nogeo\.tif: raster has no geotransform"):
        open_raster(p)


def test_read_window_interior_and_reflect(oscd_dir):
    with open_raster(oscd_dir / "paris_20161130.tif") as ds:
        full = ds.read()
        inner = read_window(ds, Window(5, 7, 20, 10))
        np.testing.assert_array_equal(inner, full[:, 7:17, 5:25])
        # a window that leaves the raster on every side: numpy's reflect padding
        h, w = ds.height, ds.width
        win = Window(-12, -9, w + 30, h + 21)
        padded = np.pad(full, ((0, 0), (9, 12), (12, 18)), mode="reflect")
        np.testing.assert_array_equal(read_window(ds, win), padded)
        const = read_window(ds, Window(-3, -2, 10, 10), fill=0)
        assert (const[:, :2] == 0).all() and (const[:, :, :3] == 0).all()
        np.testing.assert_array_equal(const[:, 2:, 3:], full[:, :8, :7])


def test_internal_mask_read_by_window_and_written(oscd_dir, tmp_path):
    """A per-dataset mask is read window by window (mirrored like the pixels outside the raster)
    and written back, as an internal mask, by the streaming writer and its COG."""
    with open_raster(oscd_dir / "paris_20161130.tif") as ds:
        full, grid = ds.read(), Grid.from_dataset(ds)
    yy, xx = np.mgrid[: grid.height, : grid.width]
    hole = (yy - 20) ** 2 + (xx - 30) ** 2 < 15**2
    src = tmp_path / "masked.tif"
    write_geotiff(src, full, grid, mask=hole)
    with open_raster(src) as ds:
        win = Window(-12, -9, 50, 40)
        arr, invalid = read_masked(ds, win)
        np.testing.assert_array_equal(arr, read_window(ds, win))
        padded = np.pad(hole, ((9, 0), (12, 0)), mode="reflect")[:40, :50]
        np.testing.assert_array_equal(invalid, np.repeat(padded[None], ds.count, axis=0))
    for cog in (False, True):
        out = tmp_path / f"rows_{cog}.tif"
        with GeoTIFFWriter(out, grid, count=full.shape[0], dtype=full.dtype, cog=cog,
                           internal_mask=True) as w:
            for r0 in range(0, grid.height, 100):
                rows = full[:, r0:r0 + 100].astype(np.float32) / 10000
                w.write_float_rows(rows, r0, 10000.0, mask=np.repeat(
                    hole[None, r0:r0 + 100], full.shape[0], axis=0))
        with rasterio.open(out) as ds:
            assert ds.nodata is None
            np.testing.assert_array_equal(ds.read_masks(1) == 0, hole)
            np.testing.assert_array_equal(ds.read()[:, ~hole], full[:, ~hole])
        if cog:
            assert cog_validate(str(out))[0], out


def test_reflect_index_size_one():
    np.testing.assert_array_equal(reflect_index(np.arange(-3, 4), 1), np.zeros(7))


def test_default_scales():
    assert default_scale("uint8") == 255
    assert default_scale("uint16") == 10000
    assert default_scale("int16") == 10000
    assert default_scale("float32") == 1.0
    with pytest.raises(InputError, match="unsupported data type"):
        default_scale("complex64")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_float_round_trip(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if dtype != "float32" else None
    if info:
        dn = rng.integers(info.min, info.max, size=(2, 9, 11), endpoint=True).astype(dtype)
    else:
        dn = rng.normal(size=(2, 9, 11)).astype(dtype)
    nodata = info.min if info else -9999.0
    dn[0, 0, 0] = nodata
    scale = default_scale(dtype)
    x, mask = to_float(dn, scale, nodata)
    assert x.dtype == np.float32 and mask[0, 0, 0] and mask.sum() == (dn == nodata).sum()
    assert x[0, 0, 0] == 0.0
    back = from_float(x, dtype, scale, nodata, mask)
    assert back.dtype == np.dtype(dtype)
    valid = ~mask & (dn != (info.min + 1 if info else nodata))  # moved off the nodata value
    np.testing.assert_array_equal(back[valid], dn[valid])
    assert back[0, 0, 0] == nodata


def test_from_float_clips_rounds_and_protects_nodata():
    x = np.array([[[-0.5, 0.0, 1.0 / 255, 0.5, 2.0, np.nan]]], dtype=np.float32)
    out = from_float(x, "uint8", 255, nodata=0)
    np.testing.assert_array_equal(out, [[[1, 1, 1, 128, 255, 0]]])  # 0 is nodata: valid -> 1
    out = from_float(x, "uint16", 10000)
    np.testing.assert_array_equal(out[0, 0, :5], [0, 0, 39, 5000, 20000])


def test_write_geotiff_keeps_metadata(tmp_path):
    arr = np.arange(2 * 30 * 40, dtype=np.uint16).reshape(2, 30, 40)
    tags = {"ACQUISITION_DATE": "2017-11-07", **prefixed({"factor": 4})}
    out = write_geotiff(tmp_path / "a.tif", arr, UTM, nodata=0, descriptions=["B02", "B03"],
                        tags=tags)
    with rasterio.open(out) as ds:
        assert ds.crs == UTM.crs and ds.transform == UTM.transform
        assert ds.nodata == 0 and ds.dtypes == ("uint16", "uint16")
        assert ds.descriptions == ("B02", "B03")
        assert ds.tags()["ACQUISITION_DATE"] == "2017-11-07"
        assert georefscale_tags(ds) == {"FACTOR": "4"}
        np.testing.assert_array_equal(ds.read(), arr)
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]


def test_writer_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with GeoTIFFWriter(target, UTM, count=1, dtype="uint8") as w:
            w.write_rows(np.ones((1, 5, 40), np.uint8), 0)
            raise RuntimeError("engine crashed")
    assert os.listdir(tmp_path) == []


def test_writer_failure_keeps_previous_output(tmp_path):
    target = tmp_path / "out.tif"
    write_geotiff(target, np.zeros((1, 30, 40), np.uint8), UTM)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with GeoTIFFWriter(target, UTM, count=1, dtype="uint8"):
            raise RuntimeError("boom")
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["out.tif"]


def test_write_rows_streams_in_strips(tmp_path):
    grid = Grid(UTM.crs, UTM.transform, 50, 1100)
    arr = np.random.default_rng(1).integers(0, 60000, (3, 1100, 50)).astype(np.uint16)
    with GeoTIFFWriter(tmp_path / "s.tif", grid, count=3, dtype="uint16") as w:
        for r0 in range(0, 1100, 77):
            w.write_rows(arr[:, r0 : r0 + 77], r0)
    with rasterio.open(tmp_path / "s.tif") as ds:
        np.testing.assert_array_equal(ds.read(), arr)
        assert ds.block_shapes[0] == (512, 512)


@pytest.mark.parametrize(("compress", "dtype"), [("deflate", "uint16"), ("zstd", "float32")])
def test_cog_passes_validation(tmp_path, oscd_dir, compress, dtype):
    with open_raster(oscd_dir / "abudhabi_20160120.tif") as ds:  # 785 x 799: needs overviews
        arr, grid, desc, tags = ds.read(), Grid.from_dataset(ds), ds.descriptions, ds.tags()
    arr = arr.astype(dtype)
    out = write_geotiff(tmp_path / "c.tif", arr, grid, descriptions=desc, tags=tags, cog=True,
                        compress=compress)
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as ds:
        assert ds.block_shapes[0] == (512, 512)
        assert ds.overviews(1), "COG has no overviews"
        assert ds.compression.value.lower() == compress
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == ("3" if dtype == "float32"
                                                                  else "2")
        assert ds.descriptions == desc and ds.tags()["ACQUISITION_DATE"] == tags["ACQUISITION_DATE"]
        np.testing.assert_array_equal(ds.read(), arr)
    assert os.listdir(tmp_path) == ["c.tif"]


def test_check_output_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_output(tmp_path / "missing" / "out.tif")


def test_check_output_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores mode bits: use a read-only kernel directory
        ro = next((p for p in ("/proc/sys", "/sys/kernel") if not os.access(p, os.W_OK)), None)
        if ro is None:
            pytest.skip("no read-only directory available to this user")
    with pytest.raises(InputError, match="not writable"):
        check_output(os.path.join(ro, "out.tif"))
