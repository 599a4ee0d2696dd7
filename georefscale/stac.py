"""STAC Items as targets and references: the band assets stacked in the model's band order.

A Sentinel-2 or NAIP user finds scenes as STAC Items whose bands are separate single-band
Cloud-Optimized GeoTIFF assets. :func:`item_raster` writes a GDAL VRT that stacks the assets a
model needs, in the model's band order, so the rest of the job reads the item like any raster
(window by window; remote assets through HTTP range requests).

Bands are found by name: the model's band names (``"B02 blue"``: a name and a common name) are
matched, case-insensitively, against each asset's ``eo:bands`` (``name``, ``common_name``) or
``raster:bands``, at asset or item level, else against the asset key. Scale and offset come
from ``raster:bands``. A band that no asset provides is an error that names it; assets that
disagree in grid or CRS are refused. Items are untrusted input: hrefs are only ever read as
rasters (a relative href is resolved against the item's own location), never executed or
written to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from xml.sax.saxutils import escape

from georefscale.errors import InputError
from georefscale.raster.io import gdal_path, is_url, open_raster

__all__ = ["is_stac_item", "item_raster", "load_item", "read_json"]

#: Largest STAC Item JSON read (bytes): an item is metadata, not data.
MAX_ITEM_BYTES = 16 * 2**20


def is_stac_item(obj: object) -> bool:
    """Whether ``obj`` is a STAC Item: a ``pystac.Item``, a dict, or a ``.json`` path / URL."""
    if type(obj).__name__ == "Item" and hasattr(obj, "to_dict"):
        return True
    if isinstance(obj, dict):
        return obj.get("type") == "Feature" and "assets" in obj
    return isinstance(obj, str | os.PathLike) and str(obj).lower().endswith(".json")


def load_item(obj: Any) -> tuple[dict, str]:
    """The Item as a dict and the location its relative hrefs resolve against.

    Raises:
        InputError: unreadable, too large, or not a STAC Item.
    """
    if isinstance(obj, dict):
        item, base = obj, ""
    elif hasattr(obj, "to_dict"):
        item, base = obj.to_dict(), obj.get_self_href() or ""
    else:
        base = str(obj)
        item = read_json(base, "STAC item")
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(
            item.get("assets"), dict):
        raise InputError(f"{base or 'item'}: not a STAC Item (a Feature with assets)")
    return item, base


def read_json(location: str | os.PathLike[str], what: str = "STAC document") -> Any:
    """A JSON document from a local file or an http(s) URL, at most :data:`MAX_ITEM_BYTES`.

    Args:
        location: the file or URL.
        what: how messages name it.

    Returns:
        The parsed JSON.

    Raises:
        InputError: unreadable, too large or not JSON (the message names ``location``).
    """
    base = str(location)
    try:
        if is_url(base):
            from urllib.request import urlopen

            with urlopen(base, timeout=30) as resp:  # noqa: S310  (http(s) only: is_url)
                text = resp.read(MAX_ITEM_BYTES + 1)
        else:
            with open(base, "rb") as f:
                text = f.read(MAX_ITEM_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{base}: {what} cannot be read ({exc})") from exc
    if len(text) > MAX_ITEM_BYTES:
        raise InputError(f"{base}: larger than {MAX_ITEM_BYTES} bytes: not a {what}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{base}: not JSON ({exc})") from exc


def _names(band: str) -> set[str]:
    """``"B02 blue"`` -> ``{"b02", "blue"}``."""
    return {p.lower() for p in band.replace("/", " ").split()}


def _asset_bands(item: dict, key: str, asset: dict) -> list[dict]:
    bands = asset.get("eo:bands") or asset.get("bands")
    if bands is None and len(item.get("properties", {}).get("eo:bands", [])) == 1:
        bands = item["properties"]["eo:bands"]
    return bands if isinstance(bands, list) else []


def _match(item: dict, band: str) -> tuple[str, dict]:
    """The (asset key, asset) providing ``band``."""
    want = _names(band)
    found = []
    for key, asset in item["assets"].items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue
        names = {key.lower()}
        for b in _asset_bands(item, key, asset):
            if isinstance(b, dict):
                names |= {str(b.get(k, "")).lower() for k in ("name", "common_name")}
        if want & names:
            found.append((key, asset))
    if not found:
        raise InputError(f"{item.get('id', 'item')}: no asset provides band {band!r} "
                         f"(assets: {', '.join(item['assets'])})")
    return found[0]


def _href(base: str, href: str) -> str:
    if is_url(href) or Path(href).is_absolute():
        return href
    if is_url(base):
        return urljoin(base, href)
    return str(Path(base).parent / href) if base else href


def item_raster(obj: Any, bands: Sequence[str], out: Path) -> Path:
    """Write a VRT at ``out`` stacking the Item's assets for ``bands``, in that order.

    Args:
        obj: the Item (``pystac.Item``, dict, JSON path or URL).
        bands: the band names wanted (a model's, e.g. ``["B02 blue", ...]``).
        out: the VRT to write (a temporary file).

    Returns:
        ``out``.

    Raises:
        InputError: a band is missing, assets disagree in grid or CRS, or an asset is not a
            single-band raster.
    """
    item, base = load_item(obj)
    name = item.get("id", str(base) or "item")
    sources, grid, meta = [], None, []
    for band in bands:
        key, asset = _match(item, band)
        href = _href(base, asset["href"])
        with open_raster(href, f"asset {key} of {name}") as ds:
            if ds.count != 1:
                raise InputError(f"{href}: asset {key} of {name} has {ds.count} bands, not 1")
            this = (ds.crs, ds.transform, ds.width, ds.height)
            if grid is None:
                grid, dtype, nodata = this, ds.dtypes[0], ds.nodata
            elif this[0] != grid[0] or not this[1].almost_equals(grid[1]) or this[2:] != grid[2:]:
                raise InputError(f"{href}: asset {key} of {name} is not on the grid of the "
                                 "item's other band assets")
            elif ds.dtypes[0] != dtype:
                raise InputError(f"{href}: asset {key} of {name} is {ds.dtypes[0]}, the "
                                 f"others {dtype}")
        rb = asset.get("raster:bands") or [{}]
        meta.append((band, rb[0] if isinstance(rb[0], dict) else {}))
        sources.append(gdal_path(href))
    crs, transform, width, height = grid
    vrt_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32",
                "uint32": "UInt32", "int32": "Int32", "float64": "Float64"}[dtype]
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"<SRS>{escape(crs.to_wkt())}</SRS>",
             "<GeoTransform>" + ", ".join(repr(v) for v in transform.to_gdal())
             + "</GeoTransform>"]
    for i, (src, (band, rb)) in enumerate(zip(sources, meta, strict=True), start=1):
        parts.append(f'<VRTRasterBand dataType="{vrt_type}" band="{i}">')
        parts.append(f"<Description>{escape(band)}</Description>")
        if nodata is not None:
            parts.append(f"<NoDataValue>{nodata!r}</NoDataValue>")
        for tag, key in (("Scale", "scale"), ("Offset", "offset")):
            if isinstance(rb.get(key), int | float):
                parts.append(f"<{tag}>{float(rb[key])!r}</{tag}>")
        parts.append(f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(src)}'
                     "</SourceFilename><SourceBand>1</SourceBand>"
                     f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
                     f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
                     "</SimpleSource></VRTRasterBand>")
    parts.append("</VRTDataset>")
    out.write_text("\n".join(parts))
    return out
