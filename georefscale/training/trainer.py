"""Training loop: AdamW, warm-up + cosine schedule, gradient clipping, resumable checkpoints,
periodic validation PSNR, a progress bar; CPU first, CUDA when present.

The training step runs its convolutions in bf16 autocast (``mixed_precision``, the same mechanism
on the CPU and on CUDA) with the coupling, the Haar transform and the losses in fp32, and is
compiled with ``torch.compile`` (``compile``); validation, the model card's measurements and the
saved weights are plain fp32.

A run is described by a YAML config (see ``configs/`` in the repository); its output folder holds
``checkpoint.sft`` (resumed automatically; :mod:`georefscale.training.checkpoint`), ``log.jsonl``
and, at the end, the model files (``<name>.safetensors`` + ``<name>.json`` card).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm import tqdm

from georefscale.atomic import atomic_output
from georefscale.engine.baselines import BicubicRescaler, bicubic_downscale
from georefscale.engine.cards import MODELS_DIR, model_card, sampling_scale
from georefscale.engine.refscale import NetConfig, RefScaleNet
from georefscale.engine.rescaler import quantize
from georefscale.engine.weights import save_model
from georefscale.errors import InputError
from georefscale.metrics import psnr
from georefscale.training.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    refuse_legacy,
    save_checkpoint,
)
from georefscale.training.codec import SEAM_FACTOR, CodecConfig, TrainingLink
from georefscale.training.data import PairCrops, catalog_pairs, site_pairs
from georefscale.training.losses import (
    LossWeights,
    latent_noise,
    loss_terms,
    lr_terms,
    total_terms,
)


@dataclass
class TrainConfig:
    """Everything a training run needs; loaded from YAML by :func:`load_config`."""

    name: str
    dtype: str
    scale: float
    band_names: list[str]
    net: NetConfig
    #: pairs from a folder of ``<site>_<YYYYMMDD>.tif`` (``train_sites`` / ``val_sites``) ...
    folder: str | None = None
    train_sites: list[str] | None = None
    val_sites: list[str] | None = None
    #: ... or from a reference catalog (record ids in ``train_sites`` / ``val_sites``)
    catalog: str | None = None
    archive: str | None = None
    max_date: str | None = None
    steps: int = 3000
    batch: int = 8
    crop: int = 64
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    clip: float = 10.0
    seed: int = 0
    val_every: int = 250
    val_crop: int = 256
    ckpt_every: int = 50
    threads: int | None = None
    #: bf16 autocast for the convolutions of the training step, on the CPU and on CUDA alike
    #: (the coupling, Haar transform and losses stay fp32; validation and weights are fp32)
    mixed_precision: bool = True
    #: ``torch.compile`` the training step's forward, inverse and losses (with inductor's C++
    #: wrapper) and use the fused AdamW kernel (needs a C++ compiler on the CPU, Triton on CUDA;
    #: compiling takes minutes the first time on a machine, seconds from its cache)
    compile: bool = True
    loss: LossWeights = field(default_factory=LossWeights)
    description: str = ""
    #: codec-aware training: the LR of a share of the batches goes through the link codec
    #: (:class:`~georefscale.training.codec.CodecConfig`; a mapping from YAML); None: never
    codec: CodecConfig | None = None
    #: fine-tune: start from these weights (a shipped model's name or a trained model's
    #: ``.safetensors`` path) instead of a random initialisation; its card must match ``net``,
    #: ``dtype`` and ``scale``
    init: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.codec, dict):
            try:
                self.codec = CodecConfig(**self.codec)
            except TypeError as exc:
                raise InputError(f"codec section: {exc}") from exc
        if self.codec is not None:
            self.codec.check_dtype(self.dtype)


def load_config(path: str | Path, data_root: str | Path | None = None) -> TrainConfig:
    """Read a YAML training config; ``folder`` is resolved against ``data_root``
    (default: ``$GEOREFSCALE_DATA`` or ``../shared/data``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        net = NetConfig(**raw.pop("net"))
        loss = LossWeights(**raw.pop("loss", {}))
        cfg = TrainConfig(net=net, loss=loss, **raw)
    except (OSError, yaml.YAMLError, TypeError, KeyError) as exc:
        raise InputError(f"{path}: not a valid training config: {exc}") from exc
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    if (cfg.folder is None) == (cfg.catalog is None):
        raise InputError(f"{path}: give exactly one of 'folder' and 'catalog'")
    root = Path(data_root or os.environ.get("GEOREFSCALE_DATA", "../shared/data"))
    if cfg.folder is not None:
        cfg.folder = str(root / cfg.folder)
    elif data_root is not None:
        cfg.archive = str(data_root)
    return cfg


def training_pairs(cfg: TrainConfig) -> tuple[list, list]:
    """(train, validation) lists of (target, reference) paths, from the folder or the catalog."""
    val_names = cfg.val_sites or cfg.train_sites
    if cfg.catalog is not None:
        return (
            catalog_pairs(cfg.catalog, cfg.train_sites, cfg.max_date, cfg.archive),
            catalog_pairs(cfg.catalog, val_names, cfg.max_date, cfg.archive,
                          both_directions=False),
        )
    return (
        site_pairs(cfg.folder, cfg.train_sites, cfg.max_date),
        site_pairs(cfg.folder, val_names, cfg.max_date, both_directions=False),
    )


#: fields that do not change what a run trains (names, paths, bookkeeping, and how fast it runs:
#: ``threads`` and ``compile`` move the weights in the last bits only)
_NOT_RECIPE = {"name", "description", "band_names", "folder", "archive", "threads", "compile",
               "ckpt_every", "val_every", "val_crop"}


def recipe(cfg: TrainConfig) -> dict:
    """The fields of ``cfg`` that decide the trained weights, as JSON gives them back (tuples
    as lists), so a checkpoint's recipe compares equal."""
    return json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k not in _NOT_RECIPE}))


