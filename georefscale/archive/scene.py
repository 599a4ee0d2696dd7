"""One scene of an archive: on board (and ground) into a staging folder, then published.

A scene folder ``out/<id>/`` exists only once the scene is complete (renamed from a hidden
staging folder); its ``manifest.json`` holds only deterministic content, so a resumed or
distributed run gives byte-identical folders to a serial one. The scene's inputs are staged
first (:mod:`georefscale.archive.inputs`: band files stacked, bands chosen as for ``onboard``);
the work goes straight through the plans and writers of :mod:`georefscale.plans`, with the
references' catalog ids recorded in the product.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from georefscale.archive.inputs import INPUTS, SceneInputs, stage_inputs
from georefscale.archive.manifest import MANIFEST, scene_manifest
from georefscale.archive.plan import SceneJob
from georefscale.atomic import write_json
from georefscale.direct import ground_direct, is_direct
from georefscale.errors import GeoRefScaleError
from georefscale.layers import BaseCandidate, enhancement_path, ground_layered, write_layered
from georefscale.link import codec_spec, encode_lr, exact_lr
from georefscale.options import CodecChoice, GroundOptions
from georefscale.plans.ground import GroundPlan, make_hr
from georefscale.plans.onboard import OnboardPlan, make_lr
from georefscale.product import LRInfo
from georefscale.raster.coreg import Coregistration
from georefscale.raster.io import open_raster
from georefscale.references import ReferenceSet

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

    from georefscale.engine.rescaler import Rescaler

__all__ = ["ground_plan", "lr_path", "hr_path", "onboard_plan", "open_scene", "run_scene",
           "scene_entry", "staging_folder"]

PathLike = str | os.PathLike

#: (model, factor, no-reference model) -> loaded (model, twin), per process
_LOADED: dict[tuple[str, int | None, Any], tuple[Any, Any]] = {}


def models(job: SceneJob) -> tuple[Rescaler, Rescaler | None]:
    """``job``'s model and its no-reference fallback, loaded once per process (a rescaler
    object in the options is used as it is)."""
    from georefscale.engine.run import noref_twin, resolve_model

    o = job.onboard
    noref = o.fallback.noref_model
    if not isinstance(o.model, str) or not (noref is None or isinstance(noref, str)):
        model = resolve_model(o.model, o.factor)
        return model, noref_twin(model, noref)
    key = (o.model, o.factor, noref)
    if key not in _LOADED:
        model = resolve_model(o.model, o.factor)
        _LOADED[key] = (model, noref_twin(model, noref))
    return _LOADED[key]


def lr_path(folder: Path, job: SceneJob) -> Path:
    """The LR GeoTIFF of ``job`` in ``folder`` (before any link coding)."""
    return folder / f"{job.folder}_lr.tif"


def product_path(folder: Path, job: SceneJob) -> Path:
    """The LR product as published: the GeoTIFF, or the coded file with the codec."""
    layered = job.onboard.rate is not None
    spec = codec_spec(CodecChoice("jpeg2000") if layered else job.onboard.codec)
    return lr_path(folder, job).with_suffix(spec.ext) if spec else lr_path(folder, job)


def code_lr(job: SceneJob, inputs: SceneInputs, staging: Path) -> None:
    """With a codec, replace the staged LR GeoTIFF by the coded product; with a rate target, by
    the two layers (:func:`~georefscale.layers.write_layered`)."""
    lr = lr_path(staging, job)
    if job.onboard.rate is not None:
        with open_raster(lr, "LR product") as lds:
            info = LRInfo.from_dataset(lds, lr)
        write_layered([BaseCandidate(lr, info, models(job))], product_path(staging, job),
                      inputs.target, inputs.refs, job.onboard.rate, scratch(staging),
                      direct=job.onboard.rate.direct)
    elif job.onboard.codec.name is not None:
        encode_lr(lr, product_path(staging, job), job.onboard.codec)
    else:
        return
    lr.unlink()


def scratch(staging: Path):
    """Fresh temporary paths by name in a hidden folder of ``staging`` (removed before the scene
    is published)."""
    folder = staging / ".scratch"
    folder.mkdir(exist_ok=True)
    counter = iter(range(1 << 30))
    return lambda name: folder / f"{next(counter)}_{name}"


def decoded_lr(job: SceneJob, staging: Path) -> Path:
    """The staged LR product as a GeoTIFF the ground reads (a coded one decoded beside it)."""
    lr = product_path(staging, job)
    return exact_lr(lr, staging / f".{job.folder}_lr.decoded.tif") if lr.suffix != ".tif" else lr


def hr_path(folder: Path, job: SceneJob) -> Path:
    """The HR GeoTIFF of ``job`` in ``folder``."""
    return folder / f"{job.folder}_hr.tif"


@contextmanager
def open_scene(inputs: SceneInputs) -> Iterator[tuple[DatasetReader, list]]:
    """The open target dataset and reference datasets of a scene's staged ``inputs``."""
    with ExitStack() as stack:
        tds = stack.enter_context(open_raster(inputs.target, "target"))
        rdss = stack.enter_context(inputs.refs.open())
        yield tds, rdss


def onboard_plan(job: SceneJob, refs: ReferenceSet, tds: DatasetReader, rdss: list,
                 coreg: Coregistration | None = None) -> OnboardPlan:
    """The scene's :class:`~georefscale.plans.onboard.OnboardPlan` (the reference warp
    measured unless given)."""
    model, fallback = models(job)
    plan = OnboardPlan.make(tds, rdss, refs, model=model, fallback_model=fallback,
                            options=job.onboard, target_name=job.target.href, coreg=coreg)
    if job.onboard.rate is not None:  # the base of two layers
        plan = dataclasses.replace(plan, info=dataclasses.replace(plan.info, layers=2))
    return plan


