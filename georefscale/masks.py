"""The target's exact nodata mask, carried in the LR product.

The target's invalid samples are those :func:`~georefscale.raster.io.read_masked` finds: equal
to its nodata value, or masked by its GDAL internal (per-dataset) mask. An LR pixel is invalid
only where all f x f target samples under it are; a block that is partly invalid becomes a valid
LR pixel. So that the HR's mask equals the target's exactly, the product records the target's
per-sample mask (tag ``GEOREFSCALE_NODATA_MASK``): rows of ``bands x width`` bits, packed,
zlib-compressed and base64-encoded, written and read a row at a time (bounded memory). Products
without invalid samples carry no mask.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from georefscale.raster.io import has_dataset_mask, read_masked

__all__ = ["MaskRows", "check_mask", "encode_mask"]

#: Target rows read at a time while encoding.
CHUNK_ROWS = 256


def _row_bytes(bands: int, width: int) -> int:
    return -(-bands * width // 8)


def encode_mask(ds: DatasetReader, name: str | None = None) -> str | None:
    """The per-sample mask of an open target (its nodata samples, or those its internal mask
    marks), encoded; None when no sample is invalid.

    Raises:
        InputError: naming ``name``, the target has both a nodata value and an internal mask.
    """
    if ds.nodata is None and not has_dataset_mask(ds, name):
        return None
    comp = zlib.compressobj(9)
    parts, any_masked = [], False
    for r0 in range(0, ds.height, CHUNK_ROWS):
        n = min(CHUNK_ROWS, ds.height - r0)
        m = read_masked(ds, Window(0, r0, ds.width, n), name=name)[1]
        any_masked |= bool(m.any())
        rows = np.packbits(m.transpose(1, 0, 2).reshape(n, -1), axis=1)
        parts.append(comp.compress(rows.tobytes()))
    if not any_masked:
        return None
    parts.append(comp.flush())
    return base64.b64encode(b"".join(parts)).decode("ascii")


def check_mask(text: str, bands: int, width: int, height: int) -> None:
    """Check that ``text`` decodes to exactly a ``bands x height x width`` mask, decompressing in
    bounded pieces (a crafted tag can neither allocate without bound nor fail mid-write).

    Raises:
        ValueError: it does not.
    """
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"NODATA_MASK is not base64 ({exc})") from None
    want = height * _row_bytes(bands, width)
    dec = zlib.decompressobj()
    got = 0
    try:
        chunk = dec.decompress(data, 1 << 20)
        while chunk:
            got += len(chunk)
            if got > want:
                break
            chunk = dec.decompress(dec.unconsumed_tail, 1 << 20)
    except zlib.error as exc:
        raise ValueError(f"NODATA_MASK is not a compressed mask ({exc})") from None
    if got != want or not dec.eof:
        raise ValueError(f"NODATA_MASK does not hold a {bands} x {height} x {width} mask")


class MaskRows:
    """Rows of a recorded mask, decoded in increasing order as a writer asks for them.

    Args:
        text: the tag's value.
        bands: band count.
        width: target width (pixels).
        height: target height (pixels).

    Raises:
        ValueError: the text is not a mask of that size (checked as it is decoded: a crafted
            tag can never make it allocate more than the target's mask).
    """

    def __init__(self, text: str, bands: int, width: int, height: int) -> None:
        self._data = base64.b64decode(text.encode("ascii"), validate=True)
        self.bands, self.width, self.height = bands, width, height
        self._row_bytes = _row_bytes(bands, width)
        self._next = 0
        self._rows = self._decode()

    def _decode(self) -> Iterator[np.ndarray]:
        dec = zlib.decompressobj()
        buf = b""
        data = self._data
        for _ in range(self.height):
            while len(buf) < self._row_bytes:
                if not data and not dec.unconsumed_tail:
                    raise ValueError("NODATA_MASK is shorter than the target")
                chunk = dec.unconsumed_tail or data[:65536]
                if not dec.unconsumed_tail:
                    data = data[65536:]
                buf += dec.decompress(chunk, self._row_bytes * 64)
            row, buf = buf[:self._row_bytes], buf[self._row_bytes:]
            bits = np.unpackbits(np.frombuffer(row, np.uint8))[: self.bands * self.width]
            yield bits.reshape(self.bands, self.width).astype(bool)

    def rows(self, start: int, n: int) -> np.ndarray:
        """Mask rows ``start`` .. ``start + n`` as bool ``(bands, n, width)``; rows must be
        asked for in order, without gaps."""
        if start != self._next:
            raise ValueError(f"mask rows asked out of order ({start}, expected {self._next})")
        out = np.stack([next(self._rows) for _ in range(n)], axis=1)
        self._next += n
        return out
