"""Training on real Sentinel-2 pairs: a few steps on tiny crops, resume equivalence, checkpoints
that cannot run code, configs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from georefscale.engine import NetConfig, load
from georefscale.engine.cards import sampling_scale
from georefscale.errors import InputError
from georefscale.training import TrainConfig, load_config, train
from georefscale.training import checkpoint as checkpoint_module
from georefscale.training.checkpoint import load_checkpoint
from georefscale.training.codec import (
    CodecConfig,
    TrainingLink,
    code_crops,
    mosaic,
    unmosaic,
)
from georefscale.training.data import PairCrops, site_pairs

REPO = Path(__file__).resolve().parents[1]


def _cfg(oscd_dir: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        name="tiny",
        folder=str(oscd_dir),
        dtype="uint16",
        scale=10000.0,
        band_names=["B02", "B03", "B04", "B08"],
        net=NetConfig(factor=4, blocks=1, hidden=8, ref_features=4),
        train_sites=["pisa"],
        val_sites=["bercy"],
        steps=steps,
        batch=2,
        crop=32,
        warmup=2,
        val_every=2,
        val_crop=64,
        ckpt_every=1,
        threads=2,
        compile=False,  # compiling costs minutes once per machine; these runs are 4 steps
    )


def test_site_pairs_follow_naming_rule_both_directions(oscd_dir):
    pairs = site_pairs(oscd_dir, ["pisa"])
    names = [(t.name, r.name) for t, r in pairs]
    assert names == [
        ("pisa_20180211.tif", "pisa_20150704.tif"),
        ("pisa_20150704.tif", "pisa_20180211.tif"),
    ]
    with pytest.raises(InputError, match="no <site>_<YYYYMMDD>.tif pairs"):
        site_pairs(oscd_dir, ["atlantis"])


def test_crops_are_aligned_augmented_identically(oscd_dir):
    data = PairCrops(site_pairs(oscd_dir, ["pisa"], both_directions=False), 10000.0, 32, seed=3)
    x, ref = data.batch(4)
    assert x.shape == ref.shape == (4, 4, 32, 32)
    assert x.dtype == torch.float32
    # same place on two dates: strongly correlated after the shared flip/rotation
    corr = torch.corrcoef(torch.stack([x.flatten(), ref.flatten()]))[0, 1]
    assert corr > 0.5


def test_resumed_training_equals_uninterrupted(oscd_dir, tmp_path):
    run = {"progress": False, "device": "cpu"}
    full = train(_cfg(oscd_dir, 4), tmp_path / "full", **run)
    part = train(_cfg(oscd_dir, 4), tmp_path / "part", max_steps=2, **run)
    assert part.name == "checkpoint.sft"
    resumed = train(_cfg(oscd_dir, 4), tmp_path / "part", **run)
    a, b = load_file(str(full)), load_file(str(resumed))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((tmp_path / "full" / "tiny.json").read_text())
    assert card["training"]["steps"] == 4 and card["validation"]["step"] == 4
    # the learning curve survives the interruption: validations at steps 2 and 4
    resumed_card = json.loads((tmp_path / "part" / "tiny.json").read_text())
    for c in (card, resumed_card):
        assert [v["step"] for v in c["validation_history"]] == [2, 4]
    assert resumed_card["validation_history"] == card["validation_history"]
    # what alpha does to the model, measured on the validation crops, goes into the card
    temp = card["temperature"]
    assert list(temp["psnr"]) == ["0", "1", "2", "3"] and temp["latent_rms"] > 0
    assert resumed_card["temperature"] == temp
    model = load(str(full), device="cpu")
    assert model.temperature == temp
    # ... and the sampling scale the ground draws at, by the one rule (issue #23 point 4)
    assert card["sampling_scale"] == sampling_scale(temp["latent_rms"]) == model.sampling_scale
    assert ("psnr_unit_scale" in temp) == (card["sampling_scale"] < 1)
    # trained with bf16 convolutions (the default), the fp32 network is still exactly invertible
    x = 0.3 * torch.rand(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    y, z = model.downscale(x, x.flip(-1))
    assert (model.upscale(y, x.flip(-1), z=z) - x).abs().max().item() < 1e-4


def test_resume_refuses_a_changed_recipe(oscd_dir, tmp_path):
    run = {"progress": False, "device": "cpu", "max_steps": 1}
    train(_cfg(oscd_dir, 4), tmp_path / "run", **run)
    longer = _cfg(oscd_dir, 8)
    with pytest.raises(InputError, match=r"checkpoint.sft: made with another recipe \(steps"):
        train(longer, tmp_path / "run", **run)
    same = _cfg(oscd_dir, 4)
    same.threads, same.val_every = 1, 3  # bookkeeping may change between calls
    assert train(same, tmp_path / "run", **run).name == "checkpoint.sft"


class _Payload:
    """Unpickling this creates ``marker``: stands for code planted in a pickled checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_checkpoint_is_refused_not_run(oscd_dir, tmp_path):
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps({"net": _Payload(marker), "step": 3})
    pickle.loads(payload)  # the payload is live: unpickling it runs code
    assert marker.exists()
    marker.unlink()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(payload)
    with pytest.raises(InputError, match=r"run/checkpoint.pt: a pickled checkpoint .* not loaded"):
        train(_cfg(oscd_dir, 4), run, progress=False, device="cpu")
    assert not marker.exists()
    assert not (run / "checkpoint.sft").exists()  # refused before any training


