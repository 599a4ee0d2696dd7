"""Image quality and rate-distortion metrics on numpy arrays (bands, rows, cols).

Conventions: ``peak`` is the DN of the nominal white (10000 for Sentinel-2 L1C uint16 = reflectance
1.0, 255 for uint8); PSNR pools the squared error over all bands and pixels; SSIM is the mean of the
per-band SSIMs; the spectral angle is the mean over pixels, in degrees. :class:`ErrorTally` and
:func:`figures` give the per-band figures ``roundtrip --json``, ``evaluate`` and ``rd`` report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from georefscale.errors import InputError


def _pair(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise InputError(f"{what}: arrays must have the same non-empty shape, got {a.shape} and "
                         f"{b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference over all bands and pixels (DN^2)."""
    a, b = _pair(a, b, "mse")
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """PSNR in dB: ``10 log10(peak^2 / MSE)``, MSE over all bands and pixels; inf if identical."""
    if not peak > 0:
        raise InputError(f"psnr: peak must be positive, got {peak}")
    err = mse(a, b)
    return float("inf") if err == 0 else float(10.0 * np.log10(peak**2 / err))


def ssim_bands(a: np.ndarray, b: np.ndarray, peak: float) -> list[float]:
    """skimage's SSIM (Gaussian-free 7x7 window, ``data_range=peak``) of each band.

    Args:
        a: ``(bands, rows, cols)`` or ``(rows, cols)``, any numeric dtype.
        b: the same shape.
        peak: the data range (e.g. 10000 DN).

    Returns:
        One SSIM per band.

    Raises:
        InputError: shapes differ or are smaller than the window.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b, "ssim")
    if min(a.shape[-2:]) < 7:
        raise InputError(f"ssim: images of {a.shape[-2:]} pixels are smaller than the 7x7 window")
    return [float(structural_similarity(x, y, data_range=peak)) for x, y in zip(a, b, strict=True)]


def ssim(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """Mean over bands of :func:`ssim_bands`."""
    return float(np.mean(ssim_bands(a, b, peak)))


class ErrorTally:
    """The error of a reconstruction against its target, summed block by block (bounded memory):
    squared error pooled and per band over the target's valid samples, and the spectral angle
    over the pixels valid in every band. One implementation for ``roundtrip --json``,
    ``evaluate`` and ``rd``.

    Args:
        bands: the band count.
    """

    def __init__(self, bands: int) -> None:
        self.sq, self.n = np.zeros(bands), np.zeros(bands)
        self.pooled_sq, self.pooled_n = 0.0, 0
        self.angle_sum, self.angle_n = 0.0, 0

    def add(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, offset: float = 0.0) -> None:
        """Add one block.

        Args:
            a: the target, float64 ``(bands, rows, cols)`` (DN).
            b: the reconstruction, the same shape.
            valid: True where a target sample is valid (same shape).
            offset: DN added to both before the spectral angle (``(DN + offset)`` is
                proportional to reflectance, e.g. -1000 for Sentinel-2 L2A of baseline 04.00).
        """
        self.pooled_sq += float(((a - b)[valid] ** 2).sum())
        self.pooled_n += int(valid.sum())
        d = np.where(valid, a - b, 0.0)
        self.sq += (d * d).sum(axis=(1, 2))
        self.n += valid.sum(axis=(1, 2))
        if a.shape[0] > 1:
            a, b = (a + offset, b + offset) if offset else (a, b)
            pix = valid.all(axis=0)
            dot = (a * b).sum(axis=0)[pix]
            norms = (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))[pix]
            ok = norms > 0
            self.angle_sum += float(np.arccos(np.clip(dot[ok] / norms[ok], -1, 1)).sum())
            self.angle_n += int(ok.sum())

    def scores(self, peak: float) -> dict:
        """``rmse_dn`` (DN) and ``psnr_db`` (dB over ``peak``; ``inf`` when exact) pooled over all
        bands; ``bands``: per band ``rmse_dn`` and ``psnr_db``; ``spectral_angle_deg``: the mean
        angle between target and reconstruction band vectors (degrees; None with one band)."""

        def one(sq_sum: float, count: float) -> dict:
            rmse = math.sqrt(sq_sum / max(count, 1))
            return {"rmse_dn": rmse,
                    "psnr_db": 20 * math.log10(peak / rmse) if rmse > 0 else math.inf}

        out = one(self.pooled_sq, self.pooled_n)
        out["bands"] = [one(float(s), float(c)) for s, c in zip(self.sq, self.n, strict=True)]
        out["spectral_angle_deg"] = (math.degrees(self.angle_sum / self.angle_n)
                                     if self.angle_n else None)
        return out


class SsimTally:
    """:func:`ssim_bands` summed strip by strip (bounded memory), equal to the whole-image
    figure up to rounding (~1e-12).

    skimage's SSIM is the mean, over the pixels at least :data:`HALO` pixels from every edge,
    of a map whose value at a pixel depends only on its 7x7 window. A strip of full-width rows
    read with :data:`HALO` more rows above and below its own (:func:`strips`) gives the map of
    its own rows exactly; the tally sums it and counts the pixels.

    Args:
        bands: the band count.
        height: the image height (pixels).
        peak: the data range (e.g. 10000 DN).
    """

    #: The window's half width: the rows read beyond a strip's own, the edge left out.
    HALO = 3

    def __init__(self, bands: int, height: int, peak: float) -> None:
        self.height, self.peak = height, peak
        self.sums, self.n = np.zeros(bands), 0

    def add(self, a: np.ndarray, b: np.ndarray, top: int, own: tuple[int, int]) -> None:
        """Add the SSIM map of a strip's own rows.

        Args:
            a: the target strip, float64 ``(bands, rows, cols)``, image rows from ``top``.
            b: the reconstruction strip, the same shape.
            top: the image row of the strip's first row.
            own: ``(start, end)`` image rows the strip owns; the strip holds :data:`HALO`
                more rows on each side, clipped to the image (:func:`strips`).
        """
        from skimage.metrics import structural_similarity

        h = self.HALO
        lo, hi = max(own[0], h) - top, min(own[1], self.height - h) - top
        if hi <= lo or a.shape[-1] <= 2 * h:
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _, smap = structural_similarity(x, y, data_range=self.peak, full=True)
            self.sums[i] += float(smap[lo:hi, h:-h].sum(dtype=np.float64))
        self.n += (hi - lo) * (a.shape[-1] - 2 * h)

    def scores(self) -> list[float] | None:
        """One SSIM per band; None when the image is smaller than the 7x7 window."""
        return [float(s / self.n) for s in self.sums] if self.n else None


def strips(height: int, rows: int, halo: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Full-width strips of an image: the rows each owns and the rows it reads.

    Args:
        height: the image height (pixels).
        rows: the rows a strip owns (the last may own fewer); at least 1.
        halo: rows read beyond the own rows on each side (clipped to the image).

    Returns:
        Per strip ``((start, end), (top, bottom))``: the own rows (together they tile
        ``[0, height)``) and the rows read.
    """
    return [((start, min(start + rows, height)),
             (max(start - halo, 0), min(start + rows + halo, height)))
            for start in range(0, height, rows)]


