"""Planning an archive run: which records are targets, their references and options.

:func:`plan_archive` turns a catalog selection into :class:`SceneJob` values: picklable, holding
the target and reference records (:class:`Input`: catalog id, href, time, checksum) and the
:class:`~georefscale.options.OnboardOptions` / :class:`~georefscale.options.GroundOptions` every
scene is made with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from georefscale.archive.masks import JobMask
from georefscale.catalog.records import Band
from georefscale.errors import InputError, NoCandidateError
from georefscale.options import (
    ClusterOptions,
    GroundOptions,
    OnboardOptions,
    RateTarget,
    default_model,
)
from georefscale.raster.io import is_url

if TYPE_CHECKING:
    from georefscale.catalog import Catalog, Record

__all__ = ["DEFAULT_SPLIT_PIXELS", "Input", "SceneJob", "folder_name", "plan_archive"]

#: Scenes with more pixels than this are split into tile bands across workers.
DEFAULT_SPLIT_PIXELS = ClusterOptions().split_pixels

PathLike = str | os.PathLike
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,119}")


@dataclass(frozen=True)
class Input:
    """A raster the job reads, as its catalog records it.

    Attributes:
        id: catalog record id (recorded as the reference id in the LR tags).
        href: absolute href (for separate band files: the first band's).
        datetime: acquisition time (ISO 8601, UTC).
        sha256: the SHA-256 recorded in the catalog (hex; None when the catalog has none).
        bands: for a record whose bands are separate files (STAC band assets), its bands with
            their files, in the record's order; empty for a single-file record.
        mask: a reference's mask asset (:mod:`georefscale.archive.masks`); None: none (the
            spectral cloud test), and always for a target.
    """

    id: str
    href: str
    datetime: str
    sha256: str | None
    bands: tuple[Band, ...] = ()
    mask: JobMask | None = None

    @classmethod
    def from_record(cls, rec: Record, mask: JobMask | None = None) -> Input:
        """The input of catalog record ``rec`` (``mask``: its mask asset, for a reference)."""
        separate = rec.bands if any(b.href for b in rec.bands) else ()
        return cls(rec.id, rec.href, rec.datetime.isoformat(), rec.sha256, separate, mask)

    @property
    def files(self) -> tuple[str, ...]:
        """Every file (or URL) the input is read from: its href, or its band files."""
        return tuple(dict.fromkeys(b.href or self.href for b in self.bands)) or (self.href,)

    def item(self) -> dict:
        """A record of separate band files as the STAC Item :func:`~georefscale.stac.item_raster`
        stacks: one asset per band, named by its ``eo:bands``."""
        return {"type": "Feature", "id": self.id,
                "assets": {b.name: {"href": b.href or self.href, "eo:bands": [b.to_dict()]}
                           for b in self.bands}}

    @property
    def reads(self) -> tuple[str, ...]:
        """Every file (or URL) read for the input: :attr:`files` and its mask's."""
        return self.files + ((self.mask.source.href,) if self.mask is not None else ())

    def spec(self) -> dict[str, Any]:
        """The input as recorded in the scene manifest (``bands`` only for band files,
        ``mask`` only with a mask: a job without either keeps the key of earlier versions)."""
        out = asdict(self)
        del out["mask"]
        if not self.bands:
            del out["bands"]
        if self.mask is not None:
            out["mask"] = self.mask.spec()
        return out

    def check(self, role: str) -> None:
        """Check the input's local files: they exist and, for a single file, its SHA-256 is
        the catalog's; its mask's file is unchanged since planning. Remote files are read as
        they are.

        Raises:
            InputError: a file is missing or changed since it was catalogued, or the mask file
                changed since planning.
        """
        from georefscale.raster.io import sha256_file

        for href in self.files:
            p = Path(href)
            if is_url(href):
                continue
            if not p.is_file():
                raise InputError(f"{p}: {role} {self.id} does not exist")
            if self.sha256 and not self.bands and sha256_file(p) != self.sha256:
                raise InputError(f"{p}: {role} {self.id} changed since it was catalogued "
                                 "(SHA-256)")
        if self.mask is not None:
            self.mask.check()

    def nbytes(self) -> int | None:
        """The size of the input's files (bytes; None when one is remote)."""
        if any(is_url(h) for h in self.files):
            return None
        return sum(Path(h).stat().st_size for h in self.files)


