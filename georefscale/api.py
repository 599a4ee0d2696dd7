"""The job on sources: :func:`onboard`, :func:`ground`, :func:`roundtrip`, :func:`relevance_map`.

The only module that knows that a source is a GeoTIFF path or a rioxarray DataArray (written to
a temporary GeoTIFF; results come back as DataArrays then) and that an LR product may be coded
for the link (``OnboardOptions.codec``, e.g. JPEG 2000). The work itself is done by
:mod:`georefscale.plans.onboard` and :mod:`georefscale.plans.ground` on open datasets.

Options travel as the value types of :mod:`georefscale.options`. The keywords of the first
releases (``tile=``, ``alpha=``, ``codec=``, ...) still work and map onto those fields, with a
``DeprecationWarning`` naming the field.

>>> from georefscale import OnboardOptions, onboard
>>> onboard("new.tif", "old.tif", out="lr.tif", options=OnboardOptions(model="refscale-s2-x4"))
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from georefscale.atomic import guard_outputs
from georefscale.bandmap import BandSelection, adapt
from georefscale.direct import ground_direct, is_direct
from georefscale.errors import InputError, NoCandidateError
from georefscale.layers import (
    BaseCandidate,
    Layered,
    describe,
    enhancement_path,
    ground_layered,
    write_layered,
)
from georefscale.link import codec_spec, encode_lr, exact_lr, probe_codec
from georefscale.options import (
    AUTO,
    MASK_RULES,
    CodecChoice,
    GroundOptions,
    ModelLike,
    OnboardOptions,
)
from georefscale.plans.ground import GroundPlan, make_hr
from georefscale.plans.onboard import OnboardPlan, make_lr
from georefscale.product import LRInfo
from georefscale.raster.io import check_output, is_url, open_raster
from georefscale.raster.refmask import MaskRecord, MaskSource
from georefscale.references import Reference, ReferenceSet, as_catalog, identity_of
from georefscale.report import describe_lr, reconstruction_error
from georefscale.stac import is_stac_item, item_raster, load_item
from georefscale.xarray_io import (
    from_geotiff,
    is_dataarray,
    is_decoded,
    is_lazy,
    label,
    open_lazy,
    to_geotiff,
)

if TYPE_CHECKING:
    from datetime import datetime

    import xarray as xr

    from georefscale.catalog import Catalog
    from georefscale.engine.rescaler import Rescaler

__all__ = [
    "Product",
    "Source",
    "encode_lr",
    "ground",
    "onboard",
    "relevance_map",
    "roundtrip",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
#: A path to a GeoTIFF or a rioxarray DataArray.
Source: TypeAlias = "str | os.PathLike | xr.DataArray"
#: What the public functions return: the path written, or a DataArray when the input was one.
Product: TypeAlias = "Path | xr.DataArray"
#: A catalog or the path of its stac-geoparquet file.
CatalogLike: TypeAlias = "Catalog | str | os.PathLike"


# -- options and the keywords of the first releases --------------------------------------------

#: old keyword -> (options field path) for onboard / roundtrip
_ONBOARD_KEYWORDS = {
    "factor": ("factor",), "model": ("model",), "codec": ("codec", "name"),
    "quality": ("codec", "quality"), "allow_noref": ("allow_noref",),
    "noref_model": ("fallback", "noref_model"), "min_agreement": ("fallback", "min_agreement"),
    "min_coverage": ("fallback", "min_coverage"), "tile": ("tiling", "tile"),
    "halo": ("tiling", "halo"), "cog": ("cog",), "correct_shift": ("correct_shift",),
}
_GROUND_KEYWORDS = {k: (k,) for k in ("alpha", "seed", "tile", "halo", "cog")}


def _with(options: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(options, **{path[0]: value})
    inner = getattr(options, path[0])
    return replace(options, **{path[0]: _with(inner, path[1:], value)})


def _apply_keywords(options: Any, keywords: dict[str, Any], table: dict[str, tuple[str, ...]],
                    kind: str, func: str) -> Any:
    """Map the first releases' keywords onto ``options`` (a DeprecationWarning names the field);
    TypeError for unknown keywords, as Python gives."""
    for key, value in keywords.items():
        if key not in table:
            raise TypeError(f"{func}() got an unexpected keyword argument {key!r}")
        path = table[key]
        warnings.warn(f"{func}({key}=...) is deprecated: pass options={kind}("
                      f"{'.'.join(path)}=...)", DeprecationWarning, stacklevel=3)
        options = _with(options, path, value)
    return options


def onboard_options(options: OnboardOptions | None = None, **keywords: Any) -> OnboardOptions:
    """``options`` (default :class:`OnboardOptions`) with the first releases' keywords applied."""
    return _apply_keywords(options or OnboardOptions(), keywords, _ONBOARD_KEYWORDS,
                           "OnboardOptions", "onboard")