def ground_plan(job: SceneJob, lds: DatasetReader, info: LRInfo, rdss: list) -> GroundPlan:
    """The scene's :class:`~georefscale.plans.ground.GroundPlan` for its LR product."""
    model, fallback = models(job)
    options = job.ground or GroundOptions()
    return GroundPlan.make(lds, rdss, info, model=model,
                           fallback_model=fallback if info.fallback_tiles else None,
                           options=GroundOptions(alpha=options.alpha, seed=options.seed,
                                                 cog=job.onboard.cog),
                           lr_name=product_path(Path("."), job).name)


def staging_folder(out: Path, scene_id: str) -> Path:
    """A fresh hidden folder in ``out`` for one scene's products (mode per the umask)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{scene_id}.staging-", dir=out))
    mask = os.umask(0)
    os.umask(mask)
    staging.chmod(0o777 & ~mask)
    return staging


def guarded(job: SceneJob, out: PathLike, work: Callable[[SceneInputs, Path], None],
            **extra: Any) -> dict[str, Any]:
    """Run one scene's ``work`` into a fresh staging folder and publish it as ``out/<folder>``.

    The target and references are checked against the catalog and staged first
    (:func:`~georefscale.archive.inputs.stage_inputs`); torch and BLAS run on one thread (the
    products' bytes must not depend on the thread count).

    Args:
        job: the scene.
        out: the archive's output folder.
        work: makes the products in the staging folder, given the staged inputs.
        **extra: added to the archive entry.

    Returns:
        The scene's archive entry; a scene fault is reported as ``status: failed`` with the
        error, never raised.
    """
    from georefscale.engine.run import single_threaded

    t0 = time.perf_counter()
    out = Path(out)
    staging = None
    try:
        staging = staging_folder(out, job.folder)
        inputs = stage_inputs(job, models(job)[0], staging)
        with single_threaded():
            work(inputs, staging)
            finish_scene(job, inputs, staging, out)
        staging = None
        status, error = "done", None
    except Exception as exc:  # a scene fault is data for the manifest, not a crash
        status, error = "failed", describe(exc)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return scene_entry(job, status, error, time.perf_counter() - t0, **extra)


def run_scene(job: SceneJob, out: PathLike) -> dict[str, Any]:
    """Process one scene into ``out/<folder>/`` (atomically) in this process (see
    :func:`guarded`)."""

    def work(inputs: SceneInputs, staging: Path) -> None:
        with open_scene(inputs) as (tds, rdss):
            plan = onboard_plan(job, inputs.refs, tds, rdss)
            make_lr(plan, tds, rdss, lr_path(staging, job), cog=job.onboard.cog,
                    target_name=job.target.href)
        code_lr(job, inputs, staging)
        if job.ground is not None:
            ground_scene(job, inputs.refs, staging)

    return guarded(job, out, work)


def ground_scene(job: SceneJob, refs: ReferenceSet, staging: Path) -> None:
    """Rebuild the HR of the LR product in ``staging`` in this process."""
    if is_direct(product_path(staging, job)):  # the rate search coded the target directly
        ground_direct(product_path(staging, job), hr_path(staging, job), cog=job.onboard.cog)
        return
    lr = decoded_lr(job, staging)
    name = product_path(staging, job).name
    with open_raster(lr, "LR product") as lds, refs.open() as rdss:
        info = LRInfo.from_dataset(lds, name)
        refs.verify(info, name)
        if info.layers == 2:
            ground_layered(lds, rdss, info, models=models(job),
                           base_file=product_path(staging, job), enhancement=None,
                           options=GroundOptions(cog=job.onboard.cog),
                           out=hr_path(staging, job), scratch=scratch(staging))
            return
        plan = ground_plan(job, lds, info, rdss)
        make_hr(plan, lds, rdss, out=hr_path(staging, job), lr_name=name)


def finish_scene(job: SceneJob, inputs: SceneInputs, staging: Path, out: Path) -> None:
    """Verify the products, write the scene manifest (the error measured against the staged
    target), remove the staged inputs, publish ``staging`` as ``out/<id>``."""
    (staging / f".{job.folder}_lr.decoded.tif").unlink(missing_ok=True)
    shutil.rmtree(staging / ".scratch", ignore_errors=True)
    products = {"lr": product_path(staging, job)}
    if job.onboard.rate is not None and enhancement_path(products["lr"]).is_file():
        products["enhancement"] = enhancement_path(products["lr"])  # not when coded directly
    if job.ground is not None:
        products["hr"] = hr_path(staging, job)
    write_json(staging / MANIFEST, scene_manifest(job, products, inputs.target), sort_keys=True)
    shutil.rmtree(staging / INPUTS, ignore_errors=True)
    publish(staging, out / job.folder)


def publish(staging: Path, final: Path) -> None:
    """Rename the finished ``staging`` folder onto ``final`` (replacing an older result)."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def scene_entry(job: SceneJob, status: str, error: str | None, seconds: float,
                **extra: Any) -> dict[str, Any]:
    """The scene's line in the archive manifest."""
    return {
        "id": job.id,
        "status": status,
        "error": error,
        "model": job.model,
        "references": [r.id for r in job.references],
        "seconds": round(seconds, 3),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        **extra,
    }


def describe(exc: BaseException) -> str:
    """A scene fault as one line for the manifest."""
    if isinstance(exc, GeoRefScaleError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
