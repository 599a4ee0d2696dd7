"""An archive run: every selected scene of a catalog, serially or on Dask distributed.

Output layout under ``out``::

    manifest.json            the archive: selection, options, every scene's status / timing
    <id>/<id>_lr.tif         one folder per *finished* scene, published atomically (rename)
    <id>/<id>_hr.tif         (with ground)
    <id>/manifest.json       inputs, references, model, options, SHA-256 of inputs and products

Rerunning skips scenes whose folder records the same job (:meth:`SceneJob.key`) with intact
products. Failures (missing reference, unwritable disk, ...) are reported per scene in the
archive manifest and the rest of the archive goes on. Scenes with more than
``ClusterOptions.split_pixels`` pixels are split into tile bands over the workers, on board and
on the ground (:mod:`georefscale.archive.bands`), with the same bytes as the serial path.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from georefscale.archive.bands import split_ground, split_onboard
from georefscale.archive.cluster import cluster_info, connect
from georefscale.archive.inputs import SceneInputs
from georefscale.archive.manifest import (
    MANIFEST,
    ArchiveResult,
    is_finished,
    write_archive_manifest,
)
from georefscale.archive.plan import SceneJob, plan_archive
from georefscale.archive.scene import (
    code_lr,
    decoded_lr,
    ground_scene,
    guarded,
    hr_path,
    lr_path,
    run_scene,
    scene_entry,
)
from georefscale.errors import InputError
from georefscale.options import ClusterOptions, GroundOptions, OnboardOptions

if TYPE_CHECKING:
    from distributed import Client

    from georefscale.catalog import Catalog

__all__ = ["ARCHIVE_FORMAT", "process_archive", "run_split_scene"]

ARCHIVE_FORMAT = "georefscale-archive/1"

PathLike = str | os.PathLike


def run_split_scene(client: Client, job: SceneJob, out: PathLike,
                    band_rows: int = ClusterOptions().band_rows) -> dict[str, Any]:
    """A large scene: tile bands as tasks on ``client``'s workers, on board and on the ground,
    each stitched here by one writer (memory: one band plus the stitcher's rows). Same bytes and
    manifest as :func:`~georefscale.archive.scene.run_scene`; bands finished by an interrupted
    run are reused. Never raises for a scene fault."""
    out = Path(out)

    def work(inputs: SceneInputs, staging: Path) -> None:
        parts = out / f".{job.folder}.parts-{job.key()[:16]}"
        parts.mkdir(exist_ok=True)
        split_onboard(client, job, inputs, lr_path(staging, job), parts, band_rows)
        code_lr(job, inputs, staging)
        if job.ground is not None and job.onboard.rate is not None:
            ground_scene(job, inputs.refs, staging)  # the two layers are made and added whole
        elif job.ground is not None:
            split_ground(client, job, inputs.refs, decoded_lr(job, staging),
                         hr_path(staging, job), parts, band_rows)
        shutil.rmtree(parts, ignore_errors=True)

    return guarded(job, out, work, split=True)


#: process_archive keywords of the first releases -> where they went
_OLD_SELECTION = ("after", "before", "aoi", "aoi_crs")
_OLD_ONBOARD = {"model": "model", "factor": "factor", "tile": "tile", "halo": "halo",
                "cog": "cog"}
_OLD_CLUSTER = ("workers", "scheduler", "split_pixels", "band_rows", "connect_timeout")


def _from_keywords(keywords: dict[str, Any], selection: dict[str, Any] | None,
                   onboard: OnboardOptions | None, ground: GroundOptions | bool | None,
                   cluster: ClusterOptions | None):
    """Map the first releases' keywords onto the option types (DeprecationWarning)."""
    import warnings
    from dataclasses import replace

    from georefscale.options import TilingOptions

    if keywords or isinstance(ground, bool):
        warnings.warn("process_archive(after=, model=, tile=, workers=, ground=True, ...) is "
                      "deprecated: pass selection={...}, onboard=OnboardOptions(...), "
                      "ground=GroundOptions(...), cluster=ClusterOptions(...)",
                      DeprecationWarning, stacklevel=3)
    unknown = set(keywords) - {*_OLD_SELECTION, *_OLD_ONBOARD, *_OLD_CLUSTER, "alpha", "seed"}
    if unknown:
        raise TypeError(f"process_archive() got unexpected keyword arguments {sorted(unknown)}")
    selection = {**(selection or {}), **{k: keywords[k] for k in _OLD_SELECTION
                                         if k in keywords}}
    onboard = onboard or OnboardOptions()
    tiling = TilingOptions(keywords.get("tile", onboard.tiling.tile),
                           keywords.get("halo", onboard.tiling.halo))
    onboard = replace(onboard, model=keywords.get("model", onboard.model),
                      factor=keywords.get("factor", onboard.factor), tiling=tiling,
                      cog=keywords.get("cog", onboard.cog))
    if isinstance(ground, bool):
        ground = GroundOptions(alpha=keywords.get("alpha", 1.0),
                               seed=keywords.get("seed", 0)) if ground else None
    cluster = replace(cluster or ClusterOptions(),
                      **{k: keywords[k] for k in _OLD_CLUSTER if k in keywords})
    return selection, onboard, ground, cluster


def process_archive(
    catalog: Catalog | PathLike,
    out: PathLike,
    *,
    selection: dict[str, Any] | None = None,
    onboard: OnboardOptions | None = None,
    ground: GroundOptions | None = None,
    cluster: ClusterOptions | None = None,
    client: Client | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **keywords: Any,
) -> ArchiveResult:
    """Process every selected scene of ``catalog`` into ``out`` (layout: module docstring).

    Nothing is written before the plan is made and the cluster answers.

    Args:
        catalog: a :class:`~georefscale.catalog.Catalog` or its stac-geoparquet path.
        out: the output folder (created).
        selection: ``after``, ``before``, ``aoi``, ``aoi_crs`` (see :func:`plan_archive`).
        onboard: the on-board options of every scene (model ``"auto"`` fits each scene).
        ground: also rebuild every scene with these options, and score it.
        cluster: workers (0: serial, in this process), a scheduler address (inputs and ``out``
            must then be on storage every worker sees under the same paths), splitting.
        client: an existing ``distributed.Client`` to use instead.
        progress: a progress bar on stderr.
        log: receives the dashboard link and the summary line.
        **keywords: the first releases' keywords (deprecated).

    Returns:
        What was done, scene by scene.

    Raises:
        InputError: a bad option, selection or output folder, or an unreachable scheduler.
    """
    selection, onboard, ground, cluster = _from_keywords(keywords, selection, onboard, ground,
                                                         cluster)
    t0 = time.perf_counter()
    jobs = plan_archive(catalog, selection=selection, onboard=onboard, ground=ground,
                        split_pixels=cluster.split_pixels)
    out = _check_out(out, jobs)
    say = log or (lambda _msg: None)
    model = onboard.model if isinstance(onboard.model, str) else onboard.model.name
    header = {
        "format": ARCHIVE_FORMAT,
        "catalog": _catalog_name(catalog),
        "selection": {k: _text(selection.get(k)) for k in ("after", "before", "aoi", "aoi_crs")},
        "model": model, "factor": onboard.factor, "ground": ground is not None,
        "alpha": ground.alpha if ground else 1.0, "seed": ground.seed if ground else 0,
        "tile": onboard.tiling.tile, "halo": onboard.tiling.halo, "cog": onboard.cog,
        "codec": {"name": onboard.codec.name, "quality": onboard.codec.quality},
        "fallback": {"enabled": onboard.fallback.enabled,
                     "min_agreement": onboard.fallback.min_agreement,
                     "min_coverage": onboard.fallback.min_coverage,
                     "decide": onboard.fallback.decide},
        "correct_shift": onboard.correct_shift,
    }
    if client is not None:
        return _run(jobs, out, header, client, t0, progress, say, cluster.band_rows)
    if cluster.workers == 0 and cluster.scheduler is None:
        return _run(jobs, out, header, None, t0, progress, say, cluster.band_rows)
    with connect(cluster.workers, cluster.scheduler, cluster.connect_timeout) as client:
        say(f"dask dashboard: {client.dashboard_link}")
        return _run(jobs, out, header, client, t0, progress, say, cluster.band_rows)


def _run(jobs: list[SceneJob], out: Path, header: dict, client: Client | None, t0: float,
         progress: bool, say: Callable[[str], None], band_rows: int) -> ArchiveResult:
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, "staging")
    result = ArchiveResult(out=out, manifest=out / MANIFEST)
    entries: dict[str, dict] = {}
    lock = threading.Lock()
    bar = tqdm(total=len(jobs), unit="scene", disable=not progress, desc="archive")
    header["cluster"] = cluster_info(client)

    def record(entry: dict) -> None:
        with lock:
            entries[entry["id"]] = entry
            bar.update(1)
            if entry["status"] == "failed":
                bar.write(f"{entry['id']}: failed: {entry['error']}")
            write_archive_manifest(result.manifest, header, jobs, entries, t0)

    todo = []
    for job in jobs:
        if not job.references:
            record(scene_entry(job, "skipped", job.note, 0.0))
        elif is_finished(job, out):
            record(scene_entry(job, "done", None, 0.0, resumed=True))
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
    write_archive_manifest(result.manifest, header, jobs, entries, t0)
    say(
        f"{len(jobs)} scenes: {result.count('done') - result.resumed} processed, "
        f"{result.resumed} already done, {result.count('skipped')} skipped (no reference), "
        f"{len(result.failed)} failed "
        f"({result.seconds:.1f} s); manifest {result.manifest}"
    )
    return result


