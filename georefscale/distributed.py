"""Archives at scale: the file-level pipeline over many scenes on Dask distributed.

:func:`process_archive` takes a catalog, selects the target records acquired in a time window
(and AOI), picks each target's reference among the *earlier* records, and runs
:func:`georefscale.pipeline.onboard` (and ``ground`` if asked) as one task per scene on a
``LocalCluster`` of process workers (default) or on a running scheduler given by address.

Output layout under ``out``::

    manifest.json            the archive: selection, every scene's status / error / timing
    <id>/<id>_lr.tif         one folder per *finished* scene, published atomically (rename)
    <id>/<id>_hr.tif         (with ground)
    <id>/manifest.json       inputs, references, model, SHA-256 of inputs and products, metrics

A scene folder exists only once the scene is complete; its ``manifest.json`` holds only
deterministic content, so a resumed or distributed run gives byte-identical folders to a serial
one. Rerunning skips scenes whose folder records the same job (see :meth:`SceneJob.key`) with
intact products. Failures (missing reference, unwritable disk, ...) are reported per scene in the
archive manifest and the rest of the archive goes on.

Very large scenes (more than ``split_pixels`` pixels) are split into bands of tile rows computed
by separate tasks (each writes its LR tiles to ``out/.<id>.parts-<key>/``, which also makes
finished bands survive an interruption); a single writer on the client stitches them, in order,
into the one LR GeoTIFF, with the same bytes as the serial path. This holds for models that use
the reference too: the client estimates the scene's reference shift once and gives it to every
band, each band applies the pipeline's per-tile no-reference fallback
(:meth:`georefscale.pipeline.OnboardPlan.onboard_tile`) and reports its fallback tiles, and the
writer records them (:func:`georefscale.pipeline.write_lr`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from georefscale.atomic import write_json
from georefscale.errors import GeoRefScaleError, InputError, NoCandidateError
from georefscale.pipeline import DEFAULT_HALO, DEFAULT_MODEL, DEFAULT_TILE

if TYPE_CHECKING:  # dask is imported only when a cluster is used
    from distributed import Client

    from georefscale.catalog import Catalog

#: Scenes with more pixels than this are split into tile bands across workers.
DEFAULT_SPLIT_PIXELS = 64_000_000
#: Tile rows per task when a scene is split.
DEFAULT_BAND_ROWS = 2
#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT = 10.0
#: Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which makes the pipeline's large numpy
#: temporaries ~2x slower (measured); LocalCluster workers keep glibc's default instead.
NO_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
SCENE_FORMAT = "georefscale-archive-scene/1"
ARCHIVE_FORMAT = "georefscale-archive/1"
MANIFEST = "manifest.json"
#: Entry of a band's ``.npz`` listing its no-reference fallback tiles (a resumed run reuses it).
FALLBACK_KEY = "fallback"

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Input:
    """A raster the job reads: catalog id, absolute href, acquisition time (ISO 8601, UTC) and
    the SHA-256 recorded in the catalog (hex, None when the catalog has none)."""

    id: str
    href: str
    datetime: str
    sha256: str | None


@dataclass(frozen=True)
class SceneJob:
    """Everything one scene's task needs (picklable; hrefs must be readable by the workers)."""

    target: Input
    references: tuple[Input, ...]
    model: str
    model_choice: str
    factor: int | None
    tile: int = DEFAULT_TILE
    halo: int = DEFAULT_HALO
    ground: bool = False
    alpha: float = 1.0
    seed: int = 0
    cog: bool = False
    split: bool = False
    note: str | None = None  # planning remark (e.g. no earlier reference in the catalog)

    @property
    def id(self) -> str:
        return self.target.id

    def spec(self) -> dict[str, Any]:
        """The deterministic description recorded in the scene manifest."""
        return {
            "target": asdict(self.target),
            "references": [asdict(r) for r in self.references],
            "model": self.model,
            "model_choice": self.model_choice,
            "factor": self.factor,
            "tile": self.tile,
            "halo": self.halo,
            "ground": {"alpha": self.alpha, "seed": self.seed} if self.ground else None,
            "cog": self.cog,
            "note": self.note,
        }

    def key(self) -> str:
        """SHA-256 of :meth:`spec`: a finished folder is reused only for the same key."""
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()