def ground_options(options: GroundOptions | None = None, **keywords: Any) -> GroundOptions:
    """``options`` (default :class:`GroundOptions`) with the first releases' keywords applied."""
    return _apply_keywords(options or GroundOptions(), keywords, _GROUND_KEYWORDS,
                           "GroundOptions", "ground")


# -- sources -----------------------------------------------------------------------------------


class Workspace:
    """A temporary directory (created on first use, removed on exit) for DataArrays written as
    GeoTIFFs and intermediate products; results for dask-backed DataArrays are written outside
    it (:meth:`output`)."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._n = 0
        #: directories of lazy results not yet handed to the DataArray that owns them
        self._lasting: list[Path] = []
        #: a DataArray given was decoded with a scale / offset: results come back decoded
        self.decoded = False
        #: the band names STAC Items are stacked in (the model's), once known
        self.bands: tuple[str, ...] | None = None
        #: the model targets and references are read for (their bands and convention), once
        #: known, and the bands given (``OnboardOptions.bands``)
        self.model: Rescaler | None = None
        self.selection: BandSelection | None = None
        #: the inputs as given, where a band selection of them is read instead
        self.given: list[Path | str] = []

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        for d in self._lasting:
            shutil.rmtree(d, ignore_errors=True)

    def path(self, name: str) -> Path:
        """A fresh path named ``name`` in the workspace."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="georefscale-")
        self._n += 1
        return Path(self._tmp.name) / f"{self._n}_{name}"

    def output(self, name: str, like: Source) -> Path:
        """A path named ``name`` for a result that comes back as a DataArray because ``like``
        is one: in the workspace, or for a dask-backed ``like`` alone in a new directory
        ``georefscale-result-*`` under the temporary folder, which the lazy result owns
        (:meth:`dataarray`)."""
        if not is_lazy(like):
            return self.path(name)
        directory = Path(tempfile.mkdtemp(prefix="georefscale-result-"))
        self._lasting.append(directory)
        return directory / name

    def dataarray(self, path: Path, name: str, like: Source, *,
                  decoded: bool | None = None) -> xr.DataArray:
        """The result at ``path`` as a DataArray like ``like``: loaded, or lazy (dask-backed,
        read from ``path``, removed with it when ``path`` came from :meth:`output`) when
        ``like`` is lazy. ``decoded`` (default: a DataArray given was decoded): decode scale /
        offset and nodata."""
        decoded = self.decoded if decoded is None else decoded
        if not is_lazy(like):
            return from_geotiff(path, name, mask_and_scale=decoded)
        owned = path.parent in self._lasting
        if owned:
            self._lasting.remove(path.parent)
        return open_lazy(path, name, mask_and_scale=decoded, owned=owned)

    def source(self, obj: Source, what: str) -> tuple[Path | str, str, bool]:
        """(path or URL, label for messages, was a DataArray)."""
        if is_dataarray(obj):
            self.decoded |= is_decoded(obj)
            stem = str(obj.name) if obj.name is not None else what.replace(" ", "_")
            return to_geotiff(obj, self.path(f"{stem}.tif"), what), label(obj, what), True
        if is_stac_item(obj):
            if not self.bands:
                raise InputError(f"{what}: a STAC item needs a model that names its bands")
            item, _ = load_item(obj)
            name = f"{what} STAC item {item.get('id', '')!r}"
            stem = str(item.get("id") or what).replace("/", "_")[:100]
            return item_raster(obj, self.bands, self.path(f"{stem}.vrt")), name, False
        if is_url(obj):
            return obj, obj, False
        if not isinstance(obj, str | os.PathLike):
            raise InputError(f"{what}: expected a file path, a URL or an xarray DataArray, got "
                             f"{type(obj).__name__}")
        return Path(obj), str(obj), False

    def adapt(self, path: Path | str, what: str, name: str) -> Path | str:
        """``path`` as the model reads it (:func:`~georefscale.bandmap.adapt`): its bands by
        name or as given, in the model's order; a reference also converted to the model's DN
        where its convention differs. ``path`` itself when it fits (or no model is known).

        Args:
            path: the target or reference file (or URL, or a STAC item's VRT).
            what: ``"target"`` or ``"reference"``.
            name: the input, for messages.

        Raises:
            InputError: the bands or the data convention do not fit the model.
        """
        if self.model is None:
            return path
        from georefscale.engine.cards import band_names

        read = adapt(path, what, self.model, band_names(self.model.name), self.selection,
                     self.path, convert=what != "target", label=name)
        if read != path:
            self.given.append(path)
        return read

    def adapt_all(self, refs: ReferenceSet) -> ReferenceSet:
        """``refs`` (e.g. from a catalog), each read as the model takes it (:meth:`adapt`;
        one that is adapted is identified by the content read)."""
        out = []
        for r in refs:
            # separate band files (``item``): stacked as a given STAC Item is (:meth:`source`)
            path = r.path if r.item is None else self.source(r.item, r.label)[0]
            read = self.adapt(path, "reference", r.label)
            out.append(r if read == r.path else replace(r, path=read, identity=identity_of(read),
                                                        item=None))
        return ReferenceSet(tuple(out))

    def mask(self, refs: ReferenceSet, files: Sequence[PathLike], rule: str | None = None, *,
             recorded: tuple[MaskRecord | None, ...] | None = None,
             product: str = "LR product") -> ReferenceSet:
        """``refs`` with their masks applied (:meth:`ReferenceSet.masked`: on board the files
        given with ``rule``, else their mask assets; on the ground the ``recorded`` ones, which
        they must match); the files read are kept from being overwritten."""
        masked = refs.masked(files, rule or MASK_RULES[0], self.path, recorded=recorded,
                             product=product)
        for before, after in zip(refs, masked, strict=True):
            if after.path != before.path:
                self.given.append(before.path)
        self.given.extend(Path(f) for f in files if not is_url(f))
        return masked

    def references(self, reference: Source | Sequence[Source] | None) -> ReferenceSet:
        """The given references (paths or DataArrays) as a :class:`ReferenceSet`, each read
        as the model takes it (:meth:`adapt`)."""
        if reference is None:
            return ReferenceSet()
        items = [reference] if isinstance(reference, str | os.PathLike) or is_dataarray(
            reference) or is_stac_item(reference) else list(reference)
        refs = []
        for i, obj in enumerate(items):
            path, name, as_da = self.source(obj, "reference")
            read = self.adapt(path, "reference", name)
            if as_da:  # identified by content, like the file it may have been read from
                rid = str(obj.name) if obj.name is not None else f"dataarray-{i + 1}"
                refs.append(Reference(rid, read, identity_of(read), name))
            elif is_stac_item(obj):  # its id, the content of its stacked bands, its mask asset
                from georefscale.catalog.records import mask_asset

                item, base = load_item(obj)
                rid = str(item.get("id") or f"item-{i + 1}")
                found = mask_asset(rid, item["assets"], base or None)
                source = None if found is None else MaskSource(
                    found[0], found[1], "asset", f"{found[0]} (mask asset of {name})")
                refs.append(Reference(rid, read, identity_of(read), name, mask_source=source))
            else:
                refs.append(Reference.from_file(path, read=None if read == path else read))
        return ReferenceSet(tuple(refs))