def initial_weights(cfg: TrainConfig) -> dict[str, torch.Tensor] | None:
    """The weights a fine-tune starts from (``cfg.init``), checked against the run's config.

    Args:
        cfg: the run's config.

    Returns:
        The state dict of ``cfg.init`` (CPU tensors), or None when the run starts from a random
        initialisation.

    Raises:
        InputError: for an unknown model or unreadable weights, or a card whose architecture,
            dtype or scale differ from ``cfg``'s.
    """
    if cfg.init is None:
        return None
    card = model_card(cfg.init)
    ours = {"config": cfg.net.to_dict(), "dtype": cfg.dtype, "scale": cfg.scale}
    differ = sorted(k for k, v in ours.items() if card.get(k) != v)
    if differ:
        raise InputError(f"init {cfg.init!r}: its card's {', '.join(differ)} differ from "
                         f"{cfg.name}'s config ({', '.join(f'{k}={card.get(k)}' for k in differ)}"
                         f" against {', '.join(f'{k}={ours[k]}' for k in differ)})")
    weights = Path(cfg.init)
    if weights.suffix != ".safetensors":
        weights = MODELS_DIR / f"{cfg.init}.safetensors"
    try:
        return load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise InputError(f"init {cfg.init!r}: {weights}: unreadable weights ({exc})") from exc


def codec_record(cfg: TrainConfig) -> dict | None:
    """What a model card says about the link codec the run trained with: codec, share, the
    configured and the drawn quality range (% of the raw LR), the number of coded batches and
    how they were coded; None without codec-aware training."""
    if cfg.codec is None:
        return None
    link = TrainingLink(cfg.codec, cfg.dtype, cfg.scale, cfg.seed)
    seen = [q for q in map(link.quality, range(cfg.steps)) if q is not None]
    return {
        "name": cfg.codec.name, "share": cfg.codec.share, "rates": list(cfg.codec.rates),
        "coded_batches": len(seen),
        "quality_seen": [round(min(seen), 3), round(max(seen), 3)] if seen else None,
        "coding": f"each coded batch's LR crops as one mosaic through georefscale.codecs at "
                  f"{SEAM_FACTOR:g} x the drawn quality plus the mosaic's header bytes; "
                  "straight-through gradient",
    }


