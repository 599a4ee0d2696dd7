"""Training pairs: (target, reference) rasters of the same site, the reference on the target grid.

Sites follow the evaluation naming rule ``<site>_<YYYYMMDD>.tif``. For each site, consecutive dates
form pairs (later = target, earlier = reference) and, for augmentation, the reverse. Whole scenes
are held in memory as float32 ``DN / scale`` (the sample archives are small); crops are drawn at
random positions with the same flip / 90-degree rotation applied to target and reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from georefscale.errors import InputError
from georefscale.evaluation.sites import dated_files
from georefscale.raster.align import align_to_target
from georefscale.raster.io import open_raster


def site_pairs(
    folder: str | Path,
    sites: list[str] | None = None,
    max_date: str | None = None,
    both_directions: bool = True,
) -> list[tuple[Path, Path]]:
    """(target, reference) path pairs of consecutive dates, optionally restricted."""
    pairs = []
    for site, dates in dated_files(folder).items():
        if sites is not None and site not in sites:
            continue
        dates = [d for d in dates if max_date is None or d[0] <= max_date]
        for (_, earlier), (_, later) in zip(dates, dates[1:], strict=False):
            pairs.append((later, earlier))
            if both_directions:
                pairs.append((earlier, later))
    if not pairs:
        raise InputError(f"{folder}: no <site>_<YYYYMMDD>.tif pairs found for sites {sites}")
    return pairs


def catalog_pairs(
    catalog: str | Path,
    ids: list[str] | None = None,
    max_date: str | None = None,
    archive: str | Path | None = None,
    both_directions: bool = True,
) -> list[tuple[Path, Path]]:
    """(target, reference) pairs from a reference catalog: every record (optionally only
    ``ids``, only acquired up to ``max_date`` = YYYYMMDD) is a target, its reference the best
    earlier record by :meth:`Catalog.references_for` (same band count); targets without an
    earlier, fully covering record are left out."""
    from georefscale.catalog import Catalog
    from georefscale.errors import NoCandidateError

    cat = Catalog.load(catalog, archive=archive)
    records = [cat.get(i) for i in cat.ids if ids is None or i in ids]
    if max_date is not None:
        records = [r for r in records if r.datetime.strftime("%Y%m%d") <= max_date]
    pairs = []
    for rec in records:
        try:
            found = cat.references_for(rec, time="before", band_count=len(rec.bands))
        except NoCandidateError:
            continue
        refs = found.references
        if len(refs) != 1 or (max_date and refs[0].datetime.strftime("%Y%m%d") > max_date):
            continue
        pairs.append((Path(rec.href), Path(refs[0].href)))
        if both_directions:
            pairs.append((Path(refs[0].href), Path(rec.href)))
    if not pairs:
        raise InputError(f"{catalog}: no record has an earlier reference for training")
    return pairs


def load_pair(
    target: Path, reference: Path, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target and reference as float32 ``DN / scale``, plus a boolean mask of pixels valid in
    both. The reference is put on the target grid exactly as the on-board side does it
    (:func:`~georefscale.raster.align.align_to_target`)."""
    with open_raster(target, "target") as t, open_raster(reference, "reference") as r:
        if r.count != t.count:
            raise InputError(f"{reference}: {r.count} bands, target {target} has {t.count}")
        x = t.read().astype(np.float32)
        valid = t.read_masks(1) > 0
        ref = align_to_target(t, [r])
    valid &= np.isfinite(ref).all(axis=0)
    ref = np.nan_to_num(ref, nan=0.0)
    return x / scale, ref / scale, valid


@dataclass
class PairCrops:
    """Random aligned crops from a list of (target, reference) pairs."""

    pairs: list[tuple[Path, Path]]
    scale: float
    crop: int
    seed: int = 0

    def __post_init__(self) -> None:
        self.scenes = [load_pair(t, r, self.scale) for t, r in self.pairs]
        self.rng = np.random.default_rng(self.seed)

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(100):
            x, ref, valid = self.scenes[self.rng.integers(len(self.scenes))]
            h, w = valid.shape
            i = int(self.rng.integers(0, h - self.crop + 1))
            j = int(self.rng.integers(0, w - self.crop + 1))
            if valid[i : i + self.crop, j : j + self.crop].all():
                break
        sl = (slice(None), slice(i, i + self.crop), slice(j, j + self.crop))
        a, b = x[sl], ref[sl]
        k = int(self.rng.integers(4))
        a, b = np.rot90(a, k, axes=(1, 2)), np.rot90(b, k, axes=(1, 2))
        if self.rng.random() < 0.5:
            a, b = a[:, :, ::-1], b[:, :, ::-1]
        return np.ascontiguousarray(a), np.ascontiguousarray(b)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` crops: (target, reference), float32 (size, C, crop, crop)."""
        xs, rs = zip(*(self._one() for _ in range(size)), strict=True)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(rs))

    def fixed(self, count: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` deterministic centre crops (validation), one per scene in turn."""
        xs, rs = [], []
        c = min([crop] + [min(x.shape[1:]) for x, _, _ in self.scenes]) // 4 * 4
        for k in range(count):
            x, ref, _ = self.scenes[k % len(self.scenes)]
            h, w = x.shape[1:]
            i, j = (h - c) // 2, (w - c) // 2
            xs.append(x[:, i : i + c, j : j + c])
            rs.append(ref[:, i : i + c, j : j + c])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(rs))