# -- the two sides -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Onboarded:
    """What :func:`_onboard` did: product path, whether the target was a DataArray, the
    target's file, the model and the no-reference fallback model used, and the two layers
    chosen for a rate target."""

    path: Path
    as_da: bool
    target: Path
    model: Rescaler
    fallback: Rescaler | None
    layered: Layered | None = None


def _onboard(ws: Workspace, target: Source, reference: Source | Sequence[Source] | None,
             out: PathLike | None, catalog: CatalogLike | None, archive: PathLike | None,
             options: OnboardOptions, when: datetime | str | None,
             progress: bool | None) -> _Onboarded:
    """:func:`onboard` inside a workspace."""
    from georefscale.engine.cards import band_names, factor_sibling, noref_name
    from georefscale.engine.run import noref_twin, resolve_model

    layered = options.rate is not None
    spec = codec_spec(CodecChoice("jpeg2000") if layered else options.codec)
    m = resolve_model(options.model, options.factor)
    ws.bands = band_names(options.model if isinstance(options.model, str) else m.name)
    ws.model, ws.selection = m, options.bands
    given, tname, as_da = ws.source(target, "target")
    tpath = ws.adapt(given, "target", tname)
    if out is None:
        if not as_da:
            raise InputError(f"{tname}: out (the LR product to write) is required")
        out = ws.output("lr" + (spec.ext if spec else ".tif"), target)
    out = Path(out)
    if spec is not None and out.suffix.lower() != spec.ext:
        out = out.with_suffix(spec.ext)
    check_output(out)
    if catalog is not None and reference is not None:
        raise InputError(f"{tname}: give a reference or a catalog, not both")
    with open_raster(tpath, "target") as tds:
        count = tds.count
        if spec is not None:
            probe_codec(spec, options.codec.quality, count, tds.dtypes[0], tname)
    refs = ws.references(reference)
    if catalog is not None:
        try:
            refs = ws.adapt_all(ReferenceSet.from_catalog(  # an item: its geometry and date
                as_catalog(catalog, archive), target if is_stac_item(target) else given,
                target_name=tname, band_count=count, when=when))
        except NoCandidateError:
            if not options.allow_noref:
                raise
            log.warning("%s: no reference in the catalog; using the no-reference model", tname)
    refs = ws.mask(refs, options.reference_masks, options.reference_mask_rule, product=tname)
    noref = options.fallback.noref_model
    if m.uses_reference and not refs and options.allow_noref:
        twin = noref_twin(m, AUTO if noref is None else noref)
        if twin is None:
            raise InputError(
                f"{tname}: no reference, and no no-reference model for {m.name} is available "
                f"(expected {noref_name(m.name) or 'a noref-* model'})"
            )
        m = twin
    fallback = noref_twin(m, noref)
    guard_outputs([out, enhancement_path(out) if layered else None],
                  [tpath, *(r.path for r in refs), *ws.given])
    pairs = [(m, fallback)]
    if layered:  # the rate search's other factors: the same family's models
        pairs += [(s, noref_twin(s, noref)) for s in (
            resolve_model(factor_sibling(m.name, f, tname), f)
            for f in options.rate.factors if f != m.factor)]
    candidates = []
    with open_raster(tpath, "target") as tds, refs.open() as rdss:
        for model, twin in pairs:
            lr_file = ws.path(f"lr-x{model.factor}.tif") if spec is not None else out
            plan = OnboardPlan.make(tds, rdss, refs, model=model, fallback_model=twin,
                                    options=options, target_name=tname)
            if layered:
                plan = replace(plan, info=replace(plan.info, layers=2))
            make_lr(plan, tds, rdss, lr_file, cog=options.cog, progress=progress,
                    target_name=tname)
            with open_raster(lr_file, "LR product") as lds:
                info = LRInfo.from_dataset(lds, lr_file)
            candidates.append(BaseCandidate(lr_file, info, (model, twin)))
    choice = None
    if layered:
        choice = write_layered(candidates, out, tpath, refs, options.rate, ws.path,
                               direct=options.rate.direct)
        m, fallback = next((c.models for c in candidates if c.info.model == choice.model),
                           (m, fallback))
    elif spec is not None:
        encode_lr(candidates[0].lr_file, out, options.codec)
    return _Onboarded(out, as_da, tpath, m, fallback, choice)