def validation_entry(record: dict) -> dict:
    """What the validation history keeps of a ``log.jsonl`` record: the step, the PSNRs (dB) and
    the gate values."""
    return {k: v for k, v in record.items() if k == "step" or k.startswith(("psnr", "gate"))}


def _schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def psnr_t(a: torch.Tensor, b: torch.Tensor) -> float:
    """:func:`georefscale.metrics.psnr` of two tensors in the normalised range (peak 1.0 =
    ``scale`` DN)."""
    return psnr(a.detach().float().cpu().numpy(), b.detach().float().cpu().numpy(), 1.0)


def _reconstruct(net: RefScaleNet, cfg: TrainConfig, y: torch.Tensor, z: torch.Tensor,
                 ref: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """The inverse from the quantised forward LR ``y`` and a sample z ~ N(0, alpha^2) of the
    forward latent's shape, drawn with seed 0."""
    zs = alpha * torch.randn(z.shape, generator=torch.Generator().manual_seed(0)).to(y.device)
    return net.inverse(quantize(y, cfg.scale, cfg.dtype), zs, ref)


@torch.no_grad()
def validate(net: RefScaleNet, cfg: TrainConfig, x: torch.Tensor, ref: torch.Tensor) -> dict:
    """PSNR of the reconstruction (quantised LR, z ~ N(0,1) with seed 0) and of bicubic; for a
    reference model also the PSNR with a wrong reference (the right one turned by 180 degrees,
    on board and on the ground) and the mean reference gate in both cases."""
    net.eval()
    device = next(net.parameters()).device
    x, ref = x.to(device), ref.to(device)

    def roundtrip(r: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        y, z = net(x, r)
        return y, _reconstruct(net, cfg, y, z, r, 1.0)

    y, x_hat = roundtrip(ref if cfg.net.use_reference else None)
    guide = bicubic_downscale(x, cfg.net.factor)
    bic = BicubicRescaler(cfg.net.factor).upscale(quantize(guide, cfg.scale, cfg.dtype))
    out = {
        "psnr": psnr_t(x_hat, x),
        "psnr_bicubic": psnr_t(bic, x),
        "psnr_lr": psnr_t(y, guide),
    }
    if cfg.net.use_reference:
        out["gate"] = net.gate_map().mean().item()
        _, x_wrong = roundtrip(ref.flip(-1, -2))
        out["psnr_wrong_ref"] = psnr_t(x_wrong, x)
        out["gate_wrong_ref"] = net.gate_map().mean().item()
    net.train()
    return out


#: the sampling temperatures a model card reports validation PSNR for
CARD_ALPHAS = (0.0, 1.0, 2.0, 3.0)


@torch.no_grad()
def temperature(net: RefScaleNet, cfg: TrainConfig, x: torch.Tensor, ref: torch.Tensor) -> dict:
    """What the sampling temperature alpha does to this model on the validation crops: the RMS of
    the forward latent ``z`` and the reconstruction PSNR (dB, peak ``scale`` DN) at each alpha
    of :data:`CARD_ALPHAS`, seed 0, with the latent the ground draws,
    ``N(0, (alpha * s)^2)``, ``s`` = :func:`~georefscale.engine.cards.sampling_scale` of the
    RMS (the card's ``sampling_scale``); where ``s`` is below 1, also at scale 1
    (``psnr_unit_scale``: ``N(0, alpha^2)``, the prior the network was trained with)."""
    net.eval()
    device = next(net.parameters()).device
    x, r = x.to(device), (ref.to(device) if cfg.net.use_reference else None)
    y, z = net(x, r)
    rms = z.float().pow(2).mean().sqrt().item()
    scale = sampling_scale(rms)

    def table(s: float) -> dict[str, float]:
        return {f"{a:g}": psnr_t(_reconstruct(net, cfg, y, z, r, a * s), x) for a in CARD_ALPHAS}

    out = {"psnr": table(scale), "latent_rms": rms}
    if scale < 1:
        out["psnr_unit_scale"] = table(1.0)
    net.train()
    return out


def _checkpoint_tensors(net: RefScaleNet, opt: torch.optim.Optimizer,
                        device: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: ``net/<key>`` weights, ``opt/<param>/<name>`` optimiser
    state, ``rng/torch`` (and ``rng/cuda`` on a GPU) generator states."""
    tensors = {f"net/{k}": v for k, v in net.state_dict().items()}
    for pid, entry in opt.state_dict()["state"].items():
        tensors.update({f"opt/{pid}/{name}": v for name, v in entry.items()})
    tensors["rng/torch"] = torch.get_rng_state()
    if device.startswith("cuda"):
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    return tensors


def _restore(path: Path, tensors: dict[str, torch.Tensor], state: dict, net: RefScaleNet,
             opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
             data: PairCrops, device: str) -> tuple[int, float, list]:
    """Put a checkpoint's states into the run's objects and return its step, wall time and
    validation history; InputError naming ``path`` if they do not fit (a checkpoint of another
    network, a tampered file)."""
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, pid, name = key.split("/")
            opt_state.setdefault(int(pid), {})[name] = value
    try:
        # tensors stay on the CPU (RNG states must); load_state_dict moves them to the device
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net/")})
        # the hyperparameters from the checkpoint, the kernel choice (``compile``) from this run
        groups = [{**saved, "fused": now["fused"], "foreach": now["foreach"]}
                  for saved, now in zip(state["opt_groups"], opt.param_groups, strict=True)]
        opt.load_state_dict({"state": opt_state, "param_groups": groups})
        sched.load_state_dict(state["sched"])
        data.rng.bit_generator.state = state["data_rng"]
        torch.set_rng_state(tensors["rng/torch"])
        if device.startswith("cuda") and "rng/cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng/cuda"])
        return int(state["step"]), float(state["wall"]), list(state["history"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: does not fit this run ({first}); move it away to restart "
                         "the run from step 0") from exc


def _trim_log(log: Path, step: int) -> None:
    """Keep the records of ``log`` up to ``step`` (the checkpoint a run resumes from): the ones
    after it are written again, and an interruption may have cut the last line short."""
    if not log.exists():
        return
    kept = []
    for line in log.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    with atomic_output(log, ".jsonl.tmp") as tmp:
        tmp.write_text("".join(kept))


def train(cfg: TrainConfig, out_dir: str | Path, *, device: str | None = None,
          progress: bool = True, max_steps: int | None = None) -> Path:
    """Train (or resume) the run in ``out_dir``.

    Args:
        cfg: the run's config.
        out_dir: run folder (checkpoint, ``log.jsonl``, the finished model); resumed from its
            checkpoint when it has one.
        device: ``"cpu"``, ``"cuda"``, ...; default a CUDA GPU when there is one.
        progress: show a tqdm progress bar.
        max_steps: stop after that many steps in this call (the checkpoint stays resumable).

    Returns:
        The saved weights (``<name>.safetensors``) when the run is finished, else the
        checkpoint.

    Raises:
        InputError: for a pickled checkpoint of an older version in ``out_dir`` (never
            opened), an unreadable checkpoint, or one made with another recipe.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # the checkpoint is checked before the data are loaded, so a bad one fails at once
    refuse_legacy(out)
    ckpt = out / CHECKPOINT
    run_recipe = recipe(cfg)
    saved = load_checkpoint(ckpt) if ckpt.exists() else None
    if saved is not None:
        changed = sorted(k for k, v in run_recipe.items()
                         if saved[1].get("recipe", {}).get(k) != v)
        if changed:
            raise InputError(
                f"{ckpt}: made with another recipe ({', '.join(changed)} differ from "
                f"{cfg.name}'s config); resuming would train neither; move the run folder away "
                "or give another --out")
    init = initial_weights(cfg) if saved is None else None
    torch.manual_seed(cfg.seed)
    pairs, val_pairs = training_pairs(cfg)
    data = PairCrops(pairs, cfg.scale, cfg.crop, cfg.seed)
    val_x, val_ref = PairCrops(val_pairs, cfg.scale, cfg.crop).fixed(len(val_pairs), cfg.val_crop)

    net = RefScaleNet(cfg.net)
    if init is not None:
        net.load_state_dict(init)
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=cfg.compile or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    step, wall, history = 0, 0.0, []
    if saved is not None:
        step, wall, history = _restore(ckpt, *saved, net, opt, sched, data, device)
        _trim_log(out / "log.jsonl", step)

    def checkpoint() -> None:
        save_checkpoint(ckpt, _checkpoint_tensors(net, opt, device), {
            "step": step, "wall": wall, "history": history, "recipe": run_recipe,
            "sched": sched.state_dict(), "opt_groups": opt.state_dict()["param_groups"],
            "data_rng": data.rng.bit_generator.state})

    ref_on = cfg.net.use_reference

    def compiled(fn):
        return torch.compile(fn, options={"cpp_wrapper": True}) if cfg.compile else fn

    if cfg.codec is None:
        whole = compiled(loss_terms)

        def step_terms(x, r, noise, step):
            return whole(net, x, r, noise, cfg.scale, cfg.dtype, cfg.loss)
    else:  # two compiled halves, the link codec (on the host) between them
        link = TrainingLink(cfg.codec, cfg.dtype, cfg.scale, cfg.seed)
        forward, inverse = compiled(lr_terms), compiled(total_terms)

        def step_terms(x, r, noise, step):
            lr, forward_parts = forward(net, x, r, cfg.scale, cfg.dtype)
            return inverse(net, x, link(lr, step), r, noise, forward_parts, cfg.loss)
    stop = cfg.steps if max_steps is None else min(cfg.steps, step + max_steps)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=cfg.name)
    log = (out / "log.jsonl").open("a")
    net.train()
    while step < stop:
        t0 = time.perf_counter()
        x, ref = data.batch(cfg.batch)
        x, ref = x.to(device), ref.to(device)
        noise = latent_noise(net, x)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                            enabled=cfg.mixed_precision):
            loss, parts = step_terms(x, ref if ref_on else None, noise, step)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{cfg.name}: loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        sched.step()
        step += 1
        parts = {k: v.item() for k, v in parts.items()}
        seconds = time.perf_counter() - t0
        wall += seconds
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", rec=f"{parts['reconstruction']:.4f}")
        record = {"step": step, "loss": loss.item(), **parts, "lr": sched.get_last_lr()[0],
                  "seconds": seconds}
        if step % cfg.val_every == 0 or step == cfg.steps:
            record.update(validate(net, cfg, val_x, val_ref))
            history.append(validation_entry(record))
            wrong = (f", wrong reference {record['psnr_wrong_ref']:.2f} dB, gate "
                     f"{record['gate']:.2f} / {record['gate_wrong_ref']:.2f}"
                     if "gate" in record else "")
            bar.write(f"{cfg.name} step {step}: val PSNR {record['psnr']:.2f} dB "
                      f"(bicubic {record['psnr_bicubic']:.2f} dB{wrong})")
        log.write(json.dumps(record) + "\n")
        if step % cfg.ckpt_every == 0 or step == stop:
            log.flush()
            checkpoint()
    bar.close()
    log.close()
    if step < cfg.steps:
        return ckpt
    card = {
        "name": cfg.name,
        "description": cfg.description,
        "dtype": cfg.dtype,
        "scale": cfg.scale,
        "band_names": cfg.band_names,
        "training": {
            "data": [f"{Path(t).name} <- {Path(r).name}" for t, r in pairs],
            "validation": [Path(t).name for t, _ in val_pairs],
            "steps": cfg.steps, "batch": cfg.batch, "crop": cfg.crop, "lr": cfg.lr,
            "loss_weights": cfg.loss.__dict__,
            "wall_time_s": round(wall, 1),
            "device": device, "threads": torch.get_num_threads(),
            "mixed_precision": cfg.mixed_precision, "compile": cfg.compile,
            "torch": torch.__version__,
            "init": cfg.init,
            "codec": codec_record(cfg),
        },
        "validation": history[-1] if history else None,
        "validation_history": history,
        "temperature": temperature(net, cfg, val_x, val_ref),
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    card["sampling_scale"] = sampling_scale(card["temperature"]["latent_rms"])
    return save_model(net.cpu(), card, out)
