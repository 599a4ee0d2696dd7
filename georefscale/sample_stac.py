"""A STAC catalog of the sample Sentinel-2 cities, served on 127.0.0.1 with HTTP Range support.

What a Sentinel-2 STAC API hands out, made offline from the OSCD stacks in the sample archive:
one Item per scene whose bands are separate single-band Cloud-Optimized GeoTIFF assets
(``blue``, ``green``, ``red``, ``nir`` named by asset-level ``eo:bands``, or only by their asset
keys), with asset-level ``proj:`` fields, a 20 m ``rededge1`` asset on another grid and a
thumbnail (both of which a reader must leave out); a static catalog (``catalog.json`` ->
``collection.json`` -> ``items/<id>.json``) and the same Items as an ItemCollection
(``search.json``, what ``stac-client search --save`` writes). The tests and the STAC tutorial
(``docs/stac-tutorial.md``) use it; from the shell::

    python -m georefscale.sample_stac -o stac-demo --port 8765

builds the catalog from ``$GEOREFSCALE_DATA/oscd`` (default ``../shared/data/oscd``) and serves
it until interrupted.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import rasterio
import rasterio.shutil
from rasterio.windows import Window

__all__ = ["BANDS", "RangeHandler", "band_item", "serve", "write_catalog"]

BANDS = [("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir")]
"""The OSCD stacks' bands in file order: (Sentinel-2 name, STAC common name)."""

TEST_CITIES = ["brasilia", "montpellier", "norcia", "rio", "saclay_w"]
"""The OSCD test cities in the sample archive (the shipped models never saw them)."""


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support (206), as object stores and
    CDNs answer; ``ranges = False`` answers every request with the whole file (200)."""

    ranges = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (quiet)
        """Log nothing."""

    def send_head(self) -> BinaryIO | None:
        """Headers of a 206 partial answer for a ``Range`` request on a file; otherwise the
        plain answer."""
        path = Path(self.translate_path(self.path))
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip()) if rng else None
        if not self.ranges or m is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        f = open(path, "rb")  # noqa: SIM115  (closed by the caller after copyfile)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:
        """Send the requested range (or the whole file)."""
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        outputfile.write(source.read(remaining))


def serve(root: str | os.PathLike[str], *, ranges: bool = True,
          port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve the folder ``root`` on 127.0.0.1 in a daemon thread.

    GDAL in the same process must not list the server's folders (a plain ``rasterio.open`` of
    one of its URLs hangs there): georefscale's readers do not; elsewhere set
    ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``.

    Args:
        root: the folder to serve.
        ranges: answer ``Range`` requests with 206 (False: a server without Range support).
        port: the port (0: a free one).

    Returns:
        The server (stop it with ``server.shutdown()``) and its base URL
        ``http://127.0.0.1:PORT``.
    """
    handler = functools.partial(type("Handler", (RangeHandler,), {"ranges": ranges}),
                                directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _centre(width: int, height: int, crop: int | None) -> Window:
    """The centred ``crop`` x ``crop`` window (the whole raster when None or larger)."""
    w, h = min(crop or width, width), min(crop or height, height)
    return Window((width - w) // 2, (height - h) // 2, w, h)


def band_item(src: str | os.PathLike[str], folder: str | os.PathLike[str], *,
              named_by: str = "eo:bands", crop: int | None = None) -> dict:
    """A STAC Item for the OSCD stack ``src`` with one single-band COG asset per band.

    The band files ``<stem>_<B0x>.tif`` are written to ``folder`` and the asset hrefs are their
    names (relative to ``folder``). Each asset has ``proj:`` fields and ``raster:bands``; a
    ``rededge1`` (B05) asset on a 20 m grid and a ``thumbnail`` are there too, as in Earth
    Search Items, for readers to leave out.

    Args:
        src: an OSCD stack (B02 B03 B04 B08, tag ``ACQUISITION_DATE``).
        folder: where the band files go (created).
        named_by: ``"eo:bands"`` (assets ``blue``... with asset-level ``eo:bands``) or ``"key"``
            (no ``eo:bands``; assets named ``blue``, ``green``, ``red``, ``B08``).
        crop: keep only a centred ``crop`` x ``crop`` window (None: the whole scene).

    Returns:
        The Item as a dict (id: the stack's stem; no links).
    """
    src, folder = Path(src), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src) as ds:
        win = _centre(ds.width, ds.height, crop)
        transform = ds.window_transform(win)
        profile = {**ds.profile, "count": 1, "driver": "GTiff", "width": win.width,
                   "height": win.height, "transform": transform}
        when = ds.tags()["ACQUISITION_DATE"]  # YYYY-MM-DD
        west, south, east, north = ds.window_bounds(win)
        proj = {"proj:code": "EPSG:4326", "proj:transform": list(transform)[:6],
                "proj:shape": [win.height, win.width]}
        assets: dict[str, dict] = {}
        for i, (name, common) in enumerate(BANDS, start=1):
            tif = folder / f"{src.stem}_{name}.tif"
            plain = tif.with_suffix(".plain.tif")
            with rasterio.open(plain, "w", **profile) as out:
                out.write(ds.read(i, window=win), 1)
            rasterio.shutil.copy(plain, tif, driver="COG")
            plain.unlink()
            asset = {"href": tif.name, "type": "image/tiff; application=geotiff; "
                     "profile=cloud-optimized", "roles": ["data"], **proj,
                     "raster:bands": [{"data_type": "uint16", "scale": 1.0}]}
            if named_by == "eo:bands":
                assets[common] = {**asset, "eo:bands": [{"name": name, "common_name": common}]}
            else:
                assets[name if common == "nir" else common] = asset
    coarse = list(transform)[:6]
    coarse[0], coarse[4] = coarse[0] * 2, coarse[4] * 2
    assets["rededge1"] = {"href": f"{src.stem}_B02.tif", "roles": ["data"],
                          "proj:code": "EPSG:4326", "proj:transform": coarse,
                          "proj:shape": [win.height // 2, win.width // 2],
                          "eo:bands": [{"name": "B05", "common_name": "rededge"}]}
    assets["thumbnail"] = {"href": f"{src.stem}_B02.tif", "roles": ["thumbnail"]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": src.stem,
            "stac_extensions": [
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                             [east, north], [west, north],
                                                             [west, south]]]},
            "bbox": [west, south, east, north],
            "properties": {"datetime": f"{when[:10]}T00:00:00Z", "platform": "sentinel-2a",
                           "gsd": 10},
            "assets": assets, "links": []}


