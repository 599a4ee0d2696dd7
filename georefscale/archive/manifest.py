"""The archive's records: the scene manifest (deterministic), the archive manifest (progress,
timings) and the check that a scene folder holds a finished job."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from georefscale.atomic import write_json
from georefscale.product import LRInfo
from georefscale.raster.io import open_raster, sha256_file
from georefscale.report import reconstruction_error

if TYPE_CHECKING:
    from georefscale.archive.plan import SceneJob

__all__ = ["ARCHIVE_FORMAT", "MANIFEST", "SCENE_FORMAT", "ArchiveResult", "is_finished",
           "scene_manifest", "verify_product", "write_archive_manifest"]

SCENE_FORMAT = "georefscale-archive-scene/1"
ARCHIVE_FORMAT = "georefscale-archive/1"
MANIFEST = "manifest.json"


@dataclass
class ArchiveResult:
    """What an archive run did.

    Attributes:
        out: the output folder.
        manifest: the archive manifest's path.
        scenes: one entry per scene (``id``, ``status`` = done / skipped (no earlier
            reference) / failed, ``resumed``, ``error``, ``seconds``, ``worker``).
        seconds: wall time.
    """

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


def verify_product(path: Path) -> None:
    """Decode every block of a written product: GDAL reports some write failures (a full disk,
    a file size limit) only as log messages, leaving a truncated file behind.

    Raises:
        OSError: the file does not read back.
    """
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


def scene_manifest(job: SceneJob, products: dict[str, Path],
                   target: str | os.PathLike) -> dict[str, Any]:
    """The deterministic scene manifest: the job, its products (size, SHA-256) and metrics
    (sizes, and with an HR the reconstruction error rounded to 1e-6; PSNR None when exact).

    Args:
        job: the scene.
        products: kind (``lr``, ``enhancement``, ``hr``) -> file.
        target: the target as read (its file, or its staged bands), for the error.

    Returns:
        The manifest; ``target_bytes`` (the target's files, all bands) and ``size_ratio`` are
        None for a remote target.
    """
    for p in products.values():
        verify_product(p)
    lr = products["lr"]
    target_bytes = job.target.nbytes()
    metrics: dict[str, Any] = {
        "target_bytes": target_bytes,
        "lr_bytes": lr.stat().st_size,
        "size_ratio": (round(target_bytes / lr.stat().st_size, 4)
                       if target_bytes is not None else None),
    }
    if "hr" in products:
        with open_raster(lr, "LR product") as lds:
            scale = LRInfo.from_dataset(lds, lr).scale
        err = reconstruction_error(target, products["hr"], scale)
        psnr = err["psnr_db"]
        metrics.update(rmse_dn=round(err["rmse_dn"], 6),
                       psnr_db=None if psnr == float("inf") else round(psnr, 6))
    return {
        "format": SCENE_FORMAT,
        "id": job.id,
        "status": "done",
        "job": job.key(),
        **job.spec(),
        "products": {
            k: {"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for k, p in products.items()
        },
        "metrics": metrics,
    }


def is_finished(job: SceneJob, out: str | os.PathLike) -> bool:
    """True when ``out/<id>`` holds this job's complete result (same key, products intact)."""
    folder = Path(out) / job.folder
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
        if sha256_file(p) != product["sha256"]:
            return False
    return True


def write_archive_manifest(path: Path, header: dict, jobs: list[SceneJob], entries: dict,
                           t0: float) -> None:
    """The archive manifest: the run's header, a summary of statuses and every scene's entry
    (``pending`` until it has one)."""
    scenes = [entries.get(j.id, {"id": j.id, "status": "pending"}) for j in jobs]
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    counts["resumed"] = sum(bool(s.get("resumed")) for s in scenes)
    write_json(path, {**header, "summary": counts, "seconds": round(time.perf_counter() - t0, 3),
                      "scenes": scenes}, sort_keys=True)