def figures(target: np.ndarray, rec: np.ndarray, valid: np.ndarray, peak: float) -> dict:
    """The figures of a whole reconstruction: pooled PSNR (:func:`psnr`) and SSIM (:func:`ssim`)
    beside PSNR and SSIM per band and the mean spectral angle (:class:`ErrorTally`).

    Args:
        target: DN ``(bands, rows, cols)``.
        rec: the reconstruction, the same shape.
        valid: True where a pixel is valid in every band of the target ``(rows, cols)``; the
            others count for nothing (SSIM sees the target's own values there).
        peak: DN of reflectance 1.0 (10000 for uint16 Sentinel-2, 255 for uint8).

    Returns:
        ``psnr_db``, ``ssim``, ``bands`` (per band ``psnr_db`` and ``ssim``) and
        ``spectral_angle_deg`` (degrees; None with one band).
    """
    a, b = _pair(target, rec, "figures")
    b = np.where(valid[None], b, a)
    tally = ErrorTally(a.shape[0])
    tally.add(a, b, np.broadcast_to(valid[None], a.shape))
    per_band = tally.scores(peak)
    ssims = ssim_bands(a, b, peak)
    return {"psnr_db": psnr(a[:, valid], b[:, valid], peak), "ssim": float(np.mean(ssims)),
            "bands": [{"psnr_db": band["psnr_db"], "ssim": s}
                      for band, s in zip(per_band["bands"], ssims, strict=True)],
            "spectral_angle_deg": per_band["spectral_angle_deg"]}