def write_catalog(sources: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str], *,
                  key_named: Iterable[str] = (), crop: int | None = None) -> Path:
    """A static STAC catalog of band-asset Items (:func:`band_item`) for the OSCD stacks
    ``sources`` under ``root``: ``catalog.json`` -> ``collection.json`` (id ``oscd-s2``) ->
    ``items/<id>.json`` with the band files beside them, and ``search.json``, the same Items as
    an ItemCollection with hrefs relative to ``root``.

    Args:
        sources: OSCD stacks.
        root: the catalog folder (created).
        key_named: stems whose bands are named only by their asset keys.
        crop: a centred ``crop`` x ``crop`` window of each scene (None: whole scenes).

    Returns:
        The path of ``catalog.json``.
    """
    root = Path(root)
    items_dir = root / "items"
    items_dir.mkdir(parents=True, exist_ok=True)
    key_named = set(key_named)
    items = [band_item(src, items_dir, crop=crop,
                       named_by="key" if Path(src).stem in key_named else "eo:bands")
             for src in sources]
    for item in items:
        item["collection"] = "oscd-s2"
        item["links"] = [{"rel": "collection", "href": "../collection.json"},
                         {"rel": "root", "href": "../catalog.json"}]
        (items_dir / f"{item['id']}.json").write_text(json.dumps(item, indent=1))
    (root / "collection.json").write_text(json.dumps({
        "type": "Collection", "id": "oscd-s2", "stac_version": "1.0.0",
        "description": "Sentinel-2A L1C scenes of the OSCD sample cities, one COG per band",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [[None, None]]}},
        "links": [{"rel": "root", "href": "./catalog.json"}]
        + [{"rel": "item", "href": f"items/{i['id']}.json"} for i in items]}, indent=1))
    (root / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "id": "root", "stac_version": "1.0.0",
        "description": "georefscale sample STAC catalog",
        "links": [{"rel": "root", "href": "./catalog.json"},
                  {"rel": "child", "href": "./collection.json"}]}, indent=1))
    flat = json.loads(json.dumps(items))
    for item in flat:
        item["links"] = []
        for asset in item["assets"].values():
            asset["href"] = f"items/{asset['href']}"
    (root / "search.json").write_text(json.dumps({"type": "FeatureCollection",
                                                  "features": flat}))
    return root / "catalog.json"


def _oscd_dir() -> Path:
    """The sample archive's OSCD folder: ``$GEOREFSCALE_DATA/oscd`` or ``../shared/data/oscd``."""
    data = os.environ.get("GEOREFSCALE_DATA")
    return Path(data) / "oscd" if data else Path("..") / "shared" / "data" / "oscd"


def main(argv: list[str] | None = None) -> None:
    """Build the sample catalog and serve it until interrupted (``python -m
    georefscale.sample_stac --help``)."""
    parser = argparse.ArgumentParser(prog="python -m georefscale.sample_stac",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", default="stac-demo", help="catalog folder (replaced)")
    parser.add_argument("--oscd", type=Path, default=None,
                        help="OSCD folder (default $GEOREFSCALE_DATA/oscd or ../shared/data/oscd)")
    parser.add_argument("--cities", nargs="+", default=TEST_CITIES,
                        help="OSCD cities, both dates of each (default: the five test cities)")
    parser.add_argument("--crop", type=int, default=None,
                        help="a centred CROP x CROP window of each scene")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    args = parser.parse_args(argv)
    oscd = args.oscd or _oscd_dir()
    sources = sorted(p for c in args.cities for p in oscd.glob(f"{c}_2*.tif"))
    if not sources:
        parser.error(f"no OSCD stacks for {', '.join(args.cities)} in {oscd}")
    shutil.rmtree(args.out, ignore_errors=True)
    write_catalog(sources, args.out, crop=args.crop)
    server, url = serve(args.out, port=args.port)
    print(f"{len(sources)} items in {args.out}; serving {url}/catalog.json (Ctrl-C stops)",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