@dataclass
class ArchiveResult:
    """What :func:`process_archive` did: one entry per scene (``id``, ``status`` = done /
    skipped (no earlier reference) / failed, ``resumed``, ``error``, ``seconds``, ``worker``),
    the archive manifest path and wall time."""

    out: Path
    manifest: Path
    scenes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(s["status"] == status for s in self.scenes)

    @property
    def resumed(self) -> int:
        return sum(bool(s.get("resumed")) for s in self.scenes)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.scenes if s["status"] == "failed"]


# -- planning ----------------------------------------------------------------------------------


def plan_archive(
    catalog: Catalog | PathLike,
    *,
    after: Any = None,
    before: Any = None,
    aoi: Any = None,
    aoi_crs: Any = None,
    model: str = DEFAULT_MODEL,
    factor: int | None = None,
    ground: bool = False,
    alpha: float = 1.0,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    split_pixels: int = DEFAULT_SPLIT_PIXELS,
) -> list[SceneJob]:
    """One :class:`SceneJob` per catalog record acquired at or after ``after`` and strictly
    before ``before`` whose footprint intersects ``aoi`` (any CRS, see ``catalog.parse_aoi``),
    sorted by time then id. Each target's references are the catalog's ranking among strictly
    earlier records with the same band count (none: the job notes it and the archive skips it).
    ``model="auto"`` picks a shipped model fitting the scene's bands and dtype (bicubic when
    none does)."""
    from georefscale.catalog import Catalog, parse_aoi, parse_datetime

    cat = catalog if isinstance(catalog, Catalog) else Catalog.load(catalog)
    lo = parse_datetime(after) if after is not None else None
    hi = parse_datetime(before) if before is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise InputError(f"--after {lo.date()} is not before --before {hi.date()}")
    area = parse_aoi(aoi, aoi_crs) if aoi is not None else None
    records = sorted(
        (
            r
            for r in cat
            if (lo is None or r.datetime >= lo)
            and (hi is None or r.datetime < hi)
            and (area is None or r.footprint.intersects(area))
        ),
        key=lambda r: (r.datetime, r.id),
    )
    jobs = []
    for rec in records:
        note = None
        try:
            refs = cat.references_for(rec, time="before", band_count=rec.band_count).references
        except NoCandidateError:
            refs, note = [], "no earlier reference in the catalog"
        name, choice = _choose_model(model, rec, factor)
        pixels = (rec.shape[0] * rec.shape[1]) if rec.shape else 0
        jobs.append(
            SceneJob(
                target=_input(rec),
                references=tuple(_input(r) for r in refs),
                model=name,
                model_choice=choice,
                factor=factor,
                tile=tile,
                halo=halo,
                ground=ground,
                alpha=alpha,
                seed=seed,
                cog=cog,
                split=pixels > split_pixels,
                note=note,
            )
        )
    return jobs


def _input(rec) -> Input:
    return Input(rec.id, rec.href, rec.datetime.isoformat(), rec.sha256)


def _choose_model(model: str, rec, factor: int | None) -> tuple[str, str]:
    """(model name, how it was chosen) for one record."""
    if model != "auto":
        return model, "given"
    from georefscale.engine import models_for

    fits = models_for(rec.band_count, rec.dtype or "", factor)
    if not fits:
        return "bicubic", f"auto: no shipped model for {rec.band_count} x {rec.dtype}"
    ranked = sorted(fits, key=lambda n: (n != DEFAULT_MODEL, not n.startswith("refscale"), n))
    return ranked[0], f"auto: fits {rec.band_count} x {rec.dtype}"


