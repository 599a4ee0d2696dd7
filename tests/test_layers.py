"""The two-layer downlink product on real scenes: the guarantees of every rate target, the
ground's checks, and the bad requests."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale import codecs
from georefscale.api import ground, onboard, roundtrip
from georefscale.bandcoding import BandPrediction, BandTransform
from georefscale.cli import main
from georefscale.engine.cards import factor_sibling
from georefscale.errors import InputError
from georefscale.layers import BASE_RATES, BASE_REFINE_STEPS, enhancement_path, quantise
from georefscale.options import CodecChoice, GroundOptions, OnboardOptions, RateTarget
from georefscale.raster.grid import Grid
from georefscale.raster.io import write_geotiff
from georefscale.report import describe_lr

MODEL = "noref-s2-x4"


@pytest.fixture(scope="module")
def scene(oscd_dir, tmp_path_factory):
    """An odd-sized crop of Rio (301 x 257) with a nodata hole whose edge cuts 4 x 4 blocks."""
    with rasterio.open(oscd_dir / "rio_20171011.tif") as ds:
        win = rasterio.windows.Window(17, 23, 257, 301)
        a, grid = ds.read(window=win), Grid.from_dataset(ds).window_grid(win)
    yy, xx = np.mgrid[: a.shape[1], : a.shape[2]]
    a[:, (yy - 120) ** 2 + (xx - 90) ** 2 < 33**2] = 0
    path = write_geotiff(tmp_path_factory.mktemp("scene") / "rio_crop.tif", a, grid, nodata=0)
    return path, a


def _layered(scene, tmp_path, rate, name="lr.jp2"):
    path, a = scene
    lr = onboard(path, None, out=tmp_path / name, options=OnboardOptions(model=MODEL,
                                                                           rate=rate))
    hr = ground(lr, None, out=tmp_path / f"{name}.hr.tif")
    with rasterio.open(hr) as ds:
        h = ds.read()
    enh = enhancement_path(lr)  # none when the search coded the target directly
    total = lr.stat().st_size + (enh.stat().st_size if enh.is_file() else 0)
    return lr, h, total


def _psnr(a, h):
    valid = a != 0
    d = a[valid].astype(float) - h[valid]
    return 10 * np.log10(1e8 / np.mean(d * d))


@pytest.mark.parametrize("e", [0, 3, 25])
def test_max_error_is_never_violated(scene, tmp_path, e):
    _, a = scene
    lr, h, _ = _layered(scene, tmp_path, RateTarget(max_error=e))
    valid = a != 0
    np.testing.assert_array_equal(h == 0, ~valid)  # the nodata mask is exact
    assert np.abs(h[valid].astype(int) - a[valid]).max() <= e


def test_target_psnr_is_reached_without_much_overshoot(scene, tmp_path):
    _, a = scene
    for goal in (36.0, 44.0):
        _, h, _ = _layered(scene, tmp_path, RateTarget(target_psnr=goal), f"p{goal:g}.jp2")
        assert goal <= _psnr(a, h) <= goal + 0.3


def test_max_bytes_is_never_exceeded_and_used(scene, tmp_path):
    for budget in (9_000, 30_000):
        _, _, total = _layered(scene, tmp_path, RateTarget(max_bytes=budget), f"b{budget}.jp2")
        assert 0.95 * budget <= total <= budget


def test_more_bytes_more_quality_and_beyond_the_base_ceiling(scene, tmp_path):
    _, a = scene
    base = onboard(scene[0], None, out=tmp_path / "plain.tif",
                   options=OnboardOptions(model=MODEL))
    ceiling = _psnr(a, rasterio.open(ground(base, None, out=tmp_path / "plain_hr.tif")).read())
    _, h, _ = _layered(scene, tmp_path, RateTarget(max_bytes=120_000))
    assert _psnr(a, h) > ceiling + 3


def test_ground_checks_the_enhancement_layer(scene, tmp_path):
    lr, _, _ = _layered(scene, tmp_path, RateTarget(max_error=5, direct=False), "a.jp2")
    other, _, _ = _layered(scene, tmp_path, RateTarget(max_bytes=6_000, direct=False), "b.jp2")
    assert other.read_bytes() != lr.read_bytes()  # another base layer
    enh = enhancement_path(lr)
    with rasterio.open(enh) as ds:  # near-lossless: coded in predicted bands
        tags, residual, profile = ds.tags(), ds.read(), {"crs": ds.crs,
                                                         "transform": ds.transform}
    assert tags["GEOREFSCALE_PRODUCT"] == "enhancement layer, predicted bands"
    forged = tmp_path / "forged.enh.jp2"
    forged.write_bytes(codecs.encode(residual, "jpeg2000-lossless", profile=profile, tags={
        **tags, "GEOREFSCALE_ENH_PREDICTION": "1,2,3,4,5,100000"}, colour_transform=False))
    with pytest.raises(InputError, match="forged.enh.jp2: enhancement layer tags .* beyond"):
        ground(lr, None, out=tmp_path / "hr.tif", enhancement=forged)
    enh.rename(tmp_path / "kept.enh.jp2")
    with pytest.raises(InputError, match="a.jp2: the product has an enhancement layer"):
        ground(lr, None, out=tmp_path / "hr.tif")
    with pytest.raises(InputError, match="belongs to another base layer"):
        ground(lr, None, out=tmp_path / "hr.tif", enhancement=enhancement_path(other))
    assert not (tmp_path / "hr.tif").exists()
    hr = ground(lr, None, out=tmp_path / "hr.tif", options=GroundOptions(base_only=True))
    assert hr.is_file()
    shutil.copy(scene[0], tmp_path / "not_enh.tif")
    with pytest.raises(InputError, match="not a georefscale enhancement layer"):
        ground(lr, None, out=tmp_path / "hr2.tif", enhancement=tmp_path / "not_enh.tif")
    res = CliRunner().invoke(main, ["ground", str(lr), "--enhancement",
                                    str(tmp_path / "kept.enh.jp2"), "-o",
                                    str(tmp_path / "hr3.tif"), "--json"])
    assert res.exit_code == 0 and '"max_error_dn": 5' in res.output, res.output


@pytest.mark.parametrize("make, match", [
    (lambda: RateTarget(max_error=-1), "max_error must be a non-negative integer"),
    (lambda: RateTarget(max_error=2.5), "max_error must be a non-negative integer"),
    (lambda: RateTarget(max_error=1, max_bytes=10), "exactly one"),
    (lambda: RateTarget(target_psnr=250), "target_psnr"),
    (lambda: OnboardOptions(rate=RateTarget(max_error=0), codec=CodecChoice("jpeg2000", 10)),
     "contradicts codec 'jpeg2000' at quality 10"),
    (lambda: OnboardOptions(rate=RateTarget(max_error=0), codec=CodecChoice("webp")),
     "contradicts codec 'webp'"),
])
def test_contradictory_requests(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_budget_too_small(scene, tmp_path):
    with pytest.raises(InputError, match="byte budget of 500 is too small"):
        onboard(scene[0], None, out=tmp_path / "lr.jp2",
                options=OnboardOptions(model=MODEL, rate=RateTarget(max_bytes=500)))
    assert list(tmp_path.iterdir()) == []


def test_cli_target_psnr_layered_or_direct(scene, tmp_path):
    """The search writes whichever product needs fewer bytes (two layers, or the target coded
    directly), never more than two layers alone, and both reach the target."""
    runs = {}
    for flag in ("--no-direct", None):
        out = tmp_path / (flag or "default")
        res = CliRunner().invoke(main, ["roundtrip", str(scene[0]), "-m", MODEL, "--target-psnr",
                                        "40", "-o", str(out), "--json",
                                        *([flag] if flag else [])])
        assert res.exit_code == 0, res.output
        runs[flag] = json.loads(res.output)
        assert 40 <= runs[flag]["psnr_db"] <= 40.3
    assert runs["--no-direct"]["layers"] == 2
    assert runs["--no-direct"]["search"]["product"] == "layered"
    assert runs[None]["search"]["product"] in ("direct", "layered")
    assert runs[None]["bytes"] <= runs["--no-direct"]["bytes"]
    # the ladder walk (plus the overshoot refinement) tries part of the ladder, not all of it,
    # on a sample of the scene's tiles; the whole scene is rebuilt at the rate that won
    trials = runs[None]["search"]["trials"]
    assert 2 <= trials["sample_rebuilds"] < len(BASE_RATES)
    assert 1 <= trials["base_rebuilds"] <= 1 + BASE_REFINE_STEPS


def test_direct_product_guarantees_and_bad_tags(scene, tmp_path):
    """A directly coded near-lossless product: exact nodata mask, the bound kept, the ground
    refuses tampered tags (naming the file) and a relevance map, and writes nothing."""
    path, a = scene
    lr = onboard(path, None, out=tmp_path / "lr.jp2",
                 options=OnboardOptions(model=MODEL, rate=RateTarget(max_error=0)))
    assert describe_lr(lr)["product"] == "direct" and not enhancement_path(lr).exists()
    hr = ground(lr, None, out=tmp_path / "hr.tif")
    with rasterio.open(hr) as ds, rasterio.open(path) as t:
        np.testing.assert_array_equal(ds.read(), a)  # lossless, nodata included
        assert (ds.nodata, ds.descriptions, ds.crs, ds.transform) == (
            t.nodata, t.descriptions, t.crs, t.transform)
        assert ds.tags()["GEOREFSCALE_MAX_ERROR"] == "0"
    with pytest.raises(InputError, match="no relevance map"):
        ground(lr, None, out=tmp_path / "hr2.tif", relevance_out=tmp_path / "rel.tif")
    decoded = codecs.read_compressed(lr, unmap=False)
    for key, value, match in (("DIRECT_STEP", "4", "bad step 4"),
                              ("SOURCE_DTYPE", "float64", "unsupported dtype"),
                              ("NODATA_MASK", "AAAA", "NODATA_MASK"),
                              ("SCALE", "nan", "bad scale")):
        bad = tmp_path / f"bad_{key}.jp2"
        bad.write_bytes(codecs.encode(
            decoded.array, "jpeg2000-lossless",
            profile={"crs": decoded.crs, "transform": decoded.transform},
            tags={**decoded.tags, f"GEOREFSCALE_{key}": value}))
        with pytest.raises(InputError, match=f"{bad.name}: directly coded product tags .*{match}"):
            ground(bad, None, out=tmp_path / "hr3.tif")
    assert not (tmp_path / "hr2.tif").exists() and not (tmp_path / "hr3.tif").exists()


def test_rate_search_over_factors(oscd_dir, tmp_path):
    """--try-factor 2 with refscale-s2-x4: the search measures both families' base layers
    (and direct coding) and keeps the cheapest; never more bytes than the x4 search alone."""
    with rasterio.open(oscd_dir / "montpellier_20171030.tif") as ds:
        win = rasterio.windows.Window(0, 0, 192, 160)
        t, grid = ds.read(window=win), Grid.from_dataset(ds).window_grid(win)
    with rasterio.open(oscd_dir / "montpellier_20150812.tif") as ds:
        r = ds.read(window=win)
    target = write_geotiff(tmp_path / "t.tif", t, grid)
    ref = write_geotiff(tmp_path / "r.tif", r, grid)
    sizes = {}
    for factors in ((), (2,)):
        out = tmp_path / f"lr{len(factors)}.jp2"
        res = roundtrip(target, ref, lr_out=out, hr_out=tmp_path / f"hr{len(factors)}.tif",
                        options=(OnboardOptions(rate=RateTarget(target_psnr=38,
                                                                factors=factors)),
                                 GroundOptions()))
        assert res["psnr_db"] >= 38
        sizes[factors] = res["bytes"]
        if factors:
            assert res["search"]["trials"]["base_rebuilds"] >= 6  # two ladders
    assert sizes[(2,)] <= sizes[()]
    assert factor_sibling("noref-s2-x4", 2, "t.tif") == "noref-s2-x2"
    with pytest.raises(InputError, match="t.tif: no shipped model of refscale-naip-x4's family "
                                         "rescales by 2 .*refscale-s2-x2"):
        factor_sibling("refscale-naip-x4", 2, "t.tif")
    with pytest.raises(InputError, match="factors must be"):
        RateTarget(max_error=1, factors=[2])


def test_archive_makes_two_layer_products(oscd_dir, tmp_path):
    from georefscale.archive import process_archive
    from georefscale.catalog import Catalog, ingest
    from georefscale.options import ClusterOptions, TilingOptions

    cat = Catalog.from_records(ingest([oscd_dir / "norcia_20150711.tif",
                                       oscd_dir / "norcia_20171018.tif"]).records)
    options = OnboardOptions(model=MODEL, tiling=TilingOptions(128, 16),
                             rate=RateTarget(max_error=10, direct=False))
    result = process_archive(cat, tmp_path / "out", onboard=options, ground=GroundOptions(),
                             cluster=ClusterOptions(workers=0), progress=False)
    assert not result.failed, result.failed
    folder = tmp_path / "out" / "norcia_20171018"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "norcia_20171018_hr.tif", "norcia_20171018_lr.enh.jp2",
        "norcia_20171018_lr.jp2"]
    with rasterio.open(oscd_dir / "norcia_20171018.tif") as t, \
            rasterio.open(folder / "norcia_20171018_hr.tif") as h:
        assert np.abs(t.read().astype(int) - h.read()).max() <= 10


@pytest.mark.parametrize("family", ["s2-x2", "naip-x4"])
def test_two_layers_for_every_model_family(oscd_dir, naip_dir, tmp_path, family):
    """Sentinel-2 x2 and NAIP x4 (uint8) two-layer products with their references: the bound
    of --max-error holds and --target-psnr is reached, through the ground (x4 S2: above)."""
    if family == "s2-x2":
        t_file, r_file = oscd_dir / "rio_20171011.tif", oscd_dir / "rio_20160424.tif"
    else:
        t_file = naip_dir / "m_4709963_se_14_1_20200831.tif"
        r_file = naip_dir / "m_4709963_se_14_1_20190904.tif"
    win = rasterio.windows.Window(40, 40, 160, 144)
    with rasterio.open(t_file) as ds:
        t, grid = ds.read(window=win), Grid.from_dataset(ds).window_grid(win)
    with rasterio.open(r_file) as ds:
        r = ds.read(window=win)
    target = write_geotiff(tmp_path / "t.tif", t, grid)
    ref = write_geotiff(tmp_path / "r.tif", r, grid)
    model = f"refscale-{family}"
    for rate, name in ((RateTarget(max_error=3, direct=False), "e"),
                       (RateTarget(target_psnr=42 if family == "s2-x2" else 33, direct=False),
                        "p")):
        res = roundtrip(target, ref, lr_out=tmp_path / f"{name}.jp2",
                        hr_out=tmp_path / f"{name}.tif",
                        options=(OnboardOptions(model=model, rate=rate), GroundOptions()))
        assert res["layers"] == 2 and res["model"] == model
        with rasterio.open(res["hr"]) as ds:
            h = ds.read()
        if rate.max_error is not None:
            assert np.abs(h.astype(int) - t).max() <= 3
        else:
            assert rate.target_psnr <= res["psnr_db"] <= rate.target_psnr + 0.3


def test_band_transform_of_a_real_residual_and_hostile_tags(scene):
    """The residual's band transform is orthonormal, round-trips within rounding, goes through
    its tag exactly, and a tag that is not an orthonormal matrix is refused."""
    _, a = scene
    residual = a.astype(np.int64) - np.roll(a, 1, axis=2)  # real detail, correlated bands
    t = BandTransform.fit(residual, a != 0)
    m = np.asarray(t.matrix).reshape(4, 4)
    np.testing.assert_allclose(m.T @ m, np.eye(4), atol=1e-12)
    coded = t.forward(residual)
    assert np.var(coded[0]) >= np.var(coded[3])  # strongest first
    assert np.abs(t.inverse(coded) - residual).max() <= 2  # rounding only
    assert BandTransform.from_tag(t.to_tag(), 4) == t
    for text, match in (("1,0,0,1", "4 x 4"), (",".join(["nan"] * 16), "finite"),
                        (",".join(["0.5"] * 16), "orthonormal")):
        with pytest.raises(ValueError, match=match):
            BandTransform.from_tag(text, 4)


def test_band_prediction_of_a_real_residual_and_hostile_tags(scene):
    """A residual coded losslessly goes through the integer band prediction: exactly reversible
    on a real quantised residual, smaller than JPEG 2000's own colour transform, its tag
    round-trips, and a tag that is not 6 bounded integers for 4 bands is refused."""
    _, a = scene
    q = quantise(a.astype(np.int64) - np.roll(a, 1, axis=2), 11)  # real detail, step 11
    p = BandPrediction.fit(q, a != 0)
    coded = p.forward(q)
    np.testing.assert_array_equal(p.inverse(coded), q)
    assert p.bands == 4 and BandPrediction.from_tag(p.to_tag(), 4) == p
    plain = codecs.encode(q.astype(np.int16), "jpeg2000-lossless")
    predicted = codecs.encode(coded.astype(np.int16), "jpeg2000-lossless",
                              colour_transform=False)
    assert len(predicted) < 0.99 * len(plain)
    for text, match in (("1,2,3", "6 weights"), ("1,2,3,4,5,9999", "beyond"),
                        ("1,2,x,4,5,6", "invalid literal"), ("", "6 weights")):
        with pytest.raises(ValueError, match=match):
            BandPrediction.from_tag(text, 4)


def test_rate_search_converges_and_stays_in_its_bracket():
    """The secant search lands in the window in a few measurements on a smooth curve, stays
    within its bounds on a staircase (a codec's rate steps), and stops when told to."""
    import math

    from georefscale.layers import SEARCH_STEPS, _seek

    seen = []

    def smooth(x):
        seen.append(x)
        return 30 + 5 * x + 0.3 * x * x  # PSNR-like, increasing

    _seek(smooth, math.log(3.0), (math.log(0.05), math.log(100.0)), (42.0, 42.1), 6.0)
    n, last = len(seen), seen[-1]
    assert n <= 5 and 42.0 <= smooth(last) <= 42.1
    seen.clear()

    def stairs(x):
        seen.append(x)
        return math.floor(4 * x) / 4  # flat steps: the secant meets zero slopes
    bounds = (-3.0, 4.6)
    _seek(stairs, 0.0, bounds, (2.0, 2.1), 1.0)
    n, last = len(seen), seen[-1]
    assert all(bounds[0] <= x <= bounds[1] for x in seen)
    assert n <= SEARCH_STEPS and 2.0 <= stairs(last) <= 2.1
    seen.clear()
    _seek(lambda x: seen.append(x), 0.0, bounds, (2.0, 2.1), 1.0)  # None: give up at once
    assert len(seen) == 1