@dataclass(frozen=True)
class SceneJob:
    """Everything one scene's task needs (picklable; hrefs must be readable by the workers).

    Attributes:
        target: the target record.
        references: its reference records, in mosaic order.
        onboard: how the LR product is made (``onboard.model``: the model name, a trained
            model's ``.safetensors`` path, or a rescaler object).
        model_choice: how the model was chosen (``"given"`` or ``"auto: ..."``).
        ground: how the HR is rebuilt, or None for on board only.
        split: whether the scene is split into tile bands across workers.
        note: a planning remark (e.g. no earlier reference in the catalog).
    """

    target: Input
    references: tuple[Input, ...]
    onboard: OnboardOptions
    model_choice: str = "given"
    ground: GroundOptions | None = None
    split: bool = False
    note: str | None = None

    @property
    def id(self) -> str:
        return self.target.id

    @property
    def folder(self) -> str:
        """The scene's folder (and file prefix) name: see :func:`folder_name`."""
        return folder_name(self.id)

    @property
    def model(self) -> str:
        """The model's name (as recorded in the manifest)."""
        m = self.onboard.model
        return m if isinstance(m, str) else m.name

    def spec(self) -> dict[str, Any]:
        """The deterministic description recorded in the scene manifest.

        Options left at their defaults are not listed beyond the first release's keys, so a
        folder made by an earlier version is still recognised as finished.
        """
        o = self.onboard
        spec: dict[str, Any] = {
            "target": self.target.spec(),
            "references": [r.spec() for r in self.references],
            "model": self.model,
            "model_choice": self.model_choice,
            "factor": o.factor,
            "tile": o.tiling.tile,
            "halo": o.tiling.halo,
            "ground": ({"alpha": self.ground.alpha, "seed": self.ground.seed}
                       if self.ground is not None else None),
            "cog": o.cog,
            "note": self.note,
        }
        extra = _non_default(o)
        if extra:
            spec["options"] = extra
        return spec

    def key(self) -> str:
        """SHA-256 of :meth:`spec`: a finished folder is reused only for the same key."""
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()


def folder_name(record_id: str) -> str:
    """A safe, collision-free folder name for a catalog record id.

    Ids come from catalogs and STAC items made elsewhere: an id that is already a plain name
    (letters, digits, ``._-``, not starting with a dot) is used as it is; any other (``..``,
    ``/``, absolute paths, control characters, very long ids) becomes its cleaned text plus 12
    hex digits of its SHA-256, so it can never leave the output folder and two ids never share
    a folder. The id itself is kept in the manifests.
    """
    if _PLAIN_ID.fullmatch(record_id):
        return record_id
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", record_id).strip("._-")[:80] or "scene"
    return f"{slug}-{hashlib.sha256(record_id.encode()).hexdigest()[:12]}"


def _non_default(o: OnboardOptions) -> dict[str, Any]:
    """The codec, fallback, shift, rate and band options that differ from the defaults, as JSON
    values."""
    default = OnboardOptions()
    out: dict[str, Any] = {}
    if o.codec != default.codec:
        out["codec"] = {"name": o.codec.name, "quality": o.codec.quality}
    f, d = o.fallback, default.fallback
    if (f.min_agreement, f.min_coverage, f.decide) != (d.min_agreement, d.min_coverage,
                                                       d.decide) or (
        f.noref_model is not d.noref_model and f.noref_model != d.noref_model
    ):
        noref = f.noref_model if f.noref_model is None or isinstance(f.noref_model, str) else (
            f.noref_model.name)
        out["fallback"] = {"noref_model": noref, "min_agreement": f.min_agreement,
                           "min_coverage": f.min_coverage, "decide": f.decide}
    if o.correct_shift != default.correct_shift:
        out["correct_shift"] = o.correct_shift
    if o.rate is not None:
        defaults = {f.name: f.default for f in dataclasses.fields(RateTarget)}
        out["rate"] = {k: v for k, v in dataclasses.asdict(o.rate).items() if v != defaults[k]}
    if o.bands is not None:
        out["bands"] = list(o.bands)
    return out


