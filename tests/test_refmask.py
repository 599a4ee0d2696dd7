"""Masks given for references on a real crop of Rio with a drawn cloud and shadow: an SCL-like
scene classification (20 m, classes 8 / 9 over the cloud, 3 over the shadow) served as the
``scl`` asset of a STAC Item and as ``reference_masks``; masked pixels are missing (the products
do not depend on them and equal those of the reference with the same pixels masked by GDAL), the
ground refuses another or no mask, the catalog ranks by the mask, and hostile masks fail
cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from test_clouds import _blob, _clouded

from georefscale.api import ground, onboard
from georefscale.errors import InputError
from georefscale.options import GroundOptions, OnboardOptions, TilingOptions
from georefscale.product import LRInfo
from georefscale.raster.io import georefscale_tags
from georefscale.raster.refmask import resolve_mask

SIZE = 256
TILING = TilingOptions(tile=128, halo=16)


def _scl(alpha: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """Scene classes on a grid of half the resolution: 9 under the cloud's core, 8 under its
    edge, 3 on the shadow, 4 (vegetation) and 5 (bare soil) elsewhere."""
    h, w = alpha.shape
    block = alpha.reshape(h // 2, 2, w // 2, 2)
    scl = np.full((h // 2, w // 2), 4, np.uint8)
    scl[: h // 4] = 5
    scl[shadow.reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))] = 3
    scl[block.max(axis=(1, 3)) > 0] = 8
    scl[block.min(axis=(1, 3)) >= 1] = 9
    return scl


def _write_mask(path, arr, like, *, scale=2, crs=None, nodata=None):
    with rasterio.open(like) as ds:
        t = ds.transform @ Affine.scale(scale)
        profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0],
                   "count": 1, "dtype": arr.dtype.name, "crs": crs or ds.crs, "transform": t,
                   "nodata": nodata}
    with rasterio.open(path, "w", **profile) as out:
        out.write(arr, 1)
    return path


@pytest.fixture(scope="module")
def scene(oscd_dir, tmp_path_factory, crop):
    d = tmp_path_factory.mktemp("refmask")
    target = crop(oscd_dir / "rio_20171011.tif", d / "target.tif", SIZE)
    clear = crop(oscd_dir / "rio_20160424.tif", d / "rio_20160424.tif", SIZE)
    cloudy, alpha = _clouded(clear, d / "cloudy.tif", shadow=True)
    with rasterio.open(clear) as src, rasterio.open(cloudy, "r+") as dst:
        dst.update_tags(**src.tags())  # its date, for the STAC Item
    shadow = _blob(SIZE, SIZE, 0.02, centre=(0.83, 0.5)) >= 1
    scl = _scl(alpha, shadow)
    scl_file = _write_mask(d / "scl.tif", scl, clear)
    masked = np.repeat(np.repeat(np.isin(scl, (3, 8, 9, 10)), 2, axis=0), 2, axis=1)
    return {"dir": d, "target": target, "clear": clear, "cloudy": cloudy, "scl": scl,
            "scl_file": scl_file, "masked": masked, "alpha": alpha, "shadow": shadow}


def _options(masks=(), rule="scl"):
    return OnboardOptions(tiling=TILING, reference_masks=masks, reference_mask_rule=rule)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def test_scl_is_read_nearest_onto_the_reference_grid(scene, tmp_path):
    """The 20 m classes land on the 10 m reference grid by nearest: exactly the 2 x 2 blocks;
    every cloud and shadow pixel of the drawing is masked; the identity depends on the masked
    pixels only."""
    with rasterio.open(scene["cloudy"]) as ref:
        ident = resolve_mask(scene["scl_file"], "scl", ref, tmp_path / "m.tif", "scl")
        again = resolve_mask(scene["scl_file"], "scl", ref, tmp_path / "m2.tif", "scl")
        other = scene["scl"].copy()
        other[other == 4] = 5  # other clear classes: the same mask
        same = resolve_mask(_write_mask(tmp_path / "o.tif", other, scene["clear"]), "scl", ref,
                            tmp_path / "m3.tif", "scl")
    got = _read(tmp_path / "m.tif")[0]
    np.testing.assert_array_equal(got == 0, scene["masked"])
    assert got[scene["alpha"] > 0].min() == 0 and got[scene["shadow"]].max() == 0
    assert ident == again == same and ident.startswith("mk1:")


def test_masked_pixels_are_missing_on_both_sides(scene):
    """The same reference with its cloud or with the clear land under the SCL mask, and the
    reference with those pixels masked by GDAL (an internal mask; an empty mask given so that
    the spectral test is off for it too), give the same LR and HR pixels: masked pixels are
    missing and carry nothing. The product records the mask (FORMAT 3, no spectral test); the
    ground applies it again and rebuilds the same HR."""
    d = scene["dir"]
    opts = _options((scene["scl_file"],))
    products = {}
    gdal_masked = d / "gdal_masked.tif"
    with rasterio.open(scene["cloudy"]) as ds:
        profile, arr = ds.profile, ds.read()
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
            rasterio.open(gdal_masked, "w", **profile) as out:
        out.write(arr)
        out.write_mask(np.where(scene["masked"], 0, 255).astype(np.uint8))
    empty = _write_mask(d / "empty.tif", np.zeros((SIZE, SIZE), np.uint8), scene["clear"],
                        scale=1)
    for name, ref, options in (("cloudy", scene["cloudy"], opts), ("clear", scene["clear"], opts),
                               ("gdal", gdal_masked, _options((empty,), "nonzero"))):
        lr = onboard(scene["target"], ref, out=d / f"{name}_lr.tif", options=options)
        hr = ground(lr, ref, out=d / f"{name}_hr.tif",
                    options=GroundOptions(reference_masks=options.reference_masks))
        products[name] = (_read(lr), _read(hr))
    for name in ("clear", "gdal"):
        np.testing.assert_array_equal(products[name][0], products["cloudy"][0])
        np.testing.assert_array_equal(products[name][1], products["cloudy"][1])
    with rasterio.open(d / "cloudy_lr.tif") as ds:
        info, tags = LRInfo.from_dataset(ds, "lr"), georefscale_tags(ds)
    assert tags["FORMAT"] == "3" and "REFERENCE_CLOUDS" not in tags
    (mask,) = info.reference_masks
    assert (mask.source, mask.rule) == ("file", "scl")
    # the unmasked cloudy reference gives another product (the spectral test fills instead)
    plain = onboard(scene["target"], scene["cloudy"], out=d / "plain_lr.tif", options=_options())
    assert not np.array_equal(_read(plain), products["cloudy"][0])


def test_ground_refuses_another_or_no_mask(scene, tmp_path):
    d = scene["dir"]
    lr = d / "cloudy_lr.tif"
    if not lr.exists():
        lr = onboard(scene["target"], scene["cloudy"], out=lr,
                     options=_options((scene["scl_file"],)))
    other = scene["scl"].copy()
    other[-10:, -10:] = 9
    other_file = _write_mask(tmp_path / "other.tif", other, scene["clear"])
    out = tmp_path / "hr.tif"
    with pytest.raises(InputError, match=f"{other_file}: mask .* differs from the one recorded"):
        ground(lr, scene["cloudy"], out=out, options=GroundOptions(reference_masks=(other_file,)))
    with pytest.raises(InputError, match="was made with a scl mask .file."):
        ground(lr, scene["cloudy"], out=out)
    plain = onboard(scene["target"], scene["clear"], out=tmp_path / "p.tif", options=_options())
    with pytest.raises(InputError, match="made without a mask"):
        ground(plain, scene["clear"], out=out,
               options=GroundOptions(reference_masks=(scene["scl_file"],)))
    assert not out.exists()


def _item(scene, folder, scl_href):
    from georefscale.sample_stac import band_item

    item = band_item(scene["cloudy"], folder)
    item["id"] = "rio_20160424"
    if scl_href is not None:
        item["assets"]["scl"] = {"href": scl_href, "roles": ["data"],
                                 "type": "image/tiff; application=geotiff"}
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


def test_scl_asset_of_an_item_and_of_a_catalog_record(scene, tmp_path):
    """The Item's ``scl`` asset masks the reference as the same file given directly (same
    identity, same LR); the ground finds it in the Item. A catalog of the Item keeps the asset,
    ranks by the masked fraction (not eo:cloud_cover) and the product records it."""
    import shutil

    from georefscale.catalog import Catalog

    folder = tmp_path / "item"
    folder.mkdir()
    shutil.copy(scene["scl_file"], folder / "scl.tif")
    item = _item(scene, folder, "scl.tif")
    lr = onboard(scene["target"], item, out=tmp_path / "lr.tif", options=_options())
    with rasterio.open(lr) as ds:
        (mask,) = LRInfo.from_dataset(ds, "lr").reference_masks
    with rasterio.open(scene["dir"] / "cloudy_lr.tif") as ds:
        (given,) = LRInfo.from_dataset(ds, "lr").reference_masks
    assert (mask.source, mask.rule, mask.identity) == ("asset", "scl", given.identity)
    np.testing.assert_array_equal(_read(lr), _read(scene["dir"] / "cloudy_lr.tif"))
    hr = ground(lr, item, out=tmp_path / "hr.tif")
    np.testing.assert_array_equal(_read(hr), _read(scene["dir"] / "cloudy_hr.tif"))

    data = json.loads(item.read_text())
    data["properties"]["eo:cloud_cover"] = 0.0  # the provider's scene-wide figure loses
    item.write_text(json.dumps(data))
    cat = Catalog()
    assert not cat.ingest([item]).skipped
    cat.save(tmp_path / "cat.parquet")
    rec = Catalog.load(tmp_path / "cat.parquet").get("rio_20160424")
    scl = scene["scl"]
    want = 100 * np.isin(scl, (3, 8, 9, 10)).sum() / scl.size
    assert rec.mask_rule == "scl" and rec.mask_href == str(folder / "scl.tif")
    assert rec.cloud_cover == pytest.approx(want, abs=1e-3) and rec.cloud_cover > 20
    lr2 = onboard(scene["target"], catalog=tmp_path / "cat.parquet", out=tmp_path / "lr2.tif",
                  options=_options())
    with rasterio.open(lr2) as ds:
        (rec_mask,) = LRInfo.from_dataset(ds, "lr").reference_masks
    assert (rec_mask.source, rec_mask.identity) == ("asset", given.identity)
    hr2 = ground(lr2, catalog=tmp_path / "cat.parquet", out=tmp_path / "hr2.tif")
    np.testing.assert_array_equal(_read(hr2), _read(scene["dir"] / "cloudy_hr.tif"))


@pytest.mark.parametrize("case", ["crs", "size", "classes", "bands"])
def test_hostile_masks_fail_before_any_output(scene, tmp_path, case):
    scl = scene["scl"]
    if case == "crs":
        bad = _write_mask(tmp_path / "m.tif", scl, scene["clear"], crs="EPSG:3857")
        match = "mask CRS .* is not the CRS"
    elif case == "size":
        bad = _write_mask(tmp_path / "m.tif", scl[:-20, :-20], scene["clear"])
        match = "do not cover .*cloudy.tif"
    elif case == "classes":
        wild = scl.copy()
        wild[5, 5] = 200
        bad = _write_mask(tmp_path / "m.tif", wild, scene["clear"])
        match = "values 200 are not Sentinel-2 scene classes"
    else:
        bad = tmp_path / "m.tif"
        with rasterio.open(scene["clear"]) as ds:
            profile = {**ds.profile, "count": 2}
        with rasterio.open(bad, "w", **profile) as out:
            out.write(np.zeros((2, SIZE, SIZE), profile["dtype"]))
        match = "a mask has one band, this one 2"
    out = tmp_path / "lr.tif"
    with pytest.raises(InputError, match=f"{bad}: .*{match}"):
        onboard(scene["target"], scene["cloudy"], out=out, options=_options((bad,)))
    assert not out.exists() and not list(tmp_path.glob("lr*"))


def test_hostile_mask_assets(scene, tmp_path):
    """A missing mask file, an unsupported scheme and an href that is not a string: clear
    errors naming them; two masks for one reference: refused."""
    folder = tmp_path / "item"
    folder.mkdir()
    out = tmp_path / "lr.tif"
    item = _item(scene, folder, "nowhere/scl.tif")
    with pytest.raises(InputError, match="nowhere/scl.tif: mask .*does not exist"):
        onboard(scene["target"], item, out=out, options=_options())
    item = _item(scene, folder, "ftp://example.org/scl.tif")
    with pytest.raises(InputError, match="asset 'scl' href .* unsupported scheme"):
        onboard(scene["target"], item, out=out, options=_options())
    item = _item(scene, folder, None)
    data = json.loads(item.read_text())
    data["assets"]["scl"] = {"href": 42}
    item.write_text(json.dumps(data))
    with pytest.raises(InputError, match="asset 'scl' has no href"):
        onboard(scene["target"], item, out=out, options=_options())
    with pytest.raises(InputError, match="2 reference mask.s. given for 1 reference"):
        onboard(scene["target"], scene["cloudy"], out=out,
                options=_options((scene["scl_file"], scene["scl_file"])))
    assert not out.exists()