def test_a_corrupted_or_foreign_checkpoint_is_a_clear_error(oscd_dir, tmp_path):
    run = {"progress": False, "device": "cpu"}
    ckpt = train(_cfg(oscd_dir, 4), tmp_path / "run", max_steps=1, **run)
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(InputError, match=r"checkpoint.sft: not a readable training checkpoint"):
        train(_cfg(oscd_dir, 4), tmp_path / "run", **run)
    # model weights dropped in as the checkpoint: valid safetensors, no training state
    save_file({"w": torch.zeros(3)}, str(ckpt))
    with pytest.raises(InputError, match=r"checkpoint.sft: a safetensors file without"):
        train(_cfg(oscd_dir, 4), tmp_path / "run", **run)


def test_interrupted_while_checkpointing_resumes_from_the_last_whole_checkpoint(
        oscd_dir, tmp_path, monkeypatch):
    run = {"progress": False, "device": "cpu"}
    full = train(_cfg(oscd_dir, 4), tmp_path / "full", **run)
    real_save, saves = checkpoint_module.save, []
    part = tmp_path / "part"

    def interrupted_third_save(tensors, metadata=None):
        saves.append(metadata)
        if len(saves) == 3:  # Ctrl-C half way through writing the step-3 checkpoint
            [temporary] = part.glob(".checkpoint.sft.*")
            temporary.write_bytes(real_save(tensors, metadata=metadata)[:1000])
            raise KeyboardInterrupt
        return real_save(tensors, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save", interrupted_third_save)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(oscd_dir, 4), tmp_path / "part", **run)
    monkeypatch.undo()
    assert sorted(p.name for p in part.iterdir()) == ["checkpoint.sft", "log.jsonl"]
    assert load_checkpoint(part / "checkpoint.sft")[1]["step"] == 2
    plain = tmp_path / "plain"
    plain.write_text("")
    assert (part / "checkpoint.sft").stat().st_mode == plain.stat().st_mode  # like any output
    resumed = train(_cfg(oscd_dir, 4), part, **run)
    a, b = load_file(str(full)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # step 3 was logged before the interruption and again after it: the log holds it once
    with (part / "log.jsonl").open("a") as log:
        log.write('{"step": 5, "loss"')  # and a line cut short is dropped on resume
    train(_cfg(oscd_dir, 4), part, **run)
    assert [json.loads(line)["step"] for line in (part / "log.jsonl").open()] == [1, 2, 3, 4]


def test_shipped_configs_load(tmp_path):
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path, data_root=tmp_path)
        assert cfg.name == path.stem
        assert cfg.folder.startswith(str(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnet: {bands: 4, nonsense: 1}\n")
    with pytest.raises(InputError, match="not a valid training config"):
        load_config(bad)


def test_catalog_driven_pairs_pick_earlier_references(data_dir):
    from georefscale.training.data import catalog_pairs

    pairs = catalog_pairs(REPO / "catalogs" / "naip.parquet", max_date="20171231",
                          archive=data_dir, both_directions=False)
    assert len(pairs) == 6  # every date up to 2017 but the first has an earlier reference
    for target, ref in pairs:
        assert ref.name[-12:-4] < target.name[-12:-4] <= "20171231"


def test_config_with_catalog_trains(data_dir, tmp_path):
    cfg = tmp_path / "cat.yaml"
    cfg.write_text(
        f"name: cat\ncatalog: {REPO / 'catalogs' / 'oscd.parquet'}\ndtype: uint16\n"
        "scale: 10000.0\nband_names: [B02, B03, B04, B08]\n"
        "train_sites: [pisa_20180211]\n"
        "net: {bands: 4, factor: 2, blocks: 1, hidden: 8, ref_features: 4}\n"
        "steps: 2\nbatch: 2\ncrop: 32\nwarmup: 1\nval_every: 2\nval_crop: 64\nthreads: 1\n"
        "compile: false\n"
    )
    conf = load_config(cfg, data_root=data_dir)
    assert conf.archive == str(data_dir) and conf.folder is None
    weights = train(conf, tmp_path / "run", progress=False)
    assert weights.suffix == ".safetensors"
    neither = tmp_path / "neither.yaml"
    neither.write_text("name: x\ndtype: uint8\nscale: 255\nband_names: [a]\nnet: {bands: 1}\n")
    with pytest.raises(InputError, match="exactly one of 'folder' and 'catalog'"):
        load_config(neither)



def test_codec_step_delivers_the_decoded_lr_with_the_identity_gradient():
    link = TrainingLink(CodecConfig(share=1.0, rates=(2.0, 2.0)), "uint16", 10000.0, seed=0)
    g = torch.Generator().manual_seed(0)
    lr = (torch.round(3000 * torch.rand(8, 4, 16, 16, generator=g)) / 10000).requires_grad_()
    weight = torch.rand(lr.shape, generator=g)
    delivered = link(lr, step=0)
    (delivered * weight).sum().backward()
    assert torch.equal(lr.grad, weight)  # what the identity's gradient is
    dn = delivered.detach() * 10000
    assert torch.allclose(dn, torch.round(dn), atol=1e-3)  # decoded DN of the source dtype
    assert (delivered - lr).abs().max() > 1e-3  # and really coded at 2 %
    expected = code_crops(torch.round(lr.detach() * 10000).numpy().astype("uint16"), "jpeg2000",
                          2.0)
    assert torch.equal(torch.round(dn).to(torch.int64), torch.from_numpy(expected.astype("int64")))
    crops = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).numpy()
    assert (unmosaic(mosaic(crops), 2) == crops).all() and mosaic(crops).shape == (3, 4, 10)


def test_codec_share_of_batches_is_deterministic_with_the_seed():
    cfg = CodecConfig(share=0.3, rates=(1.0, 40.0))
    draws = [TrainingLink(cfg, "uint16", 10000.0, seed).quality for seed in (0, 0, 1)]
    first, again, other = ([d(k) for k in range(2000)] for d in draws)
    assert first == again and first != other
    coded = [q for q in first if q is not None]
    assert abs(len(coded) / 2000 - 0.3) < 0.03
    assert 1.0 <= min(coded) < 1.5 and 30.0 < max(coded) <= 40.0


@pytest.mark.parametrize("section, message", [
    ({"share": 0.0}, r"share 0.0 must be in \(0, 1\]"),
    ({"share": 1.5}, r"share 1.5 must be in \(0, 1\]"),
    ({"rates": [0.0, 10.0]}, r"must satisfy 0 < lowest <= highest <= 100"),
    ({"rates": [5.0, 120.0]}, r"must satisfy 0 < lowest <= highest <= 100"),
    ({"rates": [10.0, 5.0]}, r"must satisfy"),
    ({"rates": 5}, r"give \[lowest, highest\]"),
    ({"name": "mp3"}, r"unknown codec 'mp3'"),
    ({"name": "jpeg"}, r"supports jpeg2000 only"),
    ({"rate": [1, 2]}, r"codec section: .*unexpected keyword argument 'rate'"),
])
def test_bad_codec_sections_are_refused(tmp_path, section, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "name": "x", "folder": "oscd", "dtype": "uint16", "scale": 10000.0, "band_names": ["a"],
        "net": {"bands": 1}, "codec": section}))
    with pytest.raises(InputError, match=message):
        load_config(path)
    path.write_text(yaml.safe_dump({
        "name": "x", "folder": "oscd", "dtype": "float32", "scale": 1.0, "band_names": ["a"],
        "net": {"bands": 1}, "codec": {}}))
    with pytest.raises(InputError, match=r"bad.yaml: codec 'jpeg2000' takes .* dtype is float32"):
        load_config(path)