# -- one scene ---------------------------------------------------------------------------------


def run_scene(job: SceneJob, out: PathLike) -> dict[str, Any]:
    """Process one scene into ``out/<id>/`` (atomically) and return its archive entry; never
    raises for a scene fault (it is reported as ``status: failed`` with the error)."""
    t0 = time.perf_counter()
    out = Path(out)
    staging = None
    try:
        _check_job_inputs(job)
        staging = _staging(out, job.id)
        with single_threaded():
            _onboard(job, staging / f"{job.id}_lr.tif")
            _finish_scene(job, staging, out)
        staging = None
        status, error = "done", None
    except Exception as exc:  # a scene fault is data for the manifest, not a crash
        status, error = "failed", _describe(exc)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return _entry(job, status, error, time.perf_counter() - t0)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread: the bytes of a product (e.g. the phase-correlation
    error tag) must not depend on the thread count of the process that made it."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def _staging(out: Path, scene_id: str) -> Path:
    """A fresh hidden folder in ``out`` for one scene's products (mode per the umask)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{scene_id}.staging-", dir=out))
    staging.chmod(0o777 & ~_umask())
    return staging


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finish_in_task(job: SceneJob, staging: Path, out: Path) -> None:
    with single_threaded():
        _finish_scene(job, staging, out)


def _onboard(job: SceneJob, lr: Path) -> None:
    from georefscale.pipeline import onboard

    onboard(
        job.target.href,
        [r.href for r in job.references],
        out=lr,
        factor=job.factor,
        model=job.model,
        tile=job.tile,
        halo=job.halo,
        cog=job.cog,
    )


def _finish_scene(job: SceneJob, staging: Path, out: Path) -> None:
    """Ground (if asked), metrics, scene manifest, then publish ``staging`` as ``out/<id>``."""
    from georefscale.pipeline import ground

    lr = staging / f"{job.id}_lr.tif"
    verify_product(lr)
    products = {"lr": lr}
    metrics: dict[str, Any] = {
        "target_bytes": Path(job.target.href).stat().st_size,
        "lr_bytes": lr.stat().st_size,
    }
    metrics["size_ratio"] = round(metrics["target_bytes"] / metrics["lr_bytes"], 4)
    if job.ground:
        hr = staging / f"{job.id}_hr.tif"
        refs = [r.href for r in job.references]
        ground(lr, refs, out=hr, alpha=job.alpha, seed=job.seed, cog=job.cog)
        verify_product(hr)
        products["hr"] = hr
        metrics.update(reconstruction_error(job.target.href, lr, hr))
    manifest = {
        "format": SCENE_FORMAT,
        "id": job.id,
        "status": "done",
        "job": job.key(),
        **job.spec(),
        "products": {
            k: {"file": p.name, "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for k, p in products.items()
        },
        "metrics": metrics,
    }
    write_json(staging / MANIFEST, manifest, sort_keys=True)
    _publish(staging, out / job.id)


def verify_product(path: Path) -> None:
    """Decode every block of a written GeoTIFF: GDAL reports some write failures (a full disk,
    a file size limit) only as log messages, leaving a truncated file behind."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            for _, win in ds.block_windows(1):
                ds.read(window=win)
    except RasterioError as exc:
        size = path.stat().st_size if path.exists() else 0
        raise OSError(
            f"{path.name}: written product does not read back ({size} bytes; disk full or "
            f"I/O error?): {exc}"
        ) from None