def spectral_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Mean spectral angle in degrees between the band vectors of ``a`` and ``b`` per pixel.

    Pixels where either vector is all zero are left out (their angle is undefined).
    """
    a, b = _pair(a, b, "spectral_angle")
    dot = np.sum(a * b, axis=0)
    norms = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    ok = norms > 0
    if not ok.any():
        raise InputError("spectral_angle: every pixel is all zero")
    cos = np.clip(dot[ok] / norms[ok], -1.0, 1.0)
    return float(np.degrees(np.mean(np.arccos(cos))))


def detail_agreement(target: np.ndarray, reference: np.ndarray, factor: int) -> float:
    """How well ``reference`` shows the detail that a ``factor`` x downscale removes from
    ``target``: the correlation, averaged over bands, of the two images' detail (each pixel minus
    the mean of its ``factor`` x ``factor`` block), over the blocks valid (finite) in both.

    1 = the same detail, 0 = unrelated (another place, misregistered by more than a few pixels,
    turned, missing); real co-registered references 1-3 years older score 0.33-0.85 on the
    Sentinel-2 sample pairs (512-pixel tiles of the OSCD training cities 0.51-0.85, 200-pixel
    tiles of the test cities 0.33-0.71). Any units and dtype; rows and columns are cut to a
    multiple of ``factor``. A band without detail in either image scores 0.
    """
    target, reference = _pair(target, reference, "detail_agreement")
    c, h, w = target.shape
    h, w = h // factor * factor, w // factor * factor

    def blocks(a: np.ndarray) -> np.ndarray:
        """(c, h/f, w/f, f, f): the pixels of each f x f block."""
        a = a[:, :h, :w].reshape(c, h // factor, factor, w // factor, factor)
        return a.transpose(0, 1, 3, 2, 4)

    t, r = blocks(target), blocks(reference)
    ok = np.isfinite(t).all(axis=(0, 3, 4)) & np.isfinite(r).all(axis=(0, 3, 4))
    if not ok.any():
        return 0.0
    scores = []
    for tb, rb in zip(t[:, ok], r[:, ok], strict=True):  # (n blocks, f, f) per band
        dt = tb - tb.mean(axis=(1, 2), keepdims=True)
        dr = rb - rb.mean(axis=(1, 2), keepdims=True)
        den = np.sqrt(np.sum(dt * dt) * np.sum(dr * dr))
        scores.append(float(np.sum(dt * dr) / den) if den > 0 else 0.0)
    return float(np.mean(scores))


def bd_rate(
    anchor: Sequence[Sequence[float]], test: Sequence[Sequence[float]],
    within: tuple[float, float] | None = None,
) -> float:
    """Bjontegaard delta rate of ``test`` against ``anchor``, as a fraction (VCEG-M33).

    Each curve is a list of ``(rate, psnr)`` points (rate in any positive unit, e.g. bits per HR
    pixel; at least 4 points).  ``ln(rate)`` is fitted as a cubic in PSNR for each curve and the
    two fits are integrated over the common PSNR range; the result is ``exp(mean difference) - 1``:
    negative when ``test`` needs fewer bits for the same PSNR (-0.7 = 70 % fewer bits).
    NaN when the PSNR ranges do not overlap.

    ``within`` (dB, low and high) narrows the range integrated over to its part of the common
    range, and each cubic is fitted to the points in it and the nearest point on either side
    (at least 4), so a curve's shape far outside the range (say near-lossless) does not bend it.
    """
    (r1, q1), (r2, q2) = _curve(anchor, "anchor"), _curve(test, "test")
    lo, hi = max(q1.min(), q2.min()), min(q1.max(), q2.max())
    if within is not None:
        lo, hi = max(lo, within[0]), min(hi, within[1])
        (r1, q1), (r2, q2) = _around(r1, q1, lo, hi), _around(r2, q2, lo, hi)
    if not hi > lo:
        return float("nan")
    p1 = np.polyint(np.polyfit(q1, np.log(r1), 3))
    p2 = np.polyint(np.polyfit(q2, np.log(r2), 3))
    diff = (np.polyval(p2, hi) - np.polyval(p2, lo)) - (np.polyval(p1, hi) - np.polyval(p1, lo))
    return float(np.expm1(diff / (hi - lo)))


def _around(rate: np.ndarray, psnr: np.ndarray, lo: float, hi: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """The points with PSNR in [lo, hi] and the nearest one beyond each end, widened to 4."""
    order = np.argsort(psnr)
    rate, psnr = rate[order], psnr[order]
    inside = np.flatnonzero((psnr >= lo) & (psnr <= hi))
    a = int(np.searchsorted(psnr, lo)) if inside.size == 0 else int(inside[0])
    b = a if inside.size == 0 else int(inside[-1]) + 1
    a, b = max(0, a - 1), min(len(psnr), b + 1)
    while b - a < 4 and (a > 0 or b < len(psnr)):
        a, b = max(0, a - 1), min(len(psnr), b + 1)
    return rate[a:b], psnr[a:b]


def _curve(points: Sequence[Sequence[float]], what: str) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 4:
        raise InputError(f"bd_rate: the {what} curve needs at least 4 (rate, psnr) points, got "
                         f"shape {pts.shape}")
    if not np.all(np.isfinite(pts)) or np.any(pts[:, 0] <= 0):
        raise InputError(f"bd_rate: the {what} curve has a non-positive rate or non-finite value")
    if np.unique(pts[:, 1]).size < 4:
        raise InputError(f"bd_rate: the {what} curve needs 4 distinct PSNR values for a cubic fit")
    return pts[:, 0], pts[:, 1]