def _ground(ws: Workspace, lr: Source, reference: Source | Sequence[Source] | None, *,
            out: PathLike | None, relevance_out: PathLike | None, catalog: CatalogLike | None,
            archive: PathLike | None, options: GroundOptions,
            models: tuple[ModelLike | None, ModelLike | None],
            progress: bool | None, enhancement: PathLike | None = None
            ) -> tuple[Path, Path | None, bool]:
    """:func:`ground` / :func:`relevance_map` inside a workspace (``out`` None: relevance
    only); returns (HR path, relevance path, LR was a DataArray)."""
    from georefscale.engine.cards import band_names
    from georefscale.engine.run import given_model

    lpath, lname, as_da = ws.source(lr, "LR product")
    if out is None and relevance_out is None:
        if not as_da:
            raise InputError(f"{lname}: out (the GeoTIFF to write) is required")
    for p in (out, relevance_out):
        if p is not None:
            check_output(p)
    if catalog is not None and reference is not None:
        raise InputError(f"{lname}: give a reference or a catalog, not both")
    if is_direct(lpath):  # the target coded directly: no model, no reference
        if relevance_out is not None:
            raise InputError(f"{lname}: a directly coded product has no relevance map (no "
                             "reference or tiles went into it)")
        guard_outputs([out, relevance_out], [lpath, *ws.given])
        ground_direct(lpath, out, cog=options.cog)
        return Path(out), None, as_da
    received = lpath
    lpath = exact_lr(lpath, ws.path("lr.tif"))
    outputs = frozenset({"hr"} if out is not None else set()) | frozenset(
        {"relevance"} if relevance_out is not None else set())
    with open_raster(lpath, "LR product") as lds:
        info = LRInfo.from_dataset(lds, lname)
        m = given_model(models[0], info.model, info.factor, "model", lname)
        ws.model = m
        ws.bands = info.bands or band_names(info.model)
        if catalog is not None:
            refs = ws.adapt_all(ReferenceSet.by_ids(as_catalog(catalog, archive), info, lname))
        else:
            refs = ws.references(reference)
        refs.verify(info, lname)
        refs = ws.mask(refs, options.reference_masks, recorded=info.reference_masks,
                       product=lname)
        guard_outputs([out, relevance_out], [lpath, received if not as_da else None,
                                             *(r.path for r in refs), *ws.given])
        fallback = None
        if info.fallback_tiles and "hr" in outputs:
            fallback = given_model(models[1], info.fallback_model, info.factor,
                                   "no-reference model", lname)
        with refs.open() as rdss:
            if info.layers == 2 and out is not None and not options.base_only:
                fallback = fallback or (given_model(models[1], info.fallback_model, info.factor,
                                                    "no-reference model", lname)
                                        if info.fallback_model else None)
                ground_layered(lds, rdss, info, models=(m, fallback), base_file=received,
                               enhancement=None if enhancement is None else Path(enhancement),
                               options=options, out=Path(out),
                               scratch=ws.path)
                outputs, out_hr, out = outputs - {"hr"}, out, None
            else:
                out_hr = None
            if outputs:
                plan = GroundPlan.make(lds, rdss, info, model=m, fallback_model=fallback,
                                       options=options, outputs=outputs, lr_name=lname)
                make_hr(plan, lds, rdss, out=out, relevance_out=relevance_out, lr_name=lname,
                        progress=progress)
            out = out if out_hr is None else out_hr
    return (Path(out) if out is not None else None,
            Path(relevance_out) if relevance_out is not None else None, as_da)