def _run_on_cluster(client: Client, jobs: Sequence[SceneJob], out: Path,
                    record: Callable[[dict], None], band_rows: int) -> None:
    """Small scenes: one task each; large ones: one writer thread here, bands on the workers.

    An interrupt (Ctrl-C, SIGTERM) cancels the tasks and returns at once: the writer is a daemon
    thread that starts no new scene once told to stop, and the main thread never blocks on it
    without a timeout. What was finished stays published; the next run resumes.
    """
    from distributed import as_completed

    small = [j for j in jobs if not j.split]
    large = [j for j in jobs if j.split]
    futures = [client.submit(run_scene, j, str(out), key=f"scene-{j.key()[:16]}") for j in small]
    stop = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            for job in large:
                if stop.is_set():
                    return
                record(run_split_scene(client, job, out, band_rows))
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=writer, name="georefscale-split-writer", daemon=True)
    thread.start()
    try:
        for fut in as_completed(futures, loop=client.loop):
            record(fut.result())
        while thread.is_alive():
            thread.join(0.2)
    except BaseException:
        stop.set()
        client.cancel(futures)
        raise
    if failure:
        raise failure[0]


def _check_out(out: PathLike, jobs: Sequence[SceneJob]) -> Path:
    """``out`` must be a (creatable) writable directory apart from the imagery: neither inside
    nor containing the folder of any input (result folders would replace source folders in a
    folder-per-item archive). Checked before anything runs."""
    p = Path(out)
    where = p.resolve()
    for job in jobs:
        for item in (job.target, *job.references):
            for href in item.reads:
                if "://" in href:
                    continue
                folder = Path(href).resolve().parent
                if where == folder or where.is_relative_to(folder) or folder.is_relative_to(
                        where):
                    raise InputError(f"{p}: output folder overlaps the folder {folder} of "
                                     f"input {item.id}; choose a folder apart from the imagery")
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


def _catalog_name(catalog: Any) -> str | None:
    if isinstance(catalog, str | os.PathLike):
        return str(catalog)
    return str(catalog.path) if getattr(catalog, "path", None) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)
