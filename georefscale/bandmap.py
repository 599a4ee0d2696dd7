"""Inputs as a model sees them: its bands, found by name, in its order.

A model names its bands in its card (``"B02 blue"``: the Sentinel-2 band and its common name;
NAIP ``red``, ``green``, ``blue``, ``nir``), in its band order. An input may hold more bands (a
13-band L1C stack), the same ones in another order, or name none of them. Each input (target and
every reference alike) is mapped to the model's bands:

* **By name** (default): each model band is the input band whose description names it,
  case-insensitively: the whole description is one of the band's names (``"blue"``,
  ``"B02 blue"``), or one of its words is the Sentinel-2 band id (``"B2"`` = ``"B02"``,
  ``"B04 (red)"``; ``"B8A"`` is not ``"B08"``, ``"red edge"`` is not ``"red"``).
* **Given** (:attr:`~georefscale.options.OnboardOptions.bands`, CLI ``--bands``): the input band
  for each model band, in the model's order, as 1-based indexes (``2,3,4,8``) or names
  (``B02,B03,B04,B08``, matched as above). It applies to the target and its references alike.
* **By position**: an input with exactly the model's band count whose descriptions name none of
  the model's bands is taken in order, as always.

A band no description names, a band two descriptions name, or an unnamed input of another band
count is an error that says which band, or how to give ``--bands``; nothing falls back to other
bands silently.

An input that fits as it is, is read as it is (the products of such inputs do not change).
Otherwise :func:`adapt` writes a GDAL VRT holding the chosen bands in the model's order, read
window by window from the input (local or remote): a target keeps its values, dtype, nodata,
band descriptions (so the LR records which source bands it holds), scale / offset and tags; a
reference whose data convention is not the model's (:func:`~georefscale.convention.dn_convention`:
L2A offset, float reflectance) is also converted to the model's DN (float32, NaN nodata), since
references are mosaicked and normalised together.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np
from rasterio.io import DatasetReader

from georefscale.convention import dn_convention
from georefscale.errors import InputError
from georefscale.options import BandSelection
from georefscale.raster.io import gdal_path, is_url, open_raster

if TYPE_CHECKING:
    from georefscale.engine.rescaler import Rescaler

__all__ = ["adapt", "band_indexes", "describes"]

#: A Sentinel-2 band id as written in descriptions: ``B2``, ``b02``, ``B8A``.
_BAND_ID = re.compile(r"b0*(\d{1,2})(a?)")

#: GDAL's VRT data type names.
_VRT_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64"}


def _key(word: str) -> str:
    """One word of a band name, normalised: lower case, Sentinel-2 ids as ``b02`` / ``b08a``."""
    m = _BAND_ID.fullmatch(word)
    return f"b{int(m.group(1)):02d}{m.group(2)}" if m else word


def _words(text: str) -> list[str]:
    return [_key(w) for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def describes(description: str | None, name: str) -> bool:
    """Whether a band ``description`` names the model band ``name`` (see the module docstring).

    Args:
        description: an input band's description (None or "" names nothing).
        name: a model band name, e.g. ``"B02 blue"`` (any of its words may be matched).

    Returns:
        True when the whole description is one of ``name``'s words, or one of its words is a
        Sentinel-2 band id among them.
    """
    words = _words(description or "")
    aliases = set(_words(name))
    if not words:
        return False
    return " ".join(words) in aliases or any(
        w in aliases for w in words if _BAND_ID.fullmatch(w))


def _fits(model: Rescaler, count: int, dtype: str) -> str:
    """", models that fit: ..." for messages: the shipped models for ``count`` x ``dtype``."""
    from georefscale.engine.cards import models_for

    fits = models_for(count, dtype, model.factor)
    return f"; shipped models for {count} bands of {dtype} at x{model.factor}: " + (
        ", ".join(fits) or "none")


def band_indexes(ds: DatasetReader, model: Rescaler, names: Sequence[str] | None,
                 selection: BandSelection | None, label: str) -> tuple[int, ...]:
    """The 1-based bands of ``ds`` that feed the model's bands, in the model's order.

    Args:
        ds: the open input.
        model: the rescaler (its band count, dtype and factor, for messages).
        names: the model's band names in its order (None: the model names none; bands by
            position).
        selection: the bands given (``--bands``), or None.
        label: the input, for messages.

    Returns:
        One index per model band (all of ``ds``'s bands when the model takes any count).

    Raises:
        InputError: a given index beyond the input, a band no description (or two) names, or an
            unnamed input of another band count; each names the band or says how to give
            ``--bands``, and the shipped models that fit the input as it is.
    """
    count, descs = ds.count, list(ds.descriptions)
    n = len(names) if names else model.bands
    if selection is not None:
        if n is not None and len(selection) != n:
            raise InputError(f"{label}: --bands gives {len(selection)} bands, model "
                             f"{model.name} takes {n}" + (f" ({', '.join(names)})" if names
                                                          else ""))
        if isinstance(selection[0], int):
            beyond = [i for i in selection if i > count]
            if beyond:
                raise InputError(f"{label}: has {count} bands, --bands asks for band "
                                 f"{beyond[0]}")
            return tuple(int(i) for i in selection)
        return tuple(_by_name(descs, str(s), label, "--bands") for s in selection)
    if n is None:
        return tuple(range(1, count + 1))
    if not names or not any(describes(d, nm) for d in descs for nm in names):
        if count == n:
            return tuple(range(1, count + 1))
        wanted = f" ({', '.join(names)})" if names else ""
        raise InputError(
            f"{label}: has {count} bands, model {model.name} takes {n}{wanted} and the band "
            "descriptions name none of them; give the input's band for each model band, in the "
            f"model's order, with --bands (1-based indexes, e.g. --bands "
            f"{','.join(str(i) for i in range(1, n + 1))}; API: OnboardOptions(bands=...))"
            + _fits(model, count, ds.dtypes[0]))
    return tuple(_by_name(descs, nm, label, f"model {model.name}") for nm in names)


def _by_name(descs: Sequence[str | None], name: str, label: str, who: str) -> int:
    """The 1-based band whose description names ``name``."""
    hits = [i for i, d in enumerate(descs, start=1) if describes(d, name)]
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(f"{i}: {d or '(none)'}" for i, d in enumerate(descs, start=1))
    if not hits:
        raise InputError(f"{label}: no band is described as {name!r}, which {who} needs (band "
                         f"descriptions {listed}); give the bands with --bands")
    raise InputError(f"{label}: bands {' and '.join(map(str, hits))} are both described as "
                     f"{name!r} (band descriptions {listed}); give the bands with --bands")


def adapt(path: str | os.PathLike, role: str, model: Rescaler, names: Sequence[str] | None,
          selection: BandSelection | None, scratch: Callable[[str], Path], *,
          convert: bool, label: str | None = None) -> Path | str:
    """``path`` as the model reads it: itself when it fits, else a VRT (see the module
    docstring) written at ``scratch(name)``.

    Args:
        path: a local raster or a URL.
        role: "target" or "reference", for messages.
        model: the rescaler.
        names: the model's band names (None: by position).
        selection: the bands given (``--bands``), or None.
        scratch: a fresh temporary path for a file name.
        convert: convert values to the model's DN where the input's convention differs (for
            references); a target keeps its values (its convention goes into the LR tags).
        label: the input, for messages (default: ``path``).

    Returns:
        ``path``, or the VRT.

    Raises:
        InputError: the bands or the data convention do not fit (see :func:`band_indexes` and
            :func:`~georefscale.convention.dn_convention`).
    """
    label = label or str(path)
    with open_raster(path, role) as ds:
        idx = band_indexes(ds, model, names, selection, label)
        scale, offset = dn_convention(ds, model, label, idx)
        kind = np.dtype(ds.dtypes[0]).kind
        ratio = add = None
        if convert and model.scale is not None and (
                kind == "f" or scale != float(model.scale) or offset != 0):
            ratio = float(model.scale) / scale
            add = offset * ratio
        if idx == tuple(range(1, ds.count + 1)) and ratio is None:
            return path
        xml = _vrt(ds, str(path), idx, names, ratio, add)
    stem = Path(str(path).rstrip("/")).stem or role
    out = scratch(f"{stem[:80]}.{role}.vrt")
    out.write_text(xml)
    return out


def _num(v: float) -> str:
    return "nan" if math.isnan(v) else repr(float(v))


def _metadata(tags: dict[str, str]) -> str:
    items = "".join(f'<MDI key="{escape(k, {chr(34): "&quot;"})}">{escape(v)}</MDI>'
                    for k, v in tags.items())
    return f"<Metadata>{items}</Metadata>" if items else ""


def _vrt(ds: DatasetReader, path: str, idx: Sequence[int], names: Sequence[str] | None,
         ratio: float | None, add: float | None) -> str:
    """The VRT of bands ``idx`` of ``ds``: values as they are, or ``value * ratio + add`` as
    float32 with NaN nodata."""
    src = escape(gdal_path(path) if is_url(path) else str(Path(path).resolve()))
    parts = [f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">',
             f"<SRS>{escape(ds.crs.to_wkt())}</SRS>",
             "<GeoTransform>" + ", ".join(repr(v) for v in ds.transform.to_gdal())
             + "</GeoTransform>", _metadata(ds.tags())]
    for out_band, i in enumerate(idx, start=1):
        desc = ds.descriptions[i - 1] or (names[out_band - 1] if names else "")
        dtype = "Float32" if ratio is not None else _VRT_TYPES[ds.dtypes[i - 1]]
        parts.append(f'<VRTRasterBand dataType="{dtype}" band="{out_band}">')
        parts.append(f"<Description>{escape(desc)}</Description>")
        parts.append(_metadata(ds.tags(i)))
        parts.append(f"<ColorInterp>{ds.colorinterp[i - 1].name.capitalize()}</ColorInterp>")
        source = (f'<SourceFilename relativeToVRT="0">{src}</SourceFilename>'
                  f"<SourceBand>{i}</SourceBand>")
        if ratio is not None:
            parts.append("<NoDataValue>nan</NoDataValue>")
            nodata = "" if ds.nodata is None else f"<NODATA>{_num(ds.nodata)}</NODATA>"
            parts.append(f"<ComplexSource>{source}<ScaleOffset>{add!r}</ScaleOffset>"
                         f"<ScaleRatio>{ratio!r}</ScaleRatio>{nodata}</ComplexSource>")
        else:
            if ds.nodata is not None:
                parts.append(f"<NoDataValue>{_num(ds.nodata)}</NoDataValue>")
            if ds.units[i - 1]:
                parts.append(f"<UnitType>{escape(ds.units[i - 1])}</UnitType>")
            if ds.offsets[i - 1] != 0.0:
                parts.append(f"<Offset>{ds.offsets[i - 1]!r}</Offset>")
            if ds.scales[i - 1] != 1.0:
                parts.append(f"<Scale>{ds.scales[i - 1]!r}</Scale>")
            parts.append(f"<SimpleSource>{source}</SimpleSource>")
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "\n".join(p for p in parts if p)
