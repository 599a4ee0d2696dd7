"""The references of a job as one value: :class:`Reference` and :class:`ReferenceSet`.

A reference keeps one form from where it is chosen (given files, a catalog, the ids recorded in a
product) to where it is recorded in the LR tags and checked on the ground: its id (the catalog
record id, or the file stem for a file given directly), its file, its content identity and a
label for messages.

**Identity rule**: a reference is identified by its content
(:func:`~georefscale.raster.io.content_identity`: grid, data types, nodata, decoded pixels and
validity masks), the same way for files and DataArrays, so an archive may re-encode its holdings
(compression, tiling, COG, tags) without orphaning the products made with them, while a single
changed pixel makes a different reference. Products of earlier versions recorded the SHA-256 of
the reference file's bytes (tag ``REFERENCE_SHA256``); they stay readable: such a record is
checked against the file's bytes, as it was made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from rasterio.io import DatasetReader

from georefscale.errors import InputError, NoCandidateError, ReferenceMismatchError
from georefscale.raster.io import (
    IDENTITY_PREFIX,
    content_identity,
    is_url,
    open_raster,
    sha256_file,
)
from georefscale.raster.refmask import MaskRecord, MaskSource, masked_raster, resolve_mask

if TYPE_CHECKING:
    from georefscale.catalog import Catalog, Record
    from georefscale.product import LRInfo

__all__ = ["Reference", "ReferenceSet", "as_catalog", "record_mask"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Reference:
    """One reference raster as used.

    Attributes:
        id: the id recorded in the LR tags (catalog record id, or the file stem).
        path: the GeoTIFF read: a local file (a temporary one for a DataArray) or a URL.
        identity: the content identity recorded in the LR tags.
        label: how messages name it.
        item: for a catalog record whose bands are separate files (a STAC Item with one asset
            per band), that Item as a dict: the reference is read by stacking its band assets
            (:func:`~georefscale.stac.item_raster`), ``path`` is then its first band's file.
        mask_source: the mask asset of its catalog record or STAC Item (None: none).
        mask: the mask applied (:meth:`ReferenceSet.masked`; ``path`` then reads the reference
            with that mask as its GDAL mask, ``identity`` stays the unmasked content's).
    """

    id: str
    path: Path | str
    identity: str
    label: str
    item: dict | None = None
    mask_source: MaskSource | None = None
    mask: MaskRecord | None = None

    @classmethod
    def from_file(cls, path: PathLike, id: str | None = None,
                  read: PathLike | None = None) -> Reference:
        """A reference file given directly (id: its stem unless given).

        Args:
            path: the file or URL given.
            id: the id to record (default: the file's stem).
            read: what is read instead of ``path``: its bands as the model takes them (a VRT,
                see :func:`~georefscale.bandmap.adapt`); identified by its content. None:
                ``path`` itself.

        Raises:
            InputError: the file does not exist.
        """
        if is_url(path):  # a remote raster: identified by its content like any other
            stem = PurePosixPath(urlparse(str(path)).path).stem
            src = read or str(path)
            return cls(id or stem, src, identity_of(src), str(path))
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: reference file does not exist")
        if not p.is_file() or p.is_char_device() or p.is_block_device():
            raise InputError(f"{p}: reference is not a regular file")
        src = read or p
        return cls(id or p.stem, src, identity_of(src), str(p))

    @classmethod
    def from_record(cls, rec: Record, catalog: Catalog, *, check_sha: bool = True) -> Reference:
        """A catalog record as a reference: its id, its file (which must exist) and, with
        ``check_sha``, the record's checksum verified against the file. A record whose bands are
        separate files keeps them as a STAC Item (``item``); its identity is that of the
        stacked bands, known once they are stacked for a model (``identity`` empty until then).

        Raises:
            InputError: the file is missing.
            ReferenceMismatchError: the file changed since the catalog was built.
        """
        source = record_mask(rec, catalog_name(catalog))
        if any(b.href for b in rec.bands):  # one file per band: read by stacking them
            item = rec.to_item().to_dict()
            return cls(rec.id, rec.href, "", f"{rec.id} of {catalog_name(catalog)}", item,
                       source)
        if is_url(rec.href):  # remote: the catalog's byte checksum cannot be checked cheaply
            return cls(rec.id, rec.href, identity_of(rec.href), rec.href, mask_source=source)
        path = Path(rec.href)
        if not path.is_file():
            raise InputError(
                f"{path}: reference {rec.id} of {catalog_name(catalog)} does not exist (wrong "
                "archive root? pass archive= / --archive)"
            )
        sha = sha256_file(path)
        if check_sha and rec.sha256 and sha != rec.sha256:
            raise ReferenceMismatchError(
                f"{path}: SHA-256 {sha[:16]}... differs from the catalog record {rec.id} "
                f"({rec.sha256[:16]}...): the file changed since {catalog_name(catalog)} was "
                "built"
            )
        return cls(rec.id, path, identity_of(path), str(path), mask_source=source)


@dataclass(frozen=True)
class ReferenceSet:
    """The references of one job, in mosaic order (empty: no reference)."""

    references: tuple[Reference, ...] = ()

    def __len__(self) -> int:
        return len(self.references)

    def __iter__(self) -> Iterator[Reference]:
        return iter(self.references)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.references)

    @property
    def identity(self) -> tuple[str, ...]:
        return tuple(r.identity for r in self.references)

    @property
    def masks(self) -> tuple[MaskRecord | None, ...]:
        """The mask applied to each reference, or () when none has one."""
        masks = tuple(r.mask for r in self.references)
        return masks if any(masks) else ()

    def masked(self, files: Sequence[PathLike], rule: str, scratch: Callable[[str], Path], *,
               recorded: tuple[MaskRecord | None, ...] | None = None,
               product: str = "LR product") -> ReferenceSet:
        """These references with their masks applied (:mod:`georefscale.raster.refmask`).

        On board (``recorded`` None) a reference's mask is the file given for it, else its
        mask asset (``mask_source``); references without either stay as they are. On the
        ground (``recorded``: the product's masks) each reference gets the mask recorded for it,
        read from the file given (with the recorded rule) or else its mask asset, and that mask
        must be the recorded one.

        Args:
            files: one mask raster per reference, in order, or none.
            rule: the rule of ``files`` on board (:data:`~georefscale.options.MASK_RULES`).
            scratch: ``scratch(name)`` -> a fresh temporary path (resolved masks and VRTs).
            recorded: the product's masks (empty: made without masks), or None on board.
            product: the product, for messages.

        Returns:
            The references, each masked one read through a VRT with the mask as its GDAL mask.

        Raises:
            InputError: another number of files than references; on the ground a mask missing,
                given for a reference made without one, or differing from the recorded one
                (naming the mask file); any mask that cannot be read onto its reference.
        """
        if files and len(files) != len(self):
            raise InputError(f"{len(files)} reference mask(s) given for {len(self)} "
                             "reference(s): give one per reference, in their order")
        out = []
        for i, ref in enumerate(self):
            want = recorded[i] if recorded else None
            if files:
                if recorded is not None and want is None:
                    raise InputError(f"{files[i]}: {product} was made without a mask for "
                                     f"reference {ref.id}; give no reference mask")
                source = MaskSource(str(files[i]), want.rule if want else rule, "file",
                                    str(files[i]))
            else:
                source = ref.mask_source if recorded is None or want is not None else None
            if want is not None and source is None:
                raise InputError(
                    f"{ref.label}: {product} was made with a {want.rule} mask ({want.source}) "
                    f"for reference {ref.id}; give it (reference_masks / --reference-mask)")
            if source is None:
                out.append(ref)
                continue
            vrt, mask = _apply(ref, source, scratch)
            if want is not None and mask.identity != want.identity:
                raise InputError(
                    f"{source.label}: mask {mask.identity[:20]}... of reference {ref.id} "
                    f"differs from the one recorded in {product} ({want.identity[:20]}...)")
            out.append(replace(ref, path=vrt, mask=mask))
        return ReferenceSet(tuple(out))

    @classmethod
    def from_files(cls, paths: Sequence[PathLike]) -> ReferenceSet:
        """References given as files (ids: their stems)."""
        return cls(tuple(Reference.from_file(p) for p in paths))

    @classmethod
    def from_catalog(
        cls,
        catalog: Catalog,
        target: PathLike | Any,
        *,
        target_name: str | None = None,
        band_count: int | None = None,
        when: datetime | str | None = None,
    ) -> ReferenceSet:
        """The references the catalog picks for ``target``: the best earlier record covering
        its footprint, or a covering mosaic (``Catalog.references_for(target, time="before")``);
        each file is checked against the catalog's SHA-256.

        Args:
            catalog: the catalog.
            target: the target GeoTIFF or STAC Item (``Catalog.references_for``).
            target_name: how messages name the target (default: its path).
            band_count: only records with this many bands.
            when: acquisition time of the target (default: from its tags or name).

        Raises:
            NoCandidateError: nothing qualifies.
        """
        name = target_name or str(target)
        try:
            found = catalog.references_for(target, time="before", when=when,
                                           band_count=band_count)
        except NoCandidateError as exc:
            raise NoCandidateError(
                f"{name}: no usable reference in {catalog_name(catalog)} ({exc}); use "
                "allow_noref=True (CLI: --allow-noref) to downscale with the no-reference model"
            ) from exc
        return cls(tuple(Reference.from_record(rec, catalog) for rec in found.references))

    @classmethod
    def by_ids(cls, catalog: Catalog, info: LRInfo, product: str) -> ReferenceSet:
        """The references recorded in a product, found in ``catalog`` by id.

        Raises:
            InputError: a recorded id is not in the catalog, or its file is missing.
        """
        refs = []
        for rid in info.reference_ids:
            if rid not in catalog:
                raise InputError(
                    f"{product}: reference {rid} recorded in the LR product is not in "
                    f"{catalog_name(catalog)}"
                )
            refs.append(Reference.from_record(catalog.get(rid), catalog, check_sha=False))
        return cls(tuple(refs))

    def verify(self, info: LRInfo, product: PathLike) -> None:
        """Check that these are the references recorded in ``info``, in count and identity
        (a legacy byte SHA-256 record against the file's bytes).

        Raises:
            ReferenceMismatchError: another count or another reference.
        """
        if len(self) != len(info.reference_identity):
            want = ", ".join(info.reference_ids) or "none"
            raise ReferenceMismatchError(
                f"{product}: made with {len(info.reference_identity)} reference(s) ({want}), "
                f"got {len(self)}"
            )
        for ref, rid, want in zip(self, info.reference_ids, info.reference_identity,
                                  strict=True):
            if want.startswith(IDENTITY_PREFIX):
                got = ref.identity
            elif is_url(ref.path):
                raise ReferenceMismatchError(
                    f"{ref.label}: {product} records the reference by the SHA-256 of its file "
                    "(an earlier version); give the reference as a local file")
            else:
                got = sha256_file(ref.path)
            if got != want:
                raise ReferenceMismatchError(
                    f"{ref.label}: content {got[:20]}... differs from reference {rid} "
                    f"({want[:20]}...) recorded in {product}"
                )

    @contextmanager
    def open(self) -> Iterator[list[DatasetReader]]:
        """The open datasets, in order; all are closed on exit."""
        with ExitStack() as stack:
            yield [stack.enter_context(open_raster(r.path, "reference")) for r in self]


def _apply(ref: Reference, source: MaskSource, scratch: Callable[[str], Path]
           ) -> tuple[Path, MaskRecord]:
    """A VRT reading ``ref`` with the mask ``source`` as its GDAL mask, and that mask."""
    mask_file = scratch(f"{ref.id[:60]}-mask.tif".replace("/", "_"))
    with open_raster(ref.path, "reference") as ds:
        identity = resolve_mask(source.href, source.rule, ds, mask_file, source.label,
                                ref.label)
    vrt = masked_raster(ref.path, mask_file, scratch(f"{ref.id[:60]}-masked.vrt"
                                                     .replace("/", "_")))
    return vrt, MaskRecord(source.source, source.rule, identity)


def record_mask(rec: Record, where: str) -> MaskSource | None:
    """A catalog record's mask asset as read on board (``onboard --catalog``, ``archive``).

    Args:
        rec: the record (its ``mask_href`` and ``mask_rule``, as catalogued: untrusted; the rule
            is checked, and the href opened as a raster, when the mask is read).
        where: its catalog, for messages.

    Returns:
        The mask, named by its href, its record and ``where``; None when the record has none.
    """
    if rec.mask_href is None:
        return None
    return MaskSource(rec.mask_href, rec.mask_rule or "nonzero", "asset",
                      f"{rec.mask_href} (mask asset of {rec.id} in {where})")


def identity_of(path: PathLike) -> str:
    """The content identity of a raster file (see the module docstring)."""
    with open_raster(path, "reference") as ds:
        return content_identity(ds)


def catalog_name(catalog: Catalog) -> str:
    """How messages name a catalog: its file, or "catalog"."""
    return str(catalog.path) if getattr(catalog, "path", None) is not None else "catalog"


def as_catalog(catalog: Catalog | PathLike, archive: PathLike | None = None) -> Catalog:
    """A :class:`~georefscale.catalog.Catalog` from a Catalog or the path of its parquet.

    Args:
        catalog: a Catalog, or the path of its stac-geoparquet file.
        archive: root of the catalog's hrefs (default: the one recorded in the catalog).

    Raises:
        InputError: the file does not exist.
    """
    from georefscale.catalog import Catalog

    if isinstance(catalog, Catalog):
        return catalog
    path = Path(catalog)
    if not path.is_file():
        raise InputError(f"{path}: catalog file does not exist")
    return Catalog.load(path, archive=archive)