def reconstruction_error(target: PathLike, lr: PathLike, hr: PathLike) -> dict[str, float]:
    """RMSE (DN) and PSNR (dB over the LR product's DN scale) of ``hr`` against ``target`` on
    the target's valid pixels, block by block (as ``pipeline.roundtrip`` reports them)."""
    import math

    from georefscale.pipeline import LRInfo
    from georefscale.raster.io import nodata_mask, open_raster

    with open_raster(lr, "LR product") as lds:
        scale = LRInfo.from_dataset(lds, lr).scale
    sq, n = 0.0, 0
    with open_raster(target, "target") as t, open_raster(hr, "HR product") as h:
        for _, win in t.block_windows(1):
            a = t.read(window=win).astype(np.float64)
            b = h.read(window=win).astype(np.float64)
            valid = ~nodata_mask(a, t.nodata)
            sq += float(((a - b)[valid] ** 2).sum())
            n += int(valid.sum())
    rmse = math.sqrt(sq / max(n, 1))
    psnr = 20 * math.log10(scale / rmse) if rmse > 0 else None
    return {"rmse_dn": round(rmse, 6), "psnr_db": None if psnr is None else round(psnr, 6)}


def _check_job_inputs(job: SceneJob) -> None:
    """The target and references exist and match the SHA-256 the catalog recorded."""
    for role, item in [("target", job.target), *(("reference", r) for r in job.references)]:
        p = Path(item.href)
        if not p.is_file():
            raise InputError(f"{p}: {role} {item.id} does not exist")
        if role == "reference" and item.sha256 and _sha256(p) != item.sha256:
            raise InputError(f"{p}: reference {item.id} changed since it was catalogued (SHA-256)")


def _publish(staging: Path, final: Path) -> None:
    """Rename the finished ``staging`` folder onto ``final`` (replacing an older result)."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def _entry(job: SceneJob, status: str, error: str | None, seconds: float, **extra) -> dict:
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GeoRefScaleError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def is_finished(job: SceneJob, out: PathLike) -> bool:
    """True when ``out/<id>`` holds this job's complete result (same key, products intact)."""
    folder = Path(out) / job.id
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("status") != "done" or manifest.get("job") != job.key():
        return False
    for product in manifest.get("products", {}).values():
        p = folder / product["file"]
        if not p.is_file() or p.stat().st_size != product["bytes"]:
            return False
        if _sha256(p) != product["sha256"]:
            return False
    return True


def _sha256(path: PathLike) -> str:
    from georefscale.raster.io import sha256_file

    return sha256_file(path)


# -- very large scenes: tile bands on workers, one writer --------------------------------------


def _bands(n_rows: int, band_rows: int) -> list[range]:
    return [range(r, min(r + band_rows, n_rows)) for r in range(0, n_rows, band_rows)]


def onboard_band(
    job: SceneJob, shift: tuple[float, float], rows: range, part: str
) -> tuple[str, list[int]]:
    """Downscale the tiles of tile rows ``rows`` of ``job``'s target with the scene's reference
    ``shift`` (estimated once by the client) through the pipeline's per-tile path (float32 LR
    arrays, NaN where all f x f source pixels are nodata, no-reference fallback per tile) and
    save them, row-major, to the ``.npz`` ``part`` (atomically), with the row-major indices of
    the tiles that fell back. Returns ``(part, fallback tiles)``. Runs on a worker."""
    with single_threaded(), _open_job(job) as (tds, rdss):
        plan = _plan(job, tds, rdss, shift=shift)
        arrays: dict[str, np.ndarray] = {}
        fallback = []
        for r in rows:
            for c in range(plan.tiling.n_cols):
                y, fell_back = plan.onboard_tile(tds, rdss, r, c)
                arrays[f"t{r}_{c}"] = y
                if fell_back:
                    fallback.append(plan.tile_index(r, c))
    arrays[FALLBACK_KEY] = np.asarray(fallback, dtype=np.int64)
    tmp = Path(part).with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, part)
    return part, fallback

_MODELS: dict[tuple[str, int | None], tuple[Any, Any]] = {}


