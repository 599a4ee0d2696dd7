"""Per-tile mode decision by measurement (``--decide measure``): on real Sentinel-2 scenes with
a reference whose top-left block shows other land, the tiles there are made without the
reference, their measured gain says why, the ground rebuilds every recorded mode, and the
product's tags stay validated."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import georefscale
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.options import FallbackPolicy, GroundOptions, OnboardOptions, TilingOptions
from georefscale.product import LRInfo

TILING = TilingOptions(tile=128, halo=16)
#: HR pixels of the reference's top-left block replaced by other land.
BLOCK = 256


#: The crop of the scene used (HR pixels from the top left).
SIZE = 384


def _options(decide: str) -> tuple[OnboardOptions, GroundOptions]:
    """Measurement with the agreement pre-filter off (every tile measured), or agreement."""
    policy = (FallbackPolicy(decide=decide, min_agreement=0.0) if decide == "measure"
              else FallbackPolicy())
    return OnboardOptions(tiling=TILING, fallback=policy), GroundOptions(alpha=0.0)


@pytest.fixture(scope="module")
def changed(oscd_dir, tmp_path_factory, crop):
    """A 384 px crop of Montpellier 2017 and of its 2015 reference, the reference's top-left
    block replaced by other land of the same reference turned 180 degrees (a co-registered
    reference with changed land)."""
    d = tmp_path_factory.mktemp("decide")
    target = crop(oscd_dir / "montpellier_20171030.tif", d / "target.tif", SIZE)
    ref = oscd_dir / "montpellier_20150812.tif"
    changed = crop(ref, d / "changed_ref.tif", SIZE)
    with rasterio.open(ref) as ds:
        other = ds.read()[:, -BLOCK:, -BLOCK:][:, ::-1, ::-1]
    with rasterio.open(changed, "r+") as ds:
        ds.write(other, window=((0, BLOCK), (0, BLOCK)))
    return target, changed


@pytest.fixture(scope="module")
def made(changed, tmp_path_factory):
    """The round trip of the changed pair with both decisions."""
    d = tmp_path_factory.mktemp("made")
    target, ref = changed
    out = {}
    for decide in ("agreement", "measure"):
        lr, hr = d / f"{decide}-lr.tif", d / f"{decide}-hr.tif"
        res = georefscale.roundtrip(target, ref, lr_out=lr, hr_out=hr, options=_options(decide))
        with rasterio.open(lr) as ds:
            info = LRInfo.from_dataset(ds, lr)
        out[decide] = (res, info, lr, hr)
    return out


def test_changed_land_is_made_without_the_reference(made):
    _, info, _, _ = made["measure"]
    tiling = info.tiling()
    assert len(info.tile_gains_db) == len(tiling)
    inside = [info.tile_index(r, c) for r in range(tiling.n_rows) for c in range(tiling.n_cols)
              if (r + 1) * TILING.tile <= BLOCK and (c + 1) * TILING.tile <= BLOCK]
    outside = [i for i in range(len(tiling)) if i not in inside]
    assert inside
    for i in inside:  # the reference shows other land there: it loses, and the tile says so
        assert info.tile_mode(i) != "model"
        assert info.tile_gains_db[i] < -0.1
    # elsewhere the reference is the real one and pays
    assert np.nanmedian([info.tile_gains_db[i] for i in outside]) > 0.5
    assert sum(info.tile_mode(i) == "model" for i in outside) >= len(outside) - 1


def test_measured_decision_is_not_worse(made):
    agreement, measure = made["agreement"][0]["psnr_db"], made["measure"][0]["psnr_db"]
    assert measure >= agreement - 0.02


def test_agreement_products_record_no_gains(made):
    _, info, _, _ = made["agreement"]
    assert info.tile_gains_db == () and info.bicubic_tiles == ()


def test_ground_rebuilds_recorded_bicubic_tiles(made, changed, tmp_path):
    """A product whose tags say "bicubic" for a tile is rebuilt there by plain bicubic (the
    tags are rewritten with a valid digest, as a product made so would carry them)."""
    from georefscale.engine.run import resolve_model, upscale

    _, info, lr, _ = made["measure"]
    copy = tmp_path / "lr.tif"
    copy.write_bytes(lr.read_bytes())
    moved = replace(info, fallback_tiles=(), bicubic_tiles=(0,))
    with rasterio.open(copy, "r+") as ds:
        ds.update_tags(**moved.to_tags())
        lr_tile = ds.read(window=((0, 32 + 4), (0, 32 + 4))).astype(np.float32) / info.scale
    hr = georefscale.ground(copy, changed[1], out=tmp_path / "hr.tif",
                            options=GroundOptions(alpha=0.0))
    with rasterio.open(hr) as ds:
        got = ds.read(window=((0, 100), (0, 100))).astype(np.float64)
    bicubic = upscale(resolve_model("bicubic", 4), lr_tile, None, 0.0, 0) * info.scale
    want = np.clip(np.rint(bicubic[:, :100, :100]), 0, 65535)
    # inside the tile core, away from the scene edge and the blend with the neighbours
    assert np.abs(got - want)[:, 8:, 8:].max() <= 1


@pytest.mark.parametrize("tags", [
    {"BICUBIC_TILES": "0-1000000"},
    {"TILE_GAINS_DB": "1.0,2.0"},
    {"TILE_GAINS_DB": "inf"},
])
def test_crafted_decision_tags_are_refused(made, tmp_path, tags):
    _, info, lr, _ = made["measure"]
    n = len(info.tiling())
    if tags.get("TILE_GAINS_DB") == "inf":
        tags = {"TILE_GAINS_DB": ",".join(["inf"] + ["0"] * (n - 1))}
    copy = tmp_path / "lr.tif"
    copy.write_bytes(lr.read_bytes())
    with rasterio.open(copy, "r+") as ds:
        ds.update_tags(**{f"GEOREFSCALE_{k}": v for k, v in tags.items()})
    with rasterio.open(copy) as ds, pytest.raises(InputError, match="tags"):
        LRInfo.from_dataset(ds, copy)


def test_overlapping_decisions_are_refused(made, tmp_path):
    _, info, lr, _ = made["measure"]
    copy = tmp_path / "lr.tif"
    copy.write_bytes(lr.read_bytes())
    both = replace(info, fallback_tiles=(0,), bicubic_tiles=(0,))
    with rasterio.open(copy, "r+") as ds:
        ds.update_tags(**both.to_tags())
    with rasterio.open(copy) as ds, pytest.raises(InputError, match="share tiles"):
        LRInfo.from_dataset(ds, copy)


def test_decide_is_validated():
    with pytest.raises(InputError, match="decide"):
        FallbackPolicy(decide="guess")


def test_cli_decide_measure(changed, tmp_path):
    target, ref = changed
    lr = tmp_path / "lr.tif"
    res = CliRunner().invoke(main, ["onboard", str(target), "-r", str(ref), "-o", str(lr),
                                    "--decide", "measure", "--tile", "128", "--halo", "16",
                                    "--json", "-q"])
    assert res.exit_code == 0, res.output
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    assert len(info.tile_gains_db) == len(info.tiling())
    assert not math.isnan(info.tile_gains_db[-1])
    summary = json.loads(res.output)
    assert summary


def test_relevance_map_shows_the_decision(made, changed, tmp_path):
    _, info, lr, _ = made["measure"]
    out = georefscale.relevance_map(lr, changed[1], out=tmp_path / "rel.tif")
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "float32"
        rel, mode, gain = ds.read()
    tiling = info.tiling()
    for r in range(tiling.n_rows):
        for c in range(tiling.n_cols):
            core = tiling.tile(r, c, "hr").core
            i = info.tile_index(r, c)
            block = (slice(core.row_off, core.row_off + core.height),
                     slice(core.col_off, core.col_off + core.width))
            assert (mode[block] == ("model", "fallback", "bicubic").index(info.tile_mode(i))).all()
            np.testing.assert_allclose(gain[block], info.tile_gains_db[i], atol=1e-6)
            if info.tile_mode(i) != "model":  # away from the blend with the neighbours
                h = TILING.halo
                assert (rel[block][h:-h, h:-h] == 0).all()


def test_summary_reports_the_gains(made):
    from georefscale.report import describe_lr

    _, info, lr, _ = made["measure"]
    summary = describe_lr(lr)
    assert summary["fallback_tiles"] + summary["bicubic_tiles"] >= 4
    gains = summary["reference_gain_db"]
    assert gains["min"] < -0.1 < 0.5 < gains["median"] <= gains["max"]
    assert gains["tiles"] == len(info.tiling())
