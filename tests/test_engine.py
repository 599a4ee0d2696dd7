"""RefScale engine: exact invertibility, reproducible sampling, baselines, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from georefscale.engine import (
    BicubicRescaler,
    InvertibleRescaler,
    NetConfig,
    RefScaleNet,
    available_models,
    load,
    quantize,
)
from georefscale.engine.haar import squeeze, unsqueeze
from georefscale.engine.weights import load_file_model, save_model
from georefscale.errors import InputError


def _perturbed(cfg: NetConfig) -> RefScaleNet:
    """A network whose zero-initialised layers are not zero, so it is not the identity."""
    torch.manual_seed(0)
    net = RefScaleNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _pair(bands: int = 4, size: int = 32, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = 0.4 * torch.rand(n, bands, size, size, generator=gen)
    return x, 0.8 * x + 0.05 * torch.rand(n, bands, size, size, generator=gen)


def test_haar_roundtrip_is_exact_and_first_channels_are_block_means():
    x, _ = _pair()
    s = squeeze(x)
    assert torch.allclose(unsqueeze(s), x, atol=1e-7)
    assert torch.allclose(s[:, :4], torch.nn.functional.avg_pool2d(x, 2), atol=1e-7)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("use_reference", [True, False])
@pytest.mark.parametrize("bands", [1, 3, 4])
def test_inverse_of_forward_is_identity(factor, use_reference, bands):
    net = _perturbed(NetConfig(bands=bands, factor=factor, use_reference=use_reference))
    x, ref = _pair(bands)
    r = ref if use_reference else None
    with torch.no_grad():
        y, z = net(x, r)
        assert y.shape == (2, bands, 32 // factor, 32 // factor)
        assert z.shape == (2, bands * (factor**2 - 1), 32 // factor, 32 // factor)
        assert (net.inverse(y, z, r) - x).abs().max().item() < 1e-4


def test_reference_changes_the_result():
    net = _perturbed(NetConfig(factor=4))
    x, ref = _pair()
    with torch.no_grad():
        y1, _ = net(x, ref)
        y2, _ = net(x, ref.flip(-1))
    assert not torch.allclose(y1, y2)


def test_parameter_budget_x4_below_seed_figure():
    net = RefScaleNet(NetConfig(factor=4))
    assert sum(p.numel() for p in net.parameters()) <= 3_500_000


def _model(use_reference: bool = True) -> InvertibleRescaler:
    net = _perturbed(NetConfig(factor=4, use_reference=use_reference))
    return InvertibleRescaler("test", net, dtype="uint16", scale=10000.0)


def test_sampling_is_reproducible_per_seed_and_alpha_zero_is_zero_latent():
    model = _model()
    x, ref = _pair()
    y, _ = model.downscale(x, ref)
    a = model.upscale(y, ref, seed=7)
    b = model.upscale(y, ref, seed=7)
    c = model.upscale(y, ref, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    z0 = torch.zeros(2, 60, 8, 8)
    assert torch.equal(model.upscale(y, ref, alpha=0.0, seed=3), model.upscale(y, ref, z=z0))


def test_relevance_map_is_in_unit_interval_at_hr_size():
    model = _model()
    x, ref = _pair()
    y, _ = model.downscale(x, ref)
    rel = model.relevance(y, ref)
    assert rel.shape == (2, 1, 32, 32)
    assert 0.0 <= rel.min().item() <= rel.max().item() <= 1.0
    assert _model(use_reference=False).relevance(y, None) is None


def test_quantize_rounds_to_dn_grid_with_straight_through_gradient():
    y = torch.tensor([0.12344, -0.1, 7.0], requires_grad=True)
    q = quantize(y, 10000.0, "uint16")
    assert q.detach().tolist() == pytest.approx([0.1234, 0.0, 6.5535])
    q.sum().backward()
    assert y.grad.tolist() == [1.0, 1.0, 1.0]


def test_bicubic_baseline_interface():
    model = load("bicubic", factor=2)
    x, _ = _pair(3)
    y, z = model.downscale(x, None)
    assert y.shape == (2, 3, 16, 16) and z is None
    assert model.upscale(y, None).shape == x.shape
    with pytest.raises(InputError, match="factor must be 2 or 4"):
        BicubicRescaler(3)


def test_bad_inputs_are_clear_errors():
    model = _model()
    x, ref = _pair()
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        model.downscale(bad, ref)
    with pytest.raises(InputError, match="needs a reference"):
        model.downscale(x, None)
    with pytest.raises(InputError, match="3 bands, the model expects 4"):
        model.downscale(x[:, :3], ref[:, :3])
    with pytest.raises(InputError, match="reference shape"):
        model.downscale(x, ref[..., :16, :16])
    with pytest.raises(InputError, match="not a multiple of 4"):
        model.downscale(x[..., :30, :30], ref[..., :30, :30])
    with pytest.raises(InputError, match="unknown model 'nope'; available: bicubic"):
        load("nope")


def test_saved_weights_roundtrip_and_mismatch_is_an_error(tmp_path):
    net = _perturbed(NetConfig(factor=2, hidden=8, blocks=1))
    card = {"name": "tiny", "dtype": "uint8", "scale": 255.0}
    weights = save_model(net, card, tmp_path)
    saved = json.loads(weights.with_suffix(".json").read_text())
    model = load_file_model(weights, saved, device="cpu")  # bit equality: same device
    x, ref = _pair(size=16)
    y, z = model.downscale(x, ref)
    with torch.no_grad():
        y_ref, _ = net(x, ref)
    assert torch.equal(y, y_ref)
    wrong = {**saved, "config": {**saved["config"], "hidden": 16}}
    with pytest.raises(InputError, match="weights do not match the architecture"):
        load_file_model(weights, wrong)


def test_a_trained_model_loads_from_its_file(tmp_path):
    net = _perturbed(NetConfig(factor=2, hidden=8, blocks=1))
    weights = save_model(net, {"name": "tiny", "dtype": "uint8", "scale": 255.0}, tmp_path)
    model = load(str(weights), factor=2, device="cpu")
    assert model.name == "tiny" and model.factor == 2
    x, ref = _pair(size=16)
    with torch.no_grad():
        assert torch.equal(model.downscale(x, ref)[0], net(x, ref)[0])
    with pytest.raises(InputError, match="rescales by 2, not 4"):
        load(str(weights), factor=4)
    with pytest.raises(InputError, match="no such weights file"):
        load(str(tmp_path / "other.safetensors"))
    card = weights.with_suffix(".json")
    card.write_text("{not json")
    with pytest.raises(InputError, match="tiny.json: not a readable model card"):
        load(str(weights))
    card.write_text('{"name": "tiny"}')
    with pytest.raises(InputError, match="not a model card \\(no dtype, scale, config\\)"):
        load(str(weights))
    card.unlink()
    with pytest.raises(InputError, match="its model card tiny.json is missing"):
        load(str(weights))


def test_bicubic_is_always_available():
    assert available_models()[0] == "bicubic"