# -- public API --------------------------------------------------------------------------------


def onboard(
    target: Source,
    reference: Source | Sequence[Source] | None = None,
    *,
    out: PathLike | None = None,
    catalog: CatalogLike | None = None,
    archive: PathLike | None = None,
    options: OnboardOptions | None = None,
    when: datetime | str | None = None,
    progress: bool | None = False,
    **keywords: Any,
) -> Product:
    """Downscale ``target`` by the model's factor with the help of its reference(s).

    Writes the tagged LR product ``out``: a GeoTIFF on the target grid scaled by the factor
    (same CRS, dtype, nodata, band names), or with ``options.codec`` a coded file whose
    extension is the codec's.

    The reference: ``reference`` (path(s) / DataArray(s), mosaicked), or ``catalog``: the best
    earlier record(s) for the target's footprint (acquisition time from its tags or name, or
    ``when``). No usable reference -> NoCandidateError, unless ``options.allow_noref``, which
    switches to the model's no-reference twin (``refscale-s2-x4`` -> ``noref-s2-x4``). Per
    tile, ``options.fallback`` decides when the tile is made by the twin (recorded in the tags).

    Args:
        target: the new acquisition: a GeoTIFF (path or URL), a STAC Item (``pystac.Item``,
            dict, JSON file or URL; its band assets) or a DataArray.
        reference: the reference(s), or None with ``catalog``.
        out: the LR product to write (may be None when ``target`` is a DataArray).
        catalog: a :class:`~georefscale.catalog.Catalog` or the path of its parquet.
        archive: root of the catalog's hrefs (default: the one recorded in it).
        options: model, factor, tiling, fallback, codec, shift correction, COG.
        when: acquisition time of the target, for the catalog.
        progress: progress bar (None: only on a terminal).
        **keywords: the first releases' option keywords (deprecated; see
            :class:`~georefscale.options.OnboardOptions`).

    Returns:
        The path written (the codec may change its extension), or a DataArray when ``target``
        is one.

    Raises:
        InputError: a bad input or option, naming the file.
        NoCandidateError: the catalog has no usable reference.
    """
    options = onboard_options(options, **keywords)
    with Workspace() as ws:
        done = _onboard(ws, target, reference, out, catalog, archive, options, when, progress)
        return ws.dataarray(done.path, "lr", target) if done.as_da else done.path


