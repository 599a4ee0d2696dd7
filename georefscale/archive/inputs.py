"""A scene's inputs as its model reads them, staged in the scene's staging folder.

An archive task opens its target and each reference as one raster. A record whose bands are
separate files (STAC band assets) is first stacked into a VRT in the model's band order
(:func:`~georefscale.stac.item_raster`, as ``onboard`` does for a STAC Item), and every input
is then read as the model takes it (:func:`~georefscale.bandmap.adapt`: the bands by name or as
given with ``OnboardOptions.bands``, a reference converted to the model's DN where its
convention differs), exactly as ``onboard`` reads a single file. Inputs that fit as they are
are read unchanged. A reference with a mask asset (:mod:`georefscale.archive.masks`) is then
read with that mask as its GDAL mask (:meth:`~georefscale.references.ReferenceSet.masked`),
as ``onboard --catalog`` reads the same record. The VRTs (and resolved masks) live in a hidden
folder of the staging folder (never beside the inputs) and are removed before the scene is
published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from georefscale.archive.plan import Input, SceneJob, folder_name
from georefscale.bandmap import adapt
from georefscale.errors import InputError
from georefscale.options import MASK_RULES, BandSelection
from georefscale.raster.io import is_url
from georefscale.references import Reference, ReferenceSet, identity_of
from georefscale.stac import item_raster

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

__all__ = ["INPUTS", "SceneInputs", "stage_inputs"]

#: The hidden folder of a staging folder holding the stacked and adapted inputs.
INPUTS = ".inputs"


@dataclass(frozen=True)
class SceneInputs:
    """What a scene's tasks read (picklable).

    Attributes:
        target: the target raster read (its file, or a VRT in the staging folder).
        refs: the references as read, each identified by the content read (a masked one
            read through a VRT with its mask, which it records).
    """

    target: Path | str
    refs: ReferenceSet


def stage_inputs(job: SceneJob, model: Rescaler, staging: Path) -> SceneInputs:
    """Check ``job``'s inputs against the catalog and stage them for ``model``.

    Args:
        job: the scene.
        model: the scene's rescaler (its band names, count and DN convention).
        staging: the scene's staging folder; the VRTs go to its :data:`INPUTS` folder.

    Returns:
        The target and references to read.

    Raises:
        InputError: a file is missing or changed, a record's band files miss one of the bands
            needed or disagree in grid, CRS or dtype, the bands do not fit the model, or a
            reference's mask asset cannot be read onto it (each message names the record or
            file; a mask's names the mask and its record).
    """
    from georefscale.engine.cards import band_names

    folder = staging / INPUTS
    folder.mkdir(exist_ok=True)
    counter = iter(range(1 << 30))

    def scratch(name: str) -> Path:
        return folder / f"{next(counter)}_{name}"

    names = band_names(model.name)
    job.target.check("target")
    for r in job.references:
        r.check("reference")
    target = _read_as(job.target, "target", model, names, job.onboard.bands, scratch)
    refs = []
    for r in job.references:
        read = _read_as(r, "reference", model, names, job.onboard.bands, scratch)
        source = r.mask.source if r.mask is not None else None
        refs.append(Reference(r.id, read, identity_of(read), r.href, mask_source=source))
    return SceneInputs(target, ReferenceSet(tuple(refs)).masked((), MASK_RULES[0], scratch))


def _read_as(inp: Input, role: str, model: Rescaler, names: tuple[str, ...] | None,
             selection: BandSelection | None, scratch: Callable[[str], Path]) -> Path | str:
    """One input as ``model`` reads it: its file or its stacked band files, adapted."""
    label = f"{role} {inp.id} ({inp.href})"
    path: Path | str = inp.href if is_url(inp.href) else Path(inp.href)
    if inp.bands:
        stack = _stacked_bands(inp, model, names, selection)
        path = item_raster(inp.item(), stack, scratch(f"{folder_name(inp.id)}.vrt"))
        # the VRT holds the chosen bands in the model's order: only the convention is adapted
        selection = tuple(range(1, len(stack) + 1)) if selection is not None else None
    return adapt(path, role, model, names, selection, scratch, convert=role != "target",
                 label=label)


def _stacked_bands(inp: Input, model: Rescaler, names: tuple[str, ...] | None,
                   selection: BandSelection | None) -> list[str]:
    """The band names to stack for a record of band files: the model's, or the selection (as
    names, or 1-based indexes into the record's bands).

    Raises:
        InputError: no band names to stack by, or an index beyond the record's bands.
    """
    if selection is None:
        if not names:
            raise InputError(f"{inp.id}: its bands are separate files and model {model.name} "
                             "names no bands to stack them by; give them with --bands")
        return list(names)
    if isinstance(selection[0], str):
        return [str(s) for s in selection]
    beyond = [i for i in selection if int(i) > len(inp.bands)]
    if beyond:
        raise InputError(f"{inp.id}: has {len(inp.bands)} band files, --bands asks for band "
                         f"{beyond[0]}")
    return [inp.bands[int(i) - 1].name for i in selection]