def plan_archive(
    catalog: Catalog | PathLike,
    *,
    selection: dict[str, Any] | None = None,
    onboard: OnboardOptions | None = None,
    ground: GroundOptions | None = None,
    split_pixels: int = DEFAULT_SPLIT_PIXELS,
) -> list[SceneJob]:
    """One :class:`SceneJob` per selected catalog record, sorted by time then id.

    Each target's references are the catalog's ranking among strictly earlier records with the
    same band count (none: the job notes it and the archive skips it), each with its record's
    mask asset (:mod:`georefscale.archive.masks`; a local mask file is hashed here).
    ``onboard.model == "auto"`` picks a shipped model fitting the scene's bands
    (``onboard.bands`` when given) and dtype (bicubic when none does). Records whose bands are
    separate files (STAC band assets) are stacked when their scene runs
    (:mod:`georefscale.archive.inputs`).

    Args:
        catalog: a :class:`~georefscale.catalog.Catalog` or its stac-geoparquet path.
        selection: ``after`` (on or after), ``before`` (strictly before), ``aoi`` (any CRS, see
            ``catalog.parse_aoi``) and ``aoi_crs``; all optional.
        onboard: the on-board options of every scene.
        ground: the ground options, or None for on board only.
        split_pixels: scenes with more pixels are split into tile bands across workers.

    Raises:
        InputError: a bad selection, or mask files given (``reference_masks``).
    """
    from georefscale.catalog import Catalog, parse_aoi, parse_datetime
    from georefscale.references import catalog_name

    sel = dict(selection or {})
    unknown = set(sel) - {"after", "before", "aoi", "aoi_crs"}
    if unknown:
        raise InputError(f"unknown selection keys: {', '.join(sorted(unknown))}")
    onboard = onboard or OnboardOptions()
    if onboard.rate is not None and onboard.rate.factors:
        raise InputError("archive: the rate search over other factors (--try-factor) is for "
                         "onboard and roundtrip; archive measures the model's factor and direct "
                         "coding")
    if onboard.reference_masks or (ground is not None and ground.reference_masks):
        raise InputError("archive: a mask file (--reference-mask, reference_masks) belongs to "
                         "one reference, not to every scene's; archive masks each reference "
                         "by its catalog record's mask asset (scl, or a cloud / cloud-shadow / "
                         "data-mask role), else by the spectral cloud test")
    cat = catalog if isinstance(catalog, Catalog) else Catalog.load(catalog)
    lo = parse_datetime(sel["after"]) if sel.get("after") is not None else None
    hi = parse_datetime(sel["before"]) if sel.get("before") is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise InputError(f"--after {lo.date()} is not before --before {hi.date()}")
    area = parse_aoi(sel["aoi"], sel.get("aoi_crs")) if sel.get("aoi") is not None else None
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
    where, sums = catalog_name(cat), {}
    jobs = []
    for rec in records:
        note = None
        try:
            refs = cat.references_for(rec, time="before", band_count=rec.band_count).references
        except NoCandidateError:
            refs, note = [], "no earlier reference in the catalog"
        model, choice = _choose_model(onboard, rec)
        pixels = (rec.shape[0] * rec.shape[1]) if rec.shape else 0
        jobs.append(SceneJob(
            target=Input.from_record(rec),
            references=tuple(Input.from_record(r, JobMask.of(r, where, sums)) for r in refs),
            onboard=onboard if model is onboard.model else _with_model(onboard, model),
            model_choice=choice,
            ground=ground,
            split=pixels > split_pixels,
            note=note,
        ))
    return jobs


def _with_model(options: OnboardOptions, model: str) -> OnboardOptions:
    from dataclasses import replace

    return replace(options, model=model)


def _choose_model(onboard: OnboardOptions, rec: Record) -> tuple[Any, str]:
    """(model, how it was chosen) for one record: ``"auto"`` fits the bands read (the
    selection's count when given)."""
    if onboard.model != "auto":
        return onboard.model, "given"
    from georefscale.engine.cards import models_for

    count = rec.band_count if onboard.bands is None else len(onboard.bands)
    fits = models_for(count, rec.dtype or "", onboard.factor)
    if not fits:
        return "bicubic", f"auto: no shipped model for {count} x {rec.dtype}"
    first = default_model(onboard.codec, onboard.rate)
    ranked = sorted(fits, key=lambda n: (n != first, not n.startswith("refscale"), n))
    return ranked[0], f"auto: fits {count} x {rec.dtype}"
