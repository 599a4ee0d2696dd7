"""File-level onboard / ground through the tiler, on the real archive, and every bad input."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale.api import ground, onboard
from georefscale.cli import main
from georefscale.engine import available_models
from georefscale.errors import InputError, ReferenceMismatchError
from georefscale.options import (
    DEFAULT_CODED_MODEL,
    DEFAULT_MODEL,
    CodecChoice,
    GroundOptions,
    OnboardOptions,
    RateTarget,
    TilingOptions,
)
from georefscale.plans.ground import GroundPlan, make_hr
from georefscale.plans.onboard import OnboardPlan, make_lr
from georefscale.product import LRInfo
from georefscale.raster.grid import Grid
from georefscale.raster.io import open_raster, sha256_file, write_geotiff
from georefscale.references import Reference, ReferenceSet, identity_of

NAIP = "m_4709963_se_14_1_{}.tif"


@pytest.fixture(scope="module")
def paris(oscd_dir):
    return oscd_dir / "paris_20171107.tif", oscd_dir / "paris_20161130.tif"


@pytest.fixture(scope="module")
def paris_lr(paris, tmp_path_factory):
    target, ref = paris
    out = tmp_path_factory.mktemp("lr") / "paris_lr.tif"
    onboard(target, ref, out=out, factor=4, model="bicubic", tile=128, halo=16)
    return out


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), Grid.from_dataset(ds), ds.descriptions, ds.tags(), ds.nodata


def test_default_model_follows_how_the_lr_is_coded():
    """Lossless LR: the lossless-trained model; JPEG 2000 LR (a codec, or a rate target's base
    layer): the one trained through JPEG 2000; a named model is kept."""
    assert OnboardOptions().model == DEFAULT_MODEL == "refscale-s2-x4"
    assert OnboardOptions(codec=CodecChoice("deflate")).model == DEFAULT_MODEL
    coded = (OnboardOptions(codec=CodecChoice("jpeg2000", 10)),
             OnboardOptions(rate=RateTarget(target_psnr=40)))
    assert {o.model for o in coded} == {DEFAULT_CODED_MODEL}
    assert DEFAULT_CODED_MODEL == "refscale-s2-x4-jp2"
    assert {DEFAULT_MODEL, DEFAULT_CODED_MODEL} <= set(available_models())
    named = OnboardOptions(model="noref-s2-x4", rate=RateTarget(max_error=5))
    assert named.model == "noref-s2-x4"


def test_onboard_writes_scaled_grid_and_tags(paris, paris_lr):
    target, ref = paris
    _, tgrid, tdesc, ttags, _ = _read(target)
    lr, grid, desc, tags, _ = _read(paris_lr)
    assert grid == tgrid.scaled(4)
    assert lr.shape == (4, math.ceil(408 / 4), math.ceil(390 / 4)) and lr.dtype == np.uint16
    assert desc == tdesc and tags["ACQUISITION_DATE"] == ttags["ACQUISITION_DATE"]
    assert tags["GEOREFSCALE_FACTOR"] == "4" and tags["GEOREFSCALE_MODEL"] == "bicubic"
    assert tags["GEOREFSCALE_REFERENCE_ID"] == "paris_20161130"
    assert tags["GEOREFSCALE_REFERENCE_IDENTITY"] == identity_of(ref)
    with rasterio.open(paris_lr) as ds:
        info = LRInfo.from_dataset(ds, paris_lr)
    assert info.target_grid == tgrid and info.source_dtype == "uint16" and info.scale == 10000
    assert info.tile == 128 and info.halo == 16


def test_ground_restores_the_exact_grid(paris, paris_lr, tmp_path):
    target, ref = paris
    hr_path = ground(paris_lr, ref, out=tmp_path / "hr.tif")
    hr, grid, desc, tags, _ = _read(hr_path)
    tgt, tgrid, tdesc, _, _ = _read(target)
    assert grid == tgrid and hr.shape == tgt.shape and hr.dtype == tgt.dtype
    assert desc == tdesc and tags["ACQUISITION_DATE"] == "2017-11-07"
    rmse = np.sqrt(np.mean((hr.astype(float) - tgt) ** 2))
    assert 20 * np.log10(10000 / rmse) > 30  # bicubic x4 on S2 reflectance


def test_ground_above_alpha_1_quotes_the_models_card(paris, tmp_path):
    target, ref = paris
    lr = onboard(target, ref, out=tmp_path / "lr.tif", factor=2, model="refscale-s2-x2")
    with pytest.warns(UserWarning, match=r"alpha 3 is above the latent temperature .*; "
                      r"refscale-s2-x2 on its validation crops: alpha 0 \d+\.\d dB, "
                      r"alpha 1 .* alpha 3 \d+\.\d dB \(forward latent RMS \d"):
        ground(lr, ref, out=tmp_path / "hot.tif", alpha=3.0)


def test_tiling_leaves_no_seams(paris, paris_lr, tmp_path):
    """With a halo covering the bicubic support, tiled output equals a single-tile run."""
    target, ref = paris
    one_lr = onboard(target, ref, out=tmp_path / "one.tif", factor=4, model="bicubic",
                     tile=512, halo=16)
    np.testing.assert_array_equal(_read(one_lr)[0], _read(paris_lr)[0])
    a = ground(one_lr, ref, out=tmp_path / "a.tif")
    b = ground(paris_lr, ref, out=tmp_path / "b.tif", tile=64)
    np.testing.assert_array_equal(_read(a)[0], _read(b)[0])


def test_naip_factor2_odd_size_and_nodata(naip_dir, tmp_path):
    """uint8 with nodata 0, 723 rows (not a multiple of 2): padded, cropped back, nothing lost."""
    target, ref = naip_dir / NAIP.format("20200831"), naip_dir / NAIP.format("20190904")
    lr = onboard(target, ref, out=tmp_path / "lr.tif", factor=2, model="bicubic", tile=256)
    hr = ground(lr, ref, out=tmp_path / "hr.tif", cog=True)
    t, tgrid, _, _, tnod = _read(target)
    lr_arr, lgrid, _, _, lnod = _read(lr)
    h, hgrid, _, _, hnod = _read(hr)
    assert lgrid == tgrid.scaled(2) and lr_arr.shape[1:] == (362, 467)
    assert hgrid == tgrid and h.shape == t.shape and tnod == lnod == hnod == 0
    valid = t != 0
    assert (h[valid] != 0).mean() > 0.995  # valid pixels stay valid
    assert np.abs(h[valid].astype(int) - t[valid]).mean() < 15


def test_shift_is_recorded(oscd_dir, tmp_path):
    old, new = sorted(oscd_dir.glob("abudhabi_2*.tif"))
    lr = onboard(new, old, out=tmp_path / "lr.tif", factor=4, model="bicubic")
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    assert info.shift == pytest.approx((-0.55, -1.25), abs=0.2)
    lr0 = onboard(new, old, out=tmp_path / "lr0.tif", factor=4, model="bicubic",
                  correct_shift=False)
    with rasterio.open(lr0) as ds:
        assert LRInfo.from_dataset(ds, lr0).shift == (0.0, 0.0)


def test_reference_model_path_is_deterministic(paris, tmp_path):
    """A real (untrained) RefScale network: the reference is aligned per tile on both sides,
    ground's latent is seeded per tile, same seed -> same bytes."""
    torch = pytest.importorskip("torch")
    from georefscale.engine import InvertibleRescaler, NetConfig, RefScaleNet

    torch.manual_seed(0)
    net = RefScaleNet(NetConfig(bands=4, factor=2, blocks=1, hidden=8, ref_features=4))
    model = InvertibleRescaler("refscale-test", net, dtype="uint16", scale=10000.0)
    target, ref = paris
    refs = ReferenceSet((Reference("paris_20161130", ref, identity_of(ref), str(ref)),))
    lr = tmp_path / "lr.tif"
    with open_raster(target) as t, open_raster(ref) as r:
        options = OnboardOptions(tiling=TilingOptions(128, 8))
        plan = OnboardPlan.make(t, [r], refs, model=model, fallback_model=None, options=options)
        make_lr(plan, t, [r], lr)
    outs = []
    with open_raster(lr) as lds, open_raster(ref) as r:
        info = LRInfo.from_dataset(lds, lr)
        for i, seed in enumerate([1, 1, 2]):
            plan = GroundPlan.make(lds, [r], info, model=model, fallback_model=None,
                                   options=GroundOptions(seed=seed))
            make_hr(plan, lds, [r], out=tmp_path / f"{i}.tif")
            outs.append(tmp_path / f"{i}.tif")
    a, b, c = (_read(p)[0] for p in outs)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