def test_fine_tune_from_shipped_weights_with_the_codec(oscd_dir, tmp_path):
    shipped = load_config(REPO / "configs" / "refscale-s2-x4-jp2.yaml", oscd_dir.parent)
    assert shipped.init == "refscale-s2-x4"
    assert shipped.codec == CodecConfig()
    cfg = _cfg(oscd_dir, 2)
    cfg.net, cfg.crop = shipped.net, 64
    cfg.init, cfg.codec = "refscale-s2-x4", CodecConfig(share=1.0, rates=(2.0, 20.0))
    weights = train(cfg, tmp_path / "run", progress=False, device="cpu")
    card = json.loads(weights.with_suffix(".json").read_text())
    record = card["training"]["codec"]
    assert card["training"]["init"] == "refscale-s2-x4"
    assert record["name"] == "jpeg2000" and record["rates"] == [2.0, 20.0]
    assert record["coded_batches"] == 2 and 2.0 <= min(record["quality_seen"])
    # it started from the shipped weights: far above bicubic after 2 steps
    assert card["validation"]["psnr"] > card["validation"]["psnr_bicubic"] + 2.0
    wrong = _cfg(oscd_dir, 2)
    wrong.init = "refscale-s2-x4"  # a tiny net: the card's architecture differs
    with pytest.raises(InputError, match=r"init 'refscale-s2-x4': its card's config differ"):
        train(wrong, tmp_path / "wrong", progress=False, device="cpu")
    assert not (tmp_path / "wrong" / "checkpoint.sft").exists()
