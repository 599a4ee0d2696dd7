"""The sample of tiles on which the two-layer encoder compares base-layer rates."""

from __future__ import annotations

import itertools

import numpy as np
import rasterio

from georefscale.api import onboard
from georefscale.engine.run import resolve_model
from georefscale.layers import REBUILD, psnr, rebuild_base
from georefscale.link import encode_lr
from georefscale.options import CodecChoice, OnboardOptions
from georefscale.product import LRInfo
from georefscale.raster.grid import Grid
from georefscale.raster.io import read_masked, write_geotiff
from georefscale.references import ReferenceSet
from georefscale.sample import MAX_SHARE, SAMPLE_SHARE, SAMPLE_TILE, Sample

MODEL = "noref-s2-x4"


def _product(oscd_dir, tmp_path, rows, cols):
    with rasterio.open(oscd_dir / "montpellier_20171030.tif") as ds:
        win = rasterio.windows.Window(5, 7, cols, rows)
        a, grid = ds.read(window=win), Grid.from_dataset(ds).window_grid(win)
    target = write_geotiff(tmp_path / f"t{rows}x{cols}.tif", a, grid)
    lr = onboard(target, None, out=tmp_path / f"lr{rows}x{cols}.tif",
                 options=OnboardOptions(model=MODEL))
    with rasterio.open(lr) as ds:
        return target, lr, LRInfo.from_dataset(ds, lr.name)


def test_sample_rebuild_stands_for_the_scene(oscd_dir, tmp_path):
    """About a fifth of an odd-sized scene in full tiles, spread out; its rebuild from a
    coded base scores within 0.2 dB of the whole scene's rebuild on the same pixels."""
    target, lr, info = _product(oscd_dir, tmp_path, 390, 421)
    sample = Sample.make(info, REBUILD)
    assert sample is not None and SAMPLE_SHARE / 2 <= sample.share <= MAX_SHARE
    cores = [(int(t.core.row_off), int(t.core.col_off)) for t in sample.tiles]
    assert len(set(cores)) == len(cores) >= 2
    assert len({r for r, _ in cores}) > 1  # spread over rows, not one strip
    for t in sample.tiles:
        assert t.core.width == t.core.height == SAMPLE_TILE
        assert t.core.row_off + SAMPLE_TILE <= 390 and t.core.col_off + SAMPLE_TILE <= 421
    with rasterio.open(target) as ds:
        scene, invalid = read_masked(ds)
    cut = sample.cut(scene)
    assert cut.shape == (4, SAMPLE_TILE, SAMPLE_TILE * len(sample.tiles))
    r, c = cores[-1]
    np.testing.assert_array_equal(cut[:, :, -SAMPLE_TILE:],
                                  scene[:, r:r + SAMPLE_TILE, c:c + SAMPLE_TILE])

    base = tmp_path / "base.jp2"
    encode_lr(lr, base, CodecChoice("jpeg2000", 10.0))
    names = (tmp_path / f"scratch{i}" for i in itertools.count())
    models = (resolve_model(MODEL, 4), None)
    whole = rebuild_base(base, ReferenceSet(), models, lambda _: next(names))
    part = rebuild_base(base, ReferenceSet(), models, lambda _: next(names), sample)
    assert part.shape == cut.shape and part.dtype == scene.dtype
    valid = ~sample.cut(invalid)
    on_sample = psnr(cut, sample.cut(whole), valid, info.scale)
    assert abs(psnr(cut, part, valid, info.scale) - on_sample) < 0.2
    assert abs(psnr(scene, whole, ~invalid, info.scale) - on_sample) < 1.0


def test_small_scenes_have_no_sample(oscd_dir, tmp_path):
    """A sample that would cover more than half the scene saves too little: none."""
    assert Sample.make(_product(oscd_dir, tmp_path, 160, 192)[2], REBUILD) is None
    assert Sample.make(_product(oscd_dir, tmp_path, 100, 400)[2], REBUILD) is None  # no full tile