# -- bad input: one-line error naming the file, non-zero exit, nothing left behind ------------


def _cli(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    msg = result.stderr.strip()
    assert msg.startswith("georefscale: error: ") and "\n" not in msg, msg
    return msg


def _no_outputs(d):
    return [f for f in os.listdir(d) if f.endswith(".tif")] == []


def test_cli_round_trip(paris, tmp_path):
    target, ref = paris
    res = CliRunner().invoke(main, ["roundtrip", str(target), "-r", str(ref), "-f", "4",
                                    "-m", "bicubic", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "PSNR" in res.stdout
    assert sorted(os.listdir(tmp_path)) == ["paris_20171107_hr.tif", "paris_20171107_lr.tif"]


def test_target_not_a_raster(paris, tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("hello")
    out = tmp_path / "out" / "lr.tif"
    out.parent.mkdir()
    msg = _cli(["onboard", bad, "-r", paris[1], "-m", "bicubic", "-f", "4", "-o", out])
    assert "notes.tif" in msg and "not a raster" in msg and _no_outputs(out.parent)


@pytest.mark.parametrize("missing", ["crs", "transform"])
def test_target_without_crs_or_transform(paris, tmp_path, missing):
    arr, grid, *_ = _read(paris[0])
    p = tmp_path / f"no_{missing}.tif"
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=4, dtype="uint16")
    if missing == "crs":
        profile["transform"] = grid.transform
    else:
        profile["crs"] = grid.crs
    with rasterio.open(p, "w", **profile) as ds:
        ds.write(arr)
    msg = _cli(["onboard", p, "-r", paris[1], "-m", "bicubic", "-f", "4",
                "-o", tmp_path / "lr.tif"])
    problem = "no CRS" if missing == "crs" else "no geotransform"
    assert f"no_{missing}.tif" in msg and problem in msg
    assert not (tmp_path / "lr.tif").exists()


def test_reference_does_not_overlap(paris, naip_dir, tmp_path):
    ref = naip_dir / NAIP.format("20200831")
    msg = _cli(["onboard", paris[0], "-r", ref, "-m", "bicubic", "-f", "4",
                "-o", tmp_path / "lr.tif"])
    assert ref.name in msg and "does not overlap" in msg and _no_outputs(tmp_path)


def test_reference_with_other_band_count(paris, tmp_path):
    arr, grid, *_ = _read(paris[1])
    ref3 = write_geotiff(tmp_path / "ref3.tif", arr[:3], grid)
    out = tmp_path / "o"
    out.mkdir()
    msg = _cli(["onboard", paris[0], "-r", ref3, "-m", "bicubic", "-f", "4", "-o", out / "lr.tif"])
    assert "ref3.tif" in msg and "3 bands" in msg and _no_outputs(out)


@pytest.mark.parametrize("factor", [3, 1, 8])
def test_factor_must_be_2_or_4(paris, tmp_path, factor):
    msg = _cli(["onboard", paris[0], "-r", paris[1], "-m", "bicubic", "-f", factor,
                "-o", tmp_path / "lr.tif"])
    assert f"factor must be 2 or 4, got {factor}" in msg and _no_outputs(tmp_path)


def test_output_directory_missing(paris, tmp_path):
    msg = _cli(["onboard", paris[0], "-r", paris[1], "-m", "bicubic", "-f", "4",
                "-o", tmp_path / "nope" / "lr.tif"])
    assert "nope" in msg and "does not exist" in msg


def test_output_directory_not_writable(paris, paris_lr, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores mode bits: use a read-only kernel directory
        ro = next((p for p in ("/proc/sys", "/sys/kernel") if not os.access(p, os.W_OK)), None)
        if ro is None:
            pytest.skip("no read-only directory available to this user")
    msg = _cli(["ground", paris_lr, "-r", paris[1], "-o", os.path.join(ro, "hr.tif")])
    assert "not writable" in msg


def test_ground_refuses_another_reference(paris, paris_lr, oscd_dir, tmp_path):
    other = oscd_dir / "paris_20171107.tif"
    msg = _cli(["ground", paris_lr, "-r", other, "-o", tmp_path / "hr.tif"])
    assert "paris_20171107.tif" in msg and "content" in msg and "paris_20161130" in msg
    assert _no_outputs(tmp_path)
    with pytest.raises(ReferenceMismatchError):
        ground(paris_lr, other, out=tmp_path / "hr.tif")


def test_ground_refuses_a_modified_reference(paris, paris_lr, tmp_path):
    """Same name, one pixel different: the content identity catches it."""
    copy = tmp_path / paris[1].name
    copy.write_bytes(paris[1].read_bytes())
    with rasterio.open(copy, "r+") as ds:
        ds.write(ds.read(2, window=((5, 6), (7, 8))) + 1, 2, window=((5, 6), (7, 8)))
    with pytest.raises(ReferenceMismatchError, match="content"):
        ground(paris_lr, copy, out=tmp_path / "hr.tif")
    assert not (tmp_path / "hr.tif").exists()


@pytest.mark.parametrize("driver_options", [
    {"driver": "GTiff", "compress": "LZW"},
    {"driver": "COG", "compress": "ZSTD"},
])
def test_ground_accepts_a_re_encoded_reference(paris, paris_lr, tmp_path, driver_options):
    """Another compression, a COG, an edited tag: the same pixels and grid, the same reference."""
    import rasterio.shutil

    copy = tmp_path / paris[1].name
    rasterio.shutil.copy(paris[1], copy, **driver_options)
    with rasterio.open(copy, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(PROCESSED_BY="archive migration")
    assert sha256_file(copy) != sha256_file(paris[1])
    assert ground(paris_lr, copy, out=tmp_path / "hr.tif").is_file()


def test_ground_needs_georefscale_tags(paris, tmp_path):
    msg = _cli(["ground", paris[0], "-r", paris[1], "-o", tmp_path / "hr.tif"])
    assert "paris_20171107.tif" in msg and "no GEOREFSCALE_* tags" in msg
    assert _no_outputs(tmp_path)


def test_ground_rejects_broken_tags(paris_lr, paris, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(paris_lr.read_bytes())
    with rasterio.open(broken, "r+") as ds:
        ds.update_tags(GEOREFSCALE_TARGET_WIDTH="lots")
    with pytest.raises(InputError, match="broken.tif: georefscale tags were changed"):
        ground(broken, paris[1], out=tmp_path / "hr.tif")


def test_failure_mid_scene_leaves_no_file(paris, tmp_path):
    """An engine error halfway through the tiles removes the partial output."""
    from georefscale.engine.run import resolve_model

    class Failing:
        def __init__(self):
            self.inner, self.calls = resolve_model("bicubic", 4), 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def downscale(self, x, ref):
            self.calls += 1
            if self.calls == 3:
                raise InputError("engine failed on tile 3")
            return self.inner.downscale(x, ref)

    with open_raster(paris[0]) as t:
        plan = OnboardPlan.make(t, [], ReferenceSet(), model=Failing(), fallback_model=None,
                                options=OnboardOptions(tiling=TilingOptions(64, 32)))
        with pytest.raises(InputError, match="tile 3"):
            make_lr(plan, t, [], tmp_path / "lr.tif")
    assert os.listdir(tmp_path) == []


def test_reference_tile_is_mirrored_like_the_target_at_the_edges(paris):
    """A tile window that leaves the scene gets the same mirror padding in the reference as in
    the target (the reference here is the target itself, so both must be equal)."""
    from affine import Affine
    from rasterio.windows import Window

    from georefscale.raster.align import align_window
    from georefscale.raster.io import read_window

    target, _ = paris
    with open_raster(target, "target") as ds:
        grid = Grid.from_dataset(ds)
        for window in (Window(-40, -24, 128, 96), Window(ds.width - 50, ds.height - 30, 96, 64)):
            ref = align_window([ds], grid, window, Affine.identity())
            assert np.isfinite(ref).all()
            np.testing.assert_array_equal(ref, read_window(ds, window).astype(np.float32))


def test_products_of_earlier_versions_check_the_reference_bytes(paris, paris_lr, tmp_path):
    """A product that recorded the reference file's SHA-256 (before content identities) is
    still grounded, against the file's bytes."""
    old = tmp_path / "old_lr.tif"
    with rasterio.open(paris_lr) as src:
        tags = {k: v for k, v in src.tags().items()
                if k not in ("GEOREFSCALE_REFERENCE_IDENTITY", "GEOREFSCALE_TAGS_SHA256")}
        with rasterio.open(old, "w", **src.profile) as dst:
            dst.write(src.read())
            dst.update_tags(**tags, GEOREFSCALE_REFERENCE_SHA256=sha256_file(paris[1]))
    with rasterio.open(old) as ds:
        assert LRInfo.from_dataset(ds, old).reference_identity == (sha256_file(paris[1]),)
    assert ground(old, paris[1], out=tmp_path / "hr.tif").is_file()
    copy = tmp_path / paris[1].name
    copy.write_bytes(paris[1].read_bytes() + b"\0")  # same pixels, other bytes
    with pytest.raises(ReferenceMismatchError, match="differs from reference"):
        ground(old, copy, out=tmp_path / "hr2.tif")