def ground(
    lr: Source,
    reference: Source | Sequence[Source] | None = None,
    *,
    out: PathLike | None = None,
    catalog: CatalogLike | None = None,
    archive: PathLike | None = None,
    options: GroundOptions | None = None,
    relevance_out: PathLike | None = None,
    model: ModelLike | None = None,
    noref_model: ModelLike | None = None,
    enhancement: PathLike | None = None,
    progress: bool | None = False,
    **keywords: Any,
) -> Product:
    """Rebuild the HR image from the LR product ``lr`` and the same reference(s), on exactly the
    original target grid; latent ``z ~ N(0, (alpha * sampling_scale)^2)`` per tile, seeded from
    ``(seed, row, col)``.

    Args:
        lr: the LR product (GeoTIFF / coded file path, or a DataArray).
        reference: the reference(s) as on board, or None with ``catalog``.
        out: the HR GeoTIFF to write (may be None when ``lr`` is a DataArray).
        catalog: find the references by the ids recorded in ``lr``.
        archive: root of the catalog's hrefs.
        options: alpha, seed, tile / halo (default: as recorded), COG.
        relevance_out: also write the relevance map (see :func:`relevance_map`).
        model: a ready rescaler to use instead of loading the recorded name (names must match).
        noref_model: the same for the recorded no-reference model.
        enhancement: the enhancement layer of a two-layer product (default: beside the base,
            ``<stem>.enh.jp2``); its residual is added to the base rebuilt with the recorded
            latent rule (alpha 0, seed 0). ``options.base_only`` ignores it.
        progress: progress bar (None: only on a terminal).
        **keywords: the first releases' option keywords (deprecated; see
            :class:`~georefscale.options.GroundOptions`).

    Returns:
        ``out``, or a DataArray when ``lr`` is one.

    Raises:
        ReferenceMismatchError: the references are not the recorded ones (SHA-256).
        InputError: a bad input or option, naming the file.
    """
    options = ground_options(options, **keywords)
    with Workspace() as ws:
        if out is None and not is_dataarray(lr):
            raise InputError(f"{lr}: out (the HR GeoTIFF to write) is required")
        out = out if out is not None else ws.output("hr.tif", lr)
        path, _, as_da = _ground(ws, lr, reference, out=out, relevance_out=relevance_out,
                                 catalog=catalog, archive=archive, options=options,
                                 models=(model, noref_model), progress=progress,
                                 enhancement=enhancement)
        return ws.dataarray(path, "hr", lr) if as_da else path


def relevance_map(
    lr: Source,
    references: Source | Sequence[Source] | None = None,
    *,
    out: PathLike | None = None,
    catalog: CatalogLike | None = None,
    archive: PathLike | None = None,
    options: GroundOptions | None = None,
    model: ModelLike | None = None,
    progress: bool | None = False,
    **keywords: Any,
) -> Product:
    """Write where the reference was used for ``lr``: a float32 GeoTIFF on the HR (target)
    grid, band 1 values 0 (ignored) .. 1 (fully used), NaN where the LR product is nodata; 0
    on tiles made without the reference. From the model's own gates (``model.relevance``),
    tile by tile, blended like the HR output. For a product whose tiles were decided by
    measurement (``FallbackPolicy(decide="measure")``) two more bands say, per tile, what was
    decided on board: band 2 the mode (0 the model with the reference, 1 its no-reference twin,
    2 bicubic), band 3 the reference's measured gain (dB: PSNR with the reference minus the
    best without it; NaN where the reference was not tried).

    Args:
        lr: the LR product.
        references: as in :func:`ground`.
        out: the GeoTIFF to write (may be None when ``lr`` is a DataArray).
        catalog: as in :func:`ground`.
        archive: as in :func:`ground`.
        options: tile / halo (alpha and seed do not matter).
        model: as in :func:`ground`.
        progress: progress bar.
        **keywords: ``tile`` / ``halo`` of the first releases (deprecated).

    Returns:
        ``out``, or a DataArray when ``lr`` is one.
    """
    options = ground_options(options, **keywords)
    with Workspace() as ws:
        if out is None and not is_dataarray(lr):
            raise InputError(f"{lr}: out (the relevance GeoTIFF to write) is required")
        out = out if out is not None else ws.output("relevance.tif", lr)
        _, path, as_da = _ground(ws, lr, references, out=None, relevance_out=out,
                                 catalog=catalog, archive=archive, options=options,
                                 models=(model, None), progress=progress)
        return ws.dataarray(path, "relevance", lr, decoded=False) if as_da else path


