"""The card's ``sampling_scale`` (issue #23 point 4): the ground draws
``z ~ N(0, (alpha * sampling_scale)^2)``, so alpha is relative to the latent the model has."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import rasterio
import torch

from georefscale.api import ground, onboard
from georefscale.engine import InvertibleRescaler, NetConfig, RefScaleNet, load, sample_latent
from georefscale.engine.cards import (
    card_sampling_scale,
    model_card,
    sampling_scale,
    shipped_cards,
)
from georefscale.engine.weights import load_file_model, save_model
from georefscale.errors import InputError
from georefscale.options import GroundOptions

#: the shipped models whose forward latent is weaker than the N(0, 1) prior
SCALED = ("refscale-s2-x4", "noref-s2-x4", "refscale-s2-x4-jp2", "noref-s2-x4-jp2",
          "noref-s2-x2", "noref-naip-x4")


# -- the rule and the card field -----------------------------------------------------------------
def test_rule_is_the_forward_latent_rms_capped_at_the_prior():
    assert sampling_scale(0.219) == 0.219
    assert sampling_scale(1.0) == 1.0
    assert sampling_scale(1.84) == 1.0 and sampling_scale(3.25) == 1.0
    for bad in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="latent RMS"):
            sampling_scale(bad)


def test_a_card_without_the_field_means_scale_1():
    assert card_sampling_scale({"name": "m"}) == 1.0
    assert card_sampling_scale({"name": "m", "sampling_scale": 0.5}) == 0.5
    assert card_sampling_scale({"name": "m", "sampling_scale": 1}) == 1.0


@pytest.mark.parametrize("bad", [0.0, -0.2, 1.5, math.nan, math.inf, "0.5", True, None])
def test_a_bad_sampling_scale_is_refused_naming_the_card(bad, tmp_path):
    net = RefScaleNet(NetConfig(factor=2, blocks=1, hidden=8, ref_features=4))
    card = {"name": "tiny", "dtype": "uint16", "scale": 10000.0, "sampling_scale": bad}
    weights = save_model(net, card, tmp_path)
    # through the card loader (a trained model's path) ...
    with pytest.raises(InputError, match=r"tiny\.json: sampling_scale must be a finite number "
                                         r"in \(0, 1\]"):
        model_card(str(weights))
    with pytest.raises(InputError, match="sampling_scale"):
        load(str(weights), device="cpu")
    # ... and when a card is handed to the weights loader directly
    with pytest.raises(InputError, match=r"tiny\.safetensors: sampling_scale"):
        load_file_model(weights, json.loads(weights.with_suffix(".json").read_text()), "cpu")


def test_the_shipped_cards_carry_the_rule_of_their_recorded_latent():
    cards = shipped_cards()
    for name, card in cards.items():
        rms = card["temperature"]["latent_rms"]
        expected = sampling_scale(rms)
        assert card_sampling_scale(card) == expected, name
        if expected < 1:  # written, and measured again at the scale, the table at scale 1 kept
            assert "sampling_scale" in card, name
            assert set(card["temperature"]["psnr_unit_scale"]) == {"0", "1", "2", "3"}
    assert {n for n, c in cards.items() if card_sampling_scale(c) < 1} == set(SCALED)
    assert 0.12 < cards["refscale-s2-x4"]["sampling_scale"] < 0.18


# -- sampling ------------------------------------------------------------------------------------
def test_the_sample_follows_alpha_times_scale_at_a_fixed_seed():
    shape, cpu = (1, 60, 64, 64), torch.device("cpu")
    unit = sample_latent(shape, 1.0, 5, cpu)
    assert torch.equal(sample_latent(shape, 1.0, 5, cpu, 1.0), unit)  # scale 1: today's bits
    for alpha, scale in ((1.0, 0.25), (3.0, 0.2), (2.0, 0.5)):
        z = sample_latent(shape, alpha, 5, cpu, scale)
        rms = z.pow(2).mean().sqrt().item()
        assert rms == pytest.approx(alpha * scale, rel=0.01)
        assert torch.equal(z, (alpha * scale) * unit)  # the same draw, scaled
    zero = sample_latent(shape, 0.0, 5, cpu, 0.2)
    assert torch.equal(zero, sample_latent(shape, 0.0, 5, cpu)) and not zero.any()


def _tiny(sampling: float) -> InvertibleRescaler:
    torch.manual_seed(0)
    net = RefScaleNet(NetConfig(factor=4, blocks=2, hidden=8, ref_features=4))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return InvertibleRescaler("t", net, dtype="uint16", scale=10000.0, sampling_scale=sampling)


def test_upscale_draws_at_the_models_scale_and_alpha_0_is_unchanged():
    gen = torch.Generator().manual_seed(1)
    x = 0.4 * torch.rand(1, 4, 32, 32, generator=gen)
    ref = 0.8 * x + 0.05 * torch.rand(1, 4, 32, 32, generator=gen)
    scaled, unit = _tiny(0.2), _tiny(1.0)
    y, z = unit.downscale(x, ref)
    for alpha in (1.0, 3.0):
        expected = unit.upscale(y, ref, z=sample_latent(z.shape, alpha * 0.2, 9, unit.device))
        assert torch.equal(scaled.upscale(y, ref, alpha=alpha, seed=9), expected)
    assert not torch.equal(scaled.upscale(y, ref, alpha=1.0, seed=9),
                           unit.upscale(y, ref, alpha=1.0, seed=9))
    assert torch.equal(scaled.upscale(y, ref, alpha=0.0, seed=9),
                       unit.upscale(y, ref, alpha=0.0, seed=9))


def test_loaded_models_get_their_cards_scale():
    for name in ("refscale-s2-x4", "refscale-s2-x2"):
        model = load(name, device="cpu")
        assert model.sampling_scale == card_sampling_scale(model_card(name))
    assert load("refscale-s2-x2", device="cpu").sampling_scale == 1.0
    assert load("bicubic", factor=4).sampling_scale == 1.0


# -- the shipped x4 model on a real test city -------------------------------------------------
@pytest.fixture(scope="module")
def montpellier(oscd_dir, crop, tmp_path_factory):
    """A 256 px crop of a test city (never seen in training) and its LR product."""
    tmp = tmp_path_factory.mktemp("montpellier")
    target = crop(oscd_dir / "montpellier_20171030.tif", tmp / "target.tif", 256)
    ref = crop(oscd_dir / "montpellier_20150812.tif", tmp / "ref.tif", 256)
    lr = onboard(target, ref, out=tmp / "lr.tif", model="refscale-s2-x4", tile=256, halo=16)
    return target, ref, lr


def _psnr(target, hr) -> float:
    with rasterio.open(target) as t, rasterio.open(hr) as h:
        a, b = t.read().astype(np.float64), h.read().astype(np.float64)
    return 10 * math.log10(10000.0**2 / np.mean((a - b) ** 2))


def test_shipped_x4_at_alpha_3_stays_within_4_db_of_alpha_1(montpellier, tmp_path):
    target, ref, lr = montpellier
    psnr = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # alpha 3 is within the trained prior now
        for alpha in (0.0, 1.0, 3.0):
            hr = ground(lr, ref, out=tmp_path / f"hr{alpha:g}.tif",
                        options=GroundOptions(alpha=alpha, seed=0))
            psnr[alpha] = _psnr(target, hr)
    assert psnr[1.0] > 30
    assert psnr[3.0] > psnr[1.0] - 4
    assert psnr[1.0] > psnr[0.0] - 0.5  # alpha 1 costs no more than it did (0.02 dB then)


def test_ground_warns_where_the_sample_leaves_the_trained_prior(montpellier, tmp_path):
    _, ref, lr = montpellier
    scale = model_card("refscale-s2-x4")["sampling_scale"]
    alpha = math.ceil(1 / scale)  # 7 for 0.146
    with pytest.warns(UserWarning, match=rf"alpha {alpha} is above the latent temperature the "
                      r"models were trained with \(1 / refscale-s2-x4's sampling scale 0\.146 ="
                      r" 6\.85\); refscale-s2-x4 on its validation crops: alpha 0 40\.4 dB"):
        ground(lr, ref, out=tmp_path / "hot.tif", options=GroundOptions(alpha=alpha, seed=0))


def test_info_shows_the_sampling_scale():
    from click.testing import CliRunner

    from georefscale.cli import main

    res = CliRunner().invoke(main, ["info", "refscale-s2-x4", "--tile", "64", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    card = model_card("refscale-s2-x4")
    assert report["sampling_scale"] == round(card["sampling_scale"], 4)
    assert report["val_psnr_db_unit_scale"]["3"] < report["val_psnr_db_by_alpha"]["3"] - 20