def _models(job: SceneJob) -> tuple[Any, Any]:
    """``job``'s model and its no-reference fallback (the shipped twin, as ``pipeline.onboard``
    picks it for :func:`run_scene`), loaded once per (name, factor) per process."""
    from georefscale.pipeline import load_model, noref_twin

    key = (job.model, job.factor)
    if key not in _MODELS:
        model = load_model(job.model, job.factor)
        _MODELS[key] = (model, noref_twin(model))
    return _MODELS[key]


@contextmanager
def _open_job(job: SceneJob) -> Iterator[tuple[Any, list]]:
    """The open target dataset and reference datasets of ``job``."""
    from georefscale.raster.io import open_raster

    with ExitStack() as stack:
        tds = stack.enter_context(open_raster(job.target.href, "target"))
        rdss = [stack.enter_context(open_raster(r.href, "reference")) for r in job.references]
        yield tds, rdss


def _plan(job: SceneJob, tds, rdss, shift: tuple[float, float] | None = None,
          shift_error: float | None = None):
    """The pipeline's :class:`~georefscale.pipeline.OnboardPlan` for ``job``, as
    :func:`run_scene` makes it (same references, ids, SHA-256, fallback model); the shift is
    estimated unless given."""
    from georefscale.pipeline import plan_onboard
    from georefscale.raster.io import sha256_file

    model, fallback = _models(job)
    refs = [r.href for r in job.references]
    return plan_onboard(
        tds, rdss, model=model, target_name=job.target.href,
        reference_ids=[Path(p).stem for p in refs],
        # band tasks (shift given) write no tags: no need to hash the references there
        reference_sha256=[sha256_file(p) for p in refs] if shift is None else (),
        reference_names=refs, tile=job.tile, halo=job.halo, shift=shift,
        shift_error=shift_error, fallback_model=fallback,
    )


def run_split_scene(
    client: Client, job: SceneJob, out: PathLike, band_rows: int = DEFAULT_BAND_ROWS
) -> dict[str, Any]:
    """A large scene: tile bands as tasks on ``client``'s workers, stitched here by one writer
    (memory: one band plus the stitcher's rows). The reference shift is estimated once here and
    given to every band; each band reports its no-reference fallback tiles, which the writer
    records. Same bytes and manifest as :func:`run_scene`; bands finished by an interrupted
    run are reused. Never raises for a scene fault."""
    t0 = time.perf_counter()
    out = Path(out)
    staging = None
    try:
        _check_job_inputs(job)
        parts = out / f".{job.id}.parts-{job.key()[:16]}"
        parts.mkdir(exist_ok=True)
        staging = _staging(out, job.id)
        with single_threaded():
            _write_split_lr(client, job, staging / f"{job.id}_lr.tif", parts, band_rows)
            if job.ground:
                client.submit(_finish_in_task, job, staging, out, pure=False).result()
            else:
                _finish_scene(job, staging, out)
        staging = None
        shutil.rmtree(parts, ignore_errors=True)
        status, error = "done", None
    except Exception as exc:  # reported per scene
        status, error = "failed", _describe(exc)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return _entry(job, status, error, time.perf_counter() - t0, split=True)


def _write_split_lr(client, job: SceneJob, lr: Path, parts: Path, band_rows: int) -> None:
    """The writer: ``pipeline.plan_onboard`` once here (checks, reference shift, tags), the
    tiles from the band tasks, ``pipeline.write_lr`` (same bytes as ``onboard_datasets``)."""
    from georefscale.pipeline import write_lr

    with _open_job(job) as (tds, rdss):
        plan = _plan(job, tds, rdss)
        shift = plan.info.shift
        futures = []
        for i, rows in enumerate(_bands(plan.tiling.n_rows, band_rows)):
            part = parts / f"band{i:05d}.npz"
            if part.is_file():
                futures.append(str(part))
            else:
                futures.append(client.submit(onboard_band, job, shift, rows, str(part)))

        def tiles() -> Iterator[tuple[int, int, np.ndarray, bool]]:
            for fut in futures:
                part = fut if isinstance(fut, str) else fut.result()[0]
                with np.load(part) as arrays:
                    fallback = set(arrays[FALLBACK_KEY].tolist())
                    names = sorted((n for n in arrays.files if n != FALLBACK_KEY),
                                   key=_tile_order)
                    for name in names:
                        r, c = _tile_order(name)
                        yield r, c, arrays[name], plan.tile_index(r, c) in fallback

        write_lr(plan, tds, lr, tiles(), cog=job.cog)