def roundtrip(
    target: Source,
    reference: Source | Sequence[Source] | None = None,
    *,
    lr_out: PathLike | None = None,
    hr_out: PathLike | None = None,
    catalog: CatalogLike | None = None,
    archive: PathLike | None = None,
    options: tuple[OnboardOptions, GroundOptions] | None = None,
    relevance_out: PathLike | None = None,
    when: datetime | str | None = None,
    progress: bool | None = False,
    **keywords: Any,
) -> dict:
    """:func:`onboard` then :func:`ground`, and the error of the reconstruction.

    Args:
        target: as in :func:`onboard`.
        reference: as in :func:`onboard`.
        lr_out: the LR product (may be None when ``target`` is a DataArray).
        hr_out: the HR GeoTIFF (may be None when ``target`` is a DataArray); its folder is
            created when missing.
        catalog: as in :func:`onboard`.
        archive: as in :func:`onboard`.
        options: ``(OnboardOptions, GroundOptions)``; the ground uses the on-board tiling.
        relevance_out: also write the relevance map.
        when: as in :func:`onboard`.
        progress: progress bars.
        **keywords: the first releases' option keywords (deprecated).

    Returns:
        The paths (DataArrays when ``target`` is one) and metrics: LR size in bytes, bits per
        HR pixel, model, references, fallback tiles, and the reconstruction error (RMSE in DN,
        PSNR in dB over the model's DN scale, valid target pixels only).
    """
    on, gr = options or (OnboardOptions(), GroundOptions())
    ground_keys = {k: keywords.pop(k) for k in ("alpha", "seed") if k in keywords}
    on, gr = onboard_options(on, **keywords), ground_options(gr, **ground_keys)
    single = reference is None or isinstance(reference, str | os.PathLike) or is_dataarray(
        reference) or is_stac_item(reference)
    sources = [target, *([reference] if single else reference)]
    guard_outputs([lr_out, hr_out, relevance_out],  # files only, not DataArrays or Items
                  [s for s in sources if isinstance(s, str | os.PathLike)])
    for p in (lr_out, hr_out, relevance_out):
        if p is not None:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
    with Workspace() as ws:
        if hr_out is not None:
            check_output(hr_out)
        done = _onboard(ws, target, reference, lr_out, catalog, archive, on, when, progress)
        lr, as_da = done.path, done.as_da
        if hr_out is None and not as_da:
            raise InputError("roundtrip: hr_out (the HR GeoTIFF to write) is required")
        hr, _, _ = _ground(ws, lr, None if catalog is not None else reference,
                           out=hr_out if hr_out is not None else ws.output("hr.tif", target),
                           relevance_out=relevance_out, catalog=catalog, archive=archive,
                           options=replace(gr, cog=on.cog, reference_masks=gr.reference_masks
                                           or on.reference_masks),
                           models=(done.model, done.fallback), progress=progress)
        summary = describe_lr(lr)
        if done.layered is not None:
            summary["search"] = describe(done.layered)
        summary.update(reconstruction_error(done.target, hr, summary["scale"],
                                            summary["offset"]))
        summary["hr"] = str(hr)
        if relevance_out is not None:
            summary["relevance"] = str(relevance_out)
        if as_da:
            summary["lr"] = ws.dataarray(lr, "lr", target)
            summary["hr"] = ws.dataarray(hr, "hr", target)
        return summary

