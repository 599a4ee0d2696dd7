"""Dask-backed DataArrays (``rioxarray.open_rasterio(path, chunks=...)`` of the real OSCD scenes):
written chunk by chunk, never computed whole, results lazy with their CRS, transform, band
coordinates and attributes, equal to the file path's results; the ``da.georefscale`` accessor."""

from __future__ import annotations

import gc
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

import georefscale
from georefscale.errors import InputError
from georefscale.options import GroundOptions, OnboardOptions
from georefscale.raster.grid import Grid
from georefscale.raster.io import BLOCKSIZE
from georefscale.xarray_io import to_geotiff

rioxarray = pytest.importorskip("rioxarray")
dask = pytest.importorskip("dask")
xr = pytest.importorskip("xarray")

BICUBIC = OnboardOptions(model="bicubic", factor=4)
#: chunks that fit neither the GeoTIFF blocks nor CHUNK, bands apart: rechunked, not refused
ODD = {"band": 1, "x": 100, "y": 77}


@pytest.fixture(scope="module")
def paris(oscd_dir):
    return oscd_dir / "paris_20171107.tif", oscd_dir / "paris_20161130.tif"


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """The temporary folder (where lazy results live) is ``tmp_path``, to see what is left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


class _Largest(dask.callbacks.Callback):
    """Records the largest array any dask task computed, and how many tasks ran."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.tasks = 0

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        self.tasks += 1
        self.largest = max(self.largest, getattr(result, "nbytes", 0))


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.tags(), Grid.from_dataset(ds)


def _same_metadata(lazy, path, **differ):
    """``lazy`` carries what rioxarray gives for the file at ``path`` (but the attributes
    ``differ``)."""
    with rioxarray.open_rasterio(path) as ref:
        assert lazy.dims == ref.dims and lazy.shape == ref.shape
        assert lazy.rio.crs == ref.rio.crs and lazy.rio.transform() == ref.rio.transform()
        for c in ("band", "y", "x"):
            assert np.array_equal(lazy[c].values, ref[c].values), c
        assert lazy.attrs == {**ref.attrs, **differ}
        assert lazy.rio.nodata == ref.rio.nodata


def test_lazy_in_lazy_out_equals_the_file_path(paris, own_tmp):
    target, ref = paris
    lr_file = georefscale.onboard(target, ref, out=own_tmp / "lr.tif", options=BICUBIC)
    hr_file = georefscale.ground(lr_file, ref, out=own_tmp / "hr.tif")
    da = rioxarray.open_rasterio(target, chunks=ODD)

    lr = da.georefscale.onboard(reference=ref, options=BICUBIC)
    assert lr.chunks is not None and lr.name == "lr"  # lazy, not loaded
    source = Path(lr.encoding["source"])
    assert source.parent.parent == own_tmp and source.parent.name.startswith("georefscale-result-")
    pixels, tags, _ = _read(lr_file)
    assert np.array_equal(lr.values, pixels)
    _same_metadata(lr, lr_file)
    assert lr.attrs["GEOREFSCALE_REFERENCE_ID"] == "paris_20161130"

    # written where asked: the same file, pixels and tags, as from the path
    lr_out = da.georefscale.onboard(reference=ref, options=BICUBIC, out=own_tmp / "lr_da.tif")
    assert Path(lr_out.encoding["source"]) == own_tmp / "lr_da.tif"
    got, got_tags, got_grid = _read(own_tmp / "lr_da.tif")
    assert np.array_equal(got, pixels) and got_tags == tags and got_grid == _read(lr_file)[2]

    hr = lr.georefscale.ground(reference=ref)
    assert hr.chunks is not None and hr.name == "hr"
    assert np.array_equal(hr.values, _read(hr_file)[0])
    _same_metadata(hr, hr_file, GEOREFSCALE_LR="LR product DataArray 'lr'")  # its input
    assert hr.rio.transform() == da.rio.transform() and hr.attrs["long_name"] == da.attrs[
        "long_name"]

    # each result's directory lasts as long as an array computed from it
    hr_dir = Path(hr.encoding["source"]).parent
    brighter = hr + 1
    del hr
    gc.collect()
    assert hr_dir.is_dir()
    del brighter
    gc.collect()
    assert not hr_dir.exists()
    del lr
    gc.collect()
    assert not source.parent.exists()
    assert (own_tmp / "lr_da.tif").exists()  # the caller's file stays