def _tile_order(name: str) -> tuple[int, int]:
    r, c = name[1:].split("_")
    return int(r), int(c)


# -- the archive -------------------------------------------------------------------------------


@contextmanager
def connect(
    workers: int | None = None,
    scheduler: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Iterator[Client]:
    """A ``distributed.Client``: on the scheduler at ``scheduler`` (InputError when it does not
    answer within ``timeout`` s), else on a new ``LocalCluster`` of ``workers`` process workers
    with one thread each (default: one per core; glibc's default malloc trimming)."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"scheduler {scheduler} does not answer within {timeout:g} s ({exc})"
            ) from None
        try:
            if not client.scheduler_info().get("workers"):
                client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            client.close()
            raise InputError(f"scheduler {scheduler} has no workers ({exc})") from None
        with client:
            yield client
        return
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers} must be >= 1 (or 0 for the serial path)")
    n = workers or os.cpu_count() or 1
    with (
        dask.config.set({NO_MALLOC_TRIM: None}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def process_archive(
    catalog: Catalog | PathLike,
    out: PathLike,
    *,
    after: Any = None,
    before: Any = None,
    aoi: Any = None,
    aoi_crs: Any = None,
    model: str = DEFAULT_MODEL,
    factor: int | None = None,
    ground: bool = False,
    alpha: float = 1.0,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    cog: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    split_pixels: int = DEFAULT_SPLIT_PIXELS,
    band_rows: int = DEFAULT_BAND_ROWS,
    connect_timeout: float = CONNECT_TIMEOUT,
    client: Client | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ArchiveResult:
    """Process every selected scene of ``catalog`` (a :class:`~georefscale.catalog.Catalog` or
    its stac-geoparquet path) into ``out`` (see the module docstring for layout and resume).

    ``workers=0`` runs the serial path in this process; otherwise tasks run on a LocalCluster
    of ``workers`` process workers, or on the running ``scheduler`` (address, e.g.
    ``tcp://10.0.0.5:8786``; inputs and ``out`` must then be on storage every worker and this
    process see under the same paths; InputError when it does not answer within
    ``connect_timeout`` s). Nothing is written before the plan is made and the cluster answers.
    An existing ``distributed.Client`` may be given as ``client`` instead. ``log`` receives the
    dashboard link and the summary line.
    """
    t0 = time.perf_counter()
    jobs = plan_archive(
        catalog, after=after, before=before, aoi=aoi, aoi_crs=aoi_crs, model=model,
        factor=factor, ground=ground, alpha=alpha, seed=seed, tile=tile, halo=halo, cog=cog,
        split_pixels=split_pixels,
    )
    out = _check_out(out)
    say = log or (lambda _msg: None)
    header = {
        "format": ARCHIVE_FORMAT,
        "catalog": _catalog_name(catalog),
        "selection": {"after": _iso(after), "before": _iso(before), "aoi": _text(aoi),
                      "aoi_crs": _text(aoi_crs)},
        "model": model, "factor": factor, "ground": ground, "alpha": alpha, "seed": seed,
        "tile": tile, "halo": halo, "cog": cog,
    }
    if client is not None:
        return _run(jobs, out, header, client, t0, progress, say, band_rows)
    if workers == 0 and scheduler is None:
        return _run(jobs, out, header, None, t0, progress, say, band_rows)
    with connect(workers, scheduler, connect_timeout) as client:
        say(f"dask dashboard: {client.dashboard_link}")
        return _run(jobs, out, header, client, t0, progress, say, band_rows)


def _run(jobs, out: Path, header: dict, client, t0: float, progress: bool, say,
         band_rows: int) -> ArchiveResult:
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, "staging")
    result = ArchiveResult(out=out, manifest=out / MANIFEST)
    entries: dict[str, dict] = {}
    lock = threading.Lock()
    bar = tqdm(total=len(jobs), unit="scene", disable=not progress, desc="archive")
    header["cluster"] = _cluster_info(client)

    def record(entry: dict) -> None:
        with lock:
            entries[entry["id"]] = entry
            bar.update(1)
            if entry["status"] == "failed":
                bar.write(f"{entry['id']}: failed: {entry['error']}")
            _write_archive_manifest(result.manifest, header, jobs, entries, t0)

    todo = []
    for job in jobs:
        if not job.references:
            record(_entry(job, "skipped", job.note, 0.0))
        elif is_finished(job, out):
            record(_entry(job, "done", None, 0.0, resumed=True))
        else:
            todo.append(job)
    try:
        if client is None:
            for job in todo:
                record(run_scene(job, out))
        else:
            _run_on_cluster(client, todo, out, record, band_rows)
    finally:
        bar.close()
    _remove_stale(out, "staging")
    result.scenes = [entries[j.id] for j in jobs]
    result.seconds = time.perf_counter() - t0
    _write_archive_manifest(result.manifest, header, jobs, entries, t0)
    say(
        f"{len(jobs)} scenes: {result.count('done') - result.resumed} processed, "
        f"{result.resumed} already done, {result.count('skipped')} skipped (no reference), "
        f"{len(result.failed)} failed "
        f"({result.seconds:.1f} s); manifest {result.manifest}"
    )
    return result


def _run_on_cluster(client, jobs: Sequence[SceneJob], out: Path, record, band_rows: int) -> None:
    """Small scenes: one task each; large ones: one writer thread here, bands on the workers."""
    from distributed import as_completed

    small = [j for j in jobs if not j.split]
    large = [j for j in jobs if j.split]
    futures = [client.submit(run_scene, j, str(out), key=f"scene-{j.key()[:16]}") for j in small]
    with ThreadPoolExecutor(max_workers=1) as writer:
        done = [writer.submit(_split_all, client, large, out, record, band_rows)]
        for fut in as_completed(futures, loop=client.loop):
            record(fut.result())
        done[0].result()


def _split_all(client, jobs, out: Path, record, band_rows: int) -> None:
    for job in jobs:
        record(run_split_scene(client, job, out, band_rows))


def _check_out(out: PathLike) -> Path:
    """``out`` must be a (creatable) writable directory; checked before anything runs."""
    p = Path(out)
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{p}: output path {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{p}: output directory {probe} is not writable")
    return p


def _remove_stale(out: Path, kind: str) -> None:
    for p in out.glob(f".*.{kind}-*"):
        shutil.rmtree(p, ignore_errors=True)


def _write_archive_manifest(path: Path, header: dict, jobs, entries: dict, t0: float) -> None:
    scenes = [entries.get(j.id, {"id": j.id, "status": "pending"}) for j in jobs]
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    counts["resumed"] = sum(bool(s.get("resumed")) for s in scenes)
    write_json(path, {**header, "summary": counts, "seconds": round(time.perf_counter() - t0, 3),
                      "scenes": scenes}, sort_keys=True)


def _cluster_info(client) -> dict[str, Any]:
    if client is None:
        return {"kind": "serial"}
    workers = client.scheduler_info().get("workers", {})
    return {
        "kind": "dask",
        "scheduler": client.scheduler.address,
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
    }


def _catalog_name(catalog: Any) -> str | None:
    if isinstance(catalog, str | os.PathLike):
        return str(catalog)
    return str(catalog.path) if getattr(catalog, "path", None) else None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
