"""Codecs through real GDAL drivers on real Sentinel-2 (uint16) and NAIP (uint8) pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from georefscale import codecs
from georefscale.errors import InputError
from georefscale.metrics import psnr


@pytest.fixture(scope="module")
def s2(oscd_dir: Path):
    """A 4-band uint16 OSCD crop (128 x 160) with its georeferencing and band names."""
    with rasterio.open(oscd_dir / "norcia_20171018.tif") as src:
        win = Window(40, 30, 160, 128)
        return (src.read(window=win), {"crs": src.crs, "transform": src.window_transform(win)},
                src.descriptions)


@pytest.fixture(scope="module")
def naip(naip_dir: Path):
    """A 4-band uint8 NAIP crop (RGBN)."""
    path = sorted(naip_dir.glob("*.tif"))[-1]
    with rasterio.open(path) as src:
        win = Window(300, 300, 192, 160)
        return src.read(window=win), {"crs": src.crs, "transform": src.window_transform(win)}


def test_registry_lists_the_gdal_codecs():
    names = codecs.available_codecs()
    assert {"jpeg2000", "jpeg2000-lossless", "jpeg", "webp", "deflate", "zstd", "lerc"} <= set(
        names)
    assert codecs.get_codec("jpeg2000").driver == "JP2OpenJPEG"


@pytest.mark.parametrize("name", ["jpeg2000-lossless", "deflate", "zstd", "lerc"])
def test_lossless_round_trip_keeps_pixels_and_georeferencing(s2, name):
    arr, profile, names = s2
    data = codecs.encode(arr, name, profile=profile, tags={"SITE": "norcia"}, descriptions=names)
    out = codecs.read_encoded(data)
    np.testing.assert_array_equal(out.array, arr)
    assert out.array.dtype == np.uint16
    assert out.crs == profile["crs"]
    assert out.transform.almost_equals(profile["transform"])
    assert out.tags["SITE"] == "norcia"
    assert out.descriptions == tuple(names)
    assert len(data) < arr.nbytes  # it does compress


def test_jpeg2000_rate_follows_quality_and_psnr_rises(s2):
    arr, profile, _ = s2
    sizes, scores = [], []
    for q in (1, 4, 16):
        data = codecs.encode(arr, "jpeg2000", q, profile=profile)
        rec = codecs.decode(data)
        assert rec.shape == arr.shape and rec.dtype == np.uint16
        sizes.append(len(data))
        scores.append(psnr(arr, rec, 10000))
    assert sizes[0] < sizes[1] < sizes[2]
    assert scores[0] < scores[1] < scores[2]
    # quality is the coded size in % of raw (headers add a few hundred bytes)
    assert abs(sizes[2] - 0.16 * arr.nbytes) < 0.1 * 0.16 * arr.nbytes + 1000


def test_jpeg2000_uses_enough_resolution_levels():
    assert codecs.jp2_resolutions(432, 468) == 6  # coarsest level 13.5 px
    assert codecs.jp2_resolutions(108, 117) == 4
    assert codecs.jp2_resolutions(10000, 10000) == 8  # bounded by the 1024 px JP2 tile
    assert codecs.jp2_resolutions(3, 3) == 1


@pytest.mark.parametrize("name,quality,floor_db", [("jpeg", 90, 30.0), ("webp", 90, 30.0)])
def test_8bit_codecs_round_trip(naip, name, quality, floor_db):
    arr, profile = naip
    data = codecs.encode(arr, name, quality, profile=profile)
    out = codecs.read_encoded(data)
    assert out.array.dtype == np.uint8 and out.array.shape == arr.shape
    assert out.crs == profile["crs"]
    assert psnr(arr, out.array, 255) > floor_db
    assert len(codecs.encode(arr, name, 20, profile=profile)) < len(data)


def test_16bit_to_8bit_codec_needs_a_mapping(s2):
    arr, profile, _ = s2
    with pytest.raises(InputError, match="ByteMapping"):
        codecs.encode(arr, "jpeg", 90)


def test_linear_byte_mapping_is_recorded_and_inverted(s2):
    arr, profile, _ = s2
    mapping = codecs.ByteMapping.linear(0, 10000, arr.shape[0])
    data = codecs.encode(arr, "jpeg", 95, profile=profile, mapping=mapping)
    back = codecs.decode(data)
    assert back.dtype == np.uint16
    raw = codecs.decode(data, unmap=False)
    assert raw.dtype == np.uint8
    # a 255-level stretch of 0..10000 is a 39.2 DN step: ~11 DN RMSE before coding loss
    assert 30 < psnr(arr, back, 10000) < 20 * np.log10(10000 / (10000 / 255 / np.sqrt(12))) + 0.5
    exact = mapping.inverse(mapping.forward(arr), "uint16")
    assert np.abs(exact.astype(float) - arr).max() <= 10000 / 255 / 2 + 1


def test_percentile_mapping_is_per_band_and_clips(s2):
    arr, _, _ = s2
    m = codecs.ByteMapping.percentile(arr, 1, 99)
    assert len(m.offset) == arr.shape[0] and len(set(m.scale)) > 1
    codes = m.forward(arr)
    assert codes.min() == 0 and codes.max() == 255
    hi = np.percentile(arr[0], 99)
    # values above the 99th percentile come back clipped to it
    assert m.inverse(codes, "uint16")[0].max() <= hi + m.scale[0]


def test_unknown_codec_lists_the_available_ones(s2):
    with pytest.raises(InputError, match="unknown codec 'jpeg3000'.*jpeg2000.*webp"):
        codecs.encode(s2[0], "jpeg3000")


@pytest.mark.parametrize("name,quality", [("jpeg2000", 0), ("jpeg2000", 101), ("jpeg", 0),
                                          ("jpeg", 101), ("webp", 50.5), ("jpeg2000", np.nan)])
def test_quality_out_of_range(naip, name, quality):
    with pytest.raises(InputError, match="quality"):
        codecs.encode(naip[0], name, quality)


def test_lossless_codec_refuses_a_quality(naip):
    with pytest.raises(InputError, match="lossless"):
        codecs.encode(naip[0], "zstd", 50)


def test_webp_needs_three_or_four_bands(naip):
    with pytest.raises(InputError, match="3 or 4 bands"):
        codecs.encode(naip[0][:2], "webp", 80)


def test_bits_per_pixel_counts_hr_pixels(s2):
    arr, profile, _ = s2
    lr = arr[:, ::4, ::4]
    data = codecs.encode(lr, "jpeg2000", 10, profile=profile)
    hr_bpp = codecs.bits_per_pixel(len(data), arr.shape)
    assert hr_bpp == pytest.approx(8 * len(data) / (128 * 160))
    assert hr_bpp == pytest.approx(codecs.bits_per_pixel(len(data), lr.shape) / 16)
    assert codecs.bits_per_pixel(1000, (400, 500)) == pytest.approx(0.04)
    with pytest.raises(InputError):
        codecs.bits_per_pixel(10, (0, 5))


def test_write_compressed_makes_a_georeferenced_file_gdal_opens(tmp_path, s2):
    arr, profile, names = s2
    path = tmp_path / "lr.jp2"
    n = codecs.write_compressed(path, arr, profile, {"GEOREFSCALE_FACTOR": "4"}, "jpeg2000", 8,
                                descriptions=names)
    assert n == path.stat().st_size
    with rasterio.open(path) as src:
        assert src.driver == "JP2OpenJPEG"
        assert src.crs == profile["crs"]
        assert src.transform.almost_equals(profile["transform"])
        assert src.tags()["GEOREFSCALE_FACTOR"] == "4"
        assert src.read().shape == arr.shape
    assert codecs.read_compressed(path).descriptions == tuple(names)
    assert [p.name for p in tmp_path.iterdir()] == ["lr.jp2"]


def test_write_compressed_leaves_nothing_on_failure(tmp_path, s2):
    arr, profile, _ = s2
    path = tmp_path / "lr.tif"
    path.write_bytes(b"old")
    with pytest.raises(InputError):
        codecs.write_compressed(path, arr, profile, {}, "jpeg", 80)  # 16-bit, no mapping
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["lr.tif"]


def test_decode_rejects_garbage():
    with pytest.raises(InputError):
        codecs.decode(b"not an image at all, really")


@pytest.mark.parametrize(("name", "quality"), [("jpeg2000", 20), ("webp", 60)])
def test_lossy_codecs_keep_the_exact_nodata_mask(s2, naip, name, quality):
    arr, profile = (s2[0], s2[1]) if name == "jpeg2000" else naip
    arr = arr.copy()
    arr[:, 40:90, 30:100] = 0  # a nodata hole (e.g. outside a swath)
    arr[0, 10, 10] = 0  # a single masked pixel in one band
    mapping = None
    data = codecs.encode(arr, name, quality, profile={**profile, "nodata": 0}, mapping=mapping)
    out = codecs.read_encoded(data)
    assert out.nodata == 0 and "CODEC_NODATA_MASK" not in out.tags
    np.testing.assert_array_equal(out.array == 0, arr == 0)
    # without the mask the codec would have moved the hole's edge off (and valid pixels onto) 0
    raw = rasterio.MemoryFile(data).open().read()
    assert (raw[arr == 0] != 0).any() or ((raw == 0) & (arr != 0)).any()


def test_a_corrupt_nodata_mask_is_a_clear_error(s2):
    arr, profile, _ = s2
    arr = arr.copy()
    arr[:, :8] = 0
    data = codecs.encode(arr, "jpeg2000", 20, profile={**profile, "nodata": 0})
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        tags = src.tags()
    bad = data.replace(tags["CODEC_NODATA_MASK"].encode()[:12], b"!!!!!!!!!!!!")
    with pytest.raises(InputError, match="corrupt CODEC_NODATA_MASK"):
        codecs.decode(bad)