def test_the_input_is_never_computed_whole(oscd_dir, tmp_path):
    """Beirut (1180 x 1070 x 4 uint16) in chunks of 257 rows: no task result is more than a
    row of 512-row blocks (the GeoTIFF's), never the whole."""
    path = oscd_dir / "beirut_20171003.tif"
    da = rioxarray.open_rasterio(path, chunks={"x": 300, "y": 257})
    with _Largest() as seen:
        to_geotiff(da, tmp_path / "copy.tif", "target")
    assert 0 < seen.largest <= 4 * BLOCKSIZE * da.sizes["x"] * 2 < da.nbytes / 2
    with rasterio.open(path) as src:
        assert np.array_equal(_read(tmp_path / "copy.tif")[0], src.read())


def test_lazy_decoded_roundtrip_equals_the_loaded_one(oscd_dir, own_tmp):
    """Scale, offset and nodata decoded by rioxarray (float32, NaN) come back the same way."""
    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        a, grid = ds.read(), Grid.from_dataset(ds)
    path = own_tmp / "scaled.tif"
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 4,
               "dtype": "uint16", "crs": grid.crs, "transform": grid.transform, "nodata": 0}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(a)
        ds.scales, ds.offsets = (0.0001,) * 4, (-0.1,) * 4
    lazy = rioxarray.open_rasterio(path, mask_and_scale=True, chunks={"x": 128, "y": 100})
    options = (BICUBIC, GroundOptions())
    got = lazy.georefscale.roundtrip(options=options)
    want = georefscale.roundtrip(lazy.load(), options=options)
    for key in ("lr", "hr"):
        assert got[key].chunks is not None and got[key].dtype == want[key].dtype == np.float32
        assert np.array_equal(got[key].values, want[key].values, equal_nan=True)
        assert got[key].rio.encoded_nodata == want[key].rio.encoded_nodata == 0
        assert got[key].rio.transform() == want[key].rio.transform()
    assert got["psnr_db"] == want["psnr_db"]


def test_bad_lazy_inputs_are_named_before_any_work(paris, own_tmp):
    target, ref = paris
    da = rioxarray.open_rasterio(target, chunks=ODD)
    no_crs = da.drop_vars("spatial_ref").rename("new")
    with _Largest() as seen:
        with pytest.raises(InputError, match="target DataArray 'new': has no CRS"):
            no_crs.georefscale.onboard(reference=ref, options=BICUBIC)
        stack = xr.concat([da, rioxarray.open_rasterio(ref, chunks=ODD)], dim="time")
        with pytest.raises(InputError, match=r"got dims \('time', 'band', 'y', 'x'\); select "
                                             r"one 'time' \(e.g. da.isel\(time=0\)\)"):
            stack.georefscale.onboard(reference=ref, options=BICUBIC)
        flat = da.isel(band=0).rename({"x": "col", "y": "row"})
        with pytest.raises(InputError, match="target DataArray: no x/y dimensions"):
            flat.georefscale.onboard(reference=ref, options=BICUBIC)
    assert seen.tasks == 0
    with pytest.raises(InputError, match="missing.tif"):
        da.georefscale.onboard(reference=own_tmp / "missing.tif", options=BICUBIC)
    assert not list(own_tmp.glob("georefscale-*"))  # no result directory left behind


@pytest.mark.parametrize("order", ["import georefscale, xarray", "import xarray, georefscale"])
def test_accessor_registered_without_importing_the_pipeline(order):
    code = (f"import sys; {order}; "
            "assert 'torch' not in sys.modules and 'georefscale.api' not in sys.modules; "
            "print(xarray.DataArray.georefscale.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "GeorefscaleAccessor"
    out = subprocess.run([sys.executable, "-c", "import sys, georefscale; "
                          "print('xarray' in sys.modules)"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
