"""Co-registration of references with their target: local shifts on a grid of windows, a robust
global warp (translation, or affine where the windows support it), and that warp as a value.

The warp is an affine map of the target's pixel coordinates (columns, rows; pixel corners at
integers, as in GDAL): the reference is sampled at ``warp * (col, row)``, so the warped
reference is GDAL's reprojection onto the target grid whose transform is ``grid.transform *
warp``: one resampling, the warp folded into the destination transform. A translation
``(dx, dy)`` is the shift of the earlier versions (the reference sampled at target pixel +
``(dx, dy)``).

:func:`coregister` measures it: windows of :data:`WINDOW` target pixels spread over the whole
target (at most :data:`MAX_WINDOWS` per axis); each one's shift by phase correlation with
sub-pixel refinement (:func:`~georefscale.raster.align.estimate_shift`, imported on first use:
the value type :class:`Coregistration` is light). A window is rejected
when less than :data:`MIN_VALID` of it is valid in both images (nodata, clouds: the reference
NaN), when its correlation is below :data:`MIN_CORRELATION`, when its shift is implausible
(more than a quarter of the window), when it disagrees with its neighbours by more than
:data:`NEIGHBOUR_PX`, or when it is an outlier of the robust fit (RANSAC over the window
centres, residual above :data:`INLIER_PX`, then least squares on the inliers). The fit is
repeated on the reference warped by the previous fit (at most :data:`PASSES` passes), so large
rotations are measured on content that is already nearly aligned. The affine model is kept only
when it explains the windows better than a translation (:func:`_choose`). Where the global
model leaves systematic residuals in some region, a smooth field of local shifts is added on top
of it (:func:`~georefscale.raster.field.fit_field`, applied in the same single resampling).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window

from georefscale.raster.field import MAX_FIELD_PX, ShiftField, fit_field
from georefscale.raster.grid import Grid
from georefscale.raster.io import read_masked

__all__ = ["KINDS", "Coregistration", "coregister", "measured_windows"]

#: side (target pixels) of a co-registration window
WINDOW = 128
#: at most this many windows along each axis (windows overlap by half at most)
MAX_WINDOWS = 12
#: float32 samples of the warped reference held at a time (16 MiB; the cloud test on a strip
#: holds about 6 times that), at least one row of windows
STRIP_SAMPLES = 1 << 22
#: smallest window side (target pixels): smaller targets are not co-registered
MIN_WINDOW = 32
#: a window is used only when at least this fraction of it is valid in target and reference
MIN_VALID = 0.75
#: a window is used only when its correlation peak (sqrt(1 - phase-correlation error)) is at
#: least this
MIN_CORRELATION = 0.35
#: the same in the first, whole-pixel pass
MIN_CORRELATION_COARSE = 0.1
#: residual (target pixels) above which a window is an outlier of the robust fit
INLIER_PX = 1.0
#: a window whose shift differs from the median of its neighbours' by more than this (target
#: pixels, after the first pass) is rejected
NEIGHBOUR_PX = 1.0
#: fits on the reference warped by the previous fit
PASSES = 3
#: the passes stop when a fit moves no corner of the target by this much (target pixels), or
#: when both it and the previous one are translations (shifts are measured exactly on content
#: that is only shifted)
CONVERGED_PX = 0.1
#: the affine is kept when it moves some corner of the target by more than this (target pixels)
#: from the translation's position and explains the windows better
AFFINE_PX = 0.25
#: ... and, with as many inlier windows as the translation, has an RMS residual below this
#: fraction of the translation's
AFFINE_GAIN = 0.8
#: an affine's linear part may differ from the identity by at most this (about 30 degrees of
#: rotation, or a scale of 0.5 .. 1.5): anything larger is not a misregistration
MAX_LINEAR = 0.5
#: the affine's scale along any direction may differ from 1 by at most this: references are
#: ortho-rectified at a known resolution, so a larger scale is a mismatch, not a misregistration
MAX_SCALE = 0.05
#: warp models
KINDS = ("none", "translation", "affine")


@dataclass(frozen=True)
class Coregistration:
    """A reference's warp onto its target and how it was measured.

    Attributes:
        kind: ``"none"`` (not estimated: the identity), ``"translation"`` or ``"affine"``.
        matrix: ``(a, b, c, d, e, f)``: the reference is sampled at target pixel
            ``(a * col + b * row + c, d * col + e * row + f)`` (target pixel coordinates).
        rms: root-mean-square residual of the used windows against the model (target pixels;
            None when not estimated).
        error: mean phase-correlation error of the used windows (0 perfect .. 1 none; the
            earlier versions' ``SHIFT_ERROR``; None when not estimated).
        windows: windows used by the fit.
        rejected: windows rejected (coverage, correlation, neighbours, outliers).
        field: local shifts added to the warp where it leaves systematic residuals (None: the
            warp alone; see :mod:`georefscale.raster.field`).
    """

    kind: str = "none"
    matrix: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    rms: float | None = None
    error: float | None = None
    windows: int = 0
    rejected: int = 0
    field: ShiftField | None = None

    @classmethod
    def translation(cls, dx: float, dy: float, error: float | None = None) -> Coregistration:
        """A plain shift ``(dx, dy)`` in target pixels (as recorded by earlier versions)."""
        return cls("translation", (1.0, 0.0, float(dx), 0.0, 1.0, float(dy)), error=error)

    @property
    def warp(self) -> Affine:
        """The warp as an :class:`~affine.Affine` of target pixel coordinates."""
        return Affine(*self.matrix)

    def shift_at(self, col: float, row: float) -> tuple[float, float]:
        """Displacement ``(dx, dy)`` (target pixels) of the reference at target pixel
        ``(col, row)``."""
        x, y = self.warp @ (col, row)
        return x - col, y - row

    def to_json(self) -> str:
        """The ``GEOREFSCALE_COREG`` tag (``field`` only when there is one)."""
        d = {"model": self.kind, "matrix": list(self.matrix), "rms_px": self.rms,
             "error": self.error, "windows": self.windows, "rejected": self.rejected}
        if self.field is not None:
            d["field"] = self.field.to_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, width: int, height: int) -> Coregistration:
        """Parse and check a ``GEOREFSCALE_COREG`` tag (untrusted: bounded, finite).

        Args:
            text: the tag.
            width: target width (pixels), bounds the displacements.
            height: target height (pixels).

        Raises:
            ValueError: malformed, not finite, a warp that moves the scene by more than its
                size or distorts it by more than :data:`MAX_LINEAR`, or a ``field`` that
                :meth:`~georefscale.raster.field.ShiftField.from_dict` refuses.
        """
        d = json.loads(text)
        if not isinstance(d, dict) or set(d) - {"field"} != {"model", "matrix", "rms_px",
                                                              "error", "windows", "rejected"}:
            raise ValueError("COREG must be an object with model, matrix, rms_px, error, "
                             "windows and rejected (and optionally field)")
        if d["model"] not in KINDS[1:]:
            raise ValueError(f"COREG model {d['model']!r} is not one of {', '.join(KINDS[1:])}")
        m = d["matrix"]
        if not isinstance(m, list) or len(m) != 6:
            raise ValueError("COREG matrix must be a list of 6 numbers")
        matrix = tuple(_finite(v, "COREG matrix") for v in m)
        a, b, c, dd, e, f = matrix
        if d["model"] == "translation" and (a, b, dd, e) != (1.0, 0.0, 0.0, 1.0):
            raise ValueError("COREG translation must have an identity linear part")
        if max(abs(a - 1), abs(b), abs(dd), abs(e - 1)) > MAX_LINEAR:
            raise ValueError(f"COREG matrix distorts the scene by more than {MAX_LINEAR}")
        out = cls(d["model"], matrix, _optional(d["rms_px"], "COREG rms_px", max(width, height)),
                  _optional(d["error"], "COREG error", 1.0), _count(d["windows"], "windows"),
                  _count(d["rejected"], "rejected"),
                  ShiftField.from_dict(d["field"], width, height, MAX_WINDOWS**2)
                  if "field" in d else None)
        for col in (0, width):
            for row in (0, height):
                dx, dy = out.shift_at(col, row)
                if abs(dx) > width or abs(dy) > height:
                    raise ValueError("COREG warp moves the scene by more than its size")
        return out


def _finite(v: object, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{name} must hold finite numbers")
    return float(v)


def _optional(v: object, name: str, bound: float) -> float | None:
    if v is None:
        return None
    x = _finite(v, name)
    if not 0 <= x <= bound:
        raise ValueError(f"{name} {x} outside 0 .. {bound}")
    return x


def _count(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_WINDOWS**2:
        raise ValueError(f"COREG {name} must be a whole number 0 .. {MAX_WINDOWS**2}")
    return v


@dataclass(frozen=True)
class _Window:
    """A measured window: centre (target pixels), measured sample position of the reference
    at the centre (target pixels), correlation error, and whether it passed the window tests."""

    index: tuple[int, int]
    centre: tuple[float, float]
    sample: tuple[float, float]
    error: float
    ok: bool


def _windows(grid: Grid) -> tuple[int, list[Window]]:
    """The window side and the windows spread over ``grid`` (row-major)."""
    side = min(WINDOW, grid.width, grid.height)
    starts = []
    for n_px in (grid.height, grid.width):
        span = n_px - side
        n = min(MAX_WINDOWS, 1 + math.ceil(span / (side / 2))) if span > 0 else 1
        starts.append([round(i * span / (n - 1)) if n > 1 else 0 for i in range(n)])
    return side, [Window(c, r, side, side) for r in starts[0] for c in starts[1]]


def _measure(target: DatasetReader, references: Sequence[DatasetReader], grid: Grid,
             windows: list[Window], side: int, warp: Affine, fine: bool,
             cache: dict[int, tuple[np.ndarray, np.ndarray]],
             mask: Callable[[np.ndarray], np.ndarray] | None) -> list[_Window]:
    """Each window's shift of the references warped by ``warp``, as measured sample positions.

    The references are warped a strip of window rows at a time (at most :data:`STRIP_SAMPLES`
    float32 samples, one GDAL call per strip); target windows are read once and kept in
    ``cache``. ``fine``: sub-pixel precision and :data:`MIN_CORRELATION`; otherwise whole pixels
    and :data:`MIN_CORRELATION_COARSE` (the first pass, where rotated content correlates weakly
    but still at the right place).
    """
    from georefscale.raster.align import align, estimate_shift, window_warp

    n_cols = len({int(w.col_off) for w in windows})
    floor = MIN_CORRELATION if fine else MIN_CORRELATION_COARSE
    bands = references[0].count
    out, strip, strip_rows = [], None, (0, 0)
    for i, win in enumerate(windows):
        r0 = int(win.row_off)
        if r0 + side > strip_rows[1]:  # the next strip: as many window rows as STRIP_SAMPLES hold
            end = r0 + side
            for w in windows[i:]:
                if (int(w.row_off) + side - r0) * grid.width * bands > STRIP_SAMPLES:
                    break
                end = int(w.row_off) + side
            strip_rows = (r0, end)
            strip = align(references, grid.window_grid(Window(0, r0, grid.width, end - r0)),
                          warp=window_warp(warp, 0, r0))
            if mask is not None:
                strip[:, mask(strip)] = np.nan
        if i not in cache:
            tgt, invalid = read_masked(target, win)
            cache[i] = (tgt, invalid.any(axis=0))
        tgt, bad = cache[i]
        c0, top = int(win.col_off), r0 - strip_rows[0]
        ref = strip[:, top:top + side, c0:c0 + side]
        valid = ~bad & np.isfinite(ref).all(axis=0)
        cx, cy = win.col_off + side / 2, win.row_off + side / 2
        index = (i // n_cols, i % n_cols)
        if valid.mean() < MIN_VALID:
            out.append(_Window(index, (cx, cy), (cx, cy), 1.0, False))
            continue
        dx, dy, err = estimate_shift(tgt.astype(np.float32), ref, target_mask=bad,
                                     upsample=20 if fine else 1)
        ok = math.sqrt(max(0.0, 1.0 - err)) >= floor and max(abs(dx), abs(dy)) < side / 4
        out.append(_Window(index, (cx, cy), warp @ (cx + dx, cy + dy), err, ok))
    return out


def _neighbours_agree(ws: list[_Window], warp: Affine) -> np.ndarray:
    """Whether each usable window's residual against ``warp`` is within :data:`NEIGHBOUR_PX` of
    the median residual of its usable 8-neighbours (True without usable neighbours)."""
    res = {w.index: np.subtract(w.sample, warp @ w.centre) for w in ws if w.ok}
    keep = []
    for w in ws:
        if not w.ok:
            keep.append(False)
            continue
        r, c = w.index
        near = [res[(r + i, c + j)] for i in (-1, 0, 1) for j in (-1, 0, 1)
                if (i or j) and (r + i, c + j) in res]
        keep.append(not near or float(np.hypot(*(res[w.index] - np.median(near, axis=0))))
                    <= NEIGHBOUR_PX)
    return np.array(keep)


def _lstsq(p: np.ndarray, s: np.ndarray, affine: bool) -> Affine:
    """Least-squares warp mapping centres ``p`` (n, 2) to samples ``s`` (n, 2)."""
    if not affine:
        dx, dy = (s - p).mean(axis=0)
        return Affine.translation(float(dx), float(dy))
    design = np.column_stack([p, np.ones(len(p))])
    coef, *_ = np.linalg.lstsq(design, s, rcond=None)
    return Affine(*coef[:, 0], *coef[:, 1])


def _residuals(warp: Affine, p: np.ndarray, s: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = warp[:6]
    pred = np.column_stack([a * p[:, 0] + b * p[:, 1] + c, d * p[:, 0] + e * p[:, 1] + f])
    return np.hypot(*(s - pred).T)


def _rms(warp: Affine, p: np.ndarray, s: np.ndarray) -> float:
    return float(np.sqrt(np.mean(_residuals(warp, p, s) ** 2)))


def _ransac(p: np.ndarray, s: np.ndarray, affine: bool, threshold: float
            ) -> tuple[Affine, np.ndarray] | None:
    """Robust fit: the minimal-sample hypothesis with most inliers (fewest summed residual on a
    tie; fixed seed, so a scene always gets the same warp), then least squares on its inliers,
    twice. None when there are too few windows (3 for an affine, 1 for a translation)."""
    k = 3 if affine else 1
    n = len(p)
    if n < k:
        return None
    if affine:
        rng = np.random.default_rng(0)
        trials = [rng.choice(n, 3, replace=False) for _ in range(min(200, math.comb(n, 3) * 2))]
    else:
        trials = [np.array([i]) for i in range(n)]
    best, best_score = None, (-1, 0.0)
    for idx in trials:
        if affine and abs(np.linalg.det(np.column_stack([p[idx], np.ones(3)]))) < 1e-6:
            continue  # collinear centres
        warp = _lstsq(p[idx], s[idx], affine)
        if not _plausible(warp):
            continue
        res = _residuals(warp, p, s)
        inl = res <= threshold
        score = (int(inl.sum()), -float(res[inl].sum()))
        if score > best_score:
            best, best_score = inl, score
    if best is None or best.sum() < k:
        return None
    inl = best
    for _ in range(2):
        warp = _lstsq(p[inl], s[inl], affine)
        new = _residuals(warp, p, s) <= threshold
        if new.sum() < k:
            break
        inl = new
    return _lstsq(p[inl], s[inl], affine), inl


def _plausible(warp: Affine) -> bool:
    """Whether a warp's linear part is a misregistration: within :data:`MAX_LINEAR` of the
    identity, scales within :data:`MAX_SCALE` of 1."""
    a, b, _, d, e, _ = warp[:6]
    sv = np.linalg.svd(np.array([[a, b], [d, e]]), compute_uv=False)
    return (max(abs(a - 1), abs(b), abs(d), abs(e - 1)) <= MAX_LINEAR
            and bool(np.all(np.abs(sv - 1) <= MAX_SCALE)) and a * e - b * d > 0)


def _choose(p: np.ndarray, s: np.ndarray, grid: Grid, threshold: float
            ) -> tuple[str, Affine, np.ndarray] | None:
    """Translation or affine: the affine needs 6 inlier windows spread over at least half the
    target along both axes, a plausible linear part (:func:`_plausible`), a position differing
    from the translation's by more than :data:`AFFINE_PX` at some corner of the target, and to
    explain the windows better: more inliers than the translation, or as many with a residual
    below :data:`AFFINE_GAIN` of the translation's (RMS over each one's inliers)."""
    trans = _ransac(p, s, False, threshold)
    aff = _ransac(p, s, True, threshold) if len(p) >= 6 else None
    if aff is not None:
        warp, inl = aff
        spread = np.ptp(p[inl], axis=0) >= 0.5 * np.array([grid.width, grid.height]) - WINDOW
        corners = [(0, 0), (grid.width, 0), (0, grid.height), (grid.width, grid.height)]
        apart = trans is None or max(
            math.dist(warp @ q, trans[0] @ q) for q in corners) > AFFINE_PX
        better = trans is None or inl.sum() > trans[1].sum() or (
            inl.sum() == trans[1].sum() and _rms(warp, p[inl], s[inl])
            < AFFINE_GAIN * _rms(trans[0], p[trans[1]], s[trans[1]]))
        if inl.sum() >= 6 and spread.all() and _plausible(warp) and apart and better:
            return "affine", warp, inl
    if trans is None:
        return None
    return "translation", trans[0], trans[1]


def coregister(target: DatasetReader, references: Sequence[DatasetReader], grid: Grid,
               mask: Callable[[np.ndarray], np.ndarray] | None = None) -> Coregistration:
    """Measure the warp of ``references`` onto the open ``target``.

    Args:
        target: the open target (its nodata or internally masked samples are left out).
        references: the open references (mosaicked, first wins; the nodata they carry is left
            out).
        grid: the target's grid (any CRS; the references are warped onto it by GDAL).
        mask: ``f(ref) -> bool (rows, cols)``: reference pixels to leave out as well (e.g.
            clouds), given the warped float32 DN ``(bands, rows, cols)`` of a window.

    Returns:
        The fitted :class:`Coregistration`; ``kind="none"`` (the identity) when the target is
        smaller than :data:`MIN_WINDOW` or no window can be used (``rejected`` says how many
        were tried).
    """
    return _fit(target, references, grid, mask)[0]


def measured_windows(target: DatasetReader, references: Sequence[DatasetReader], grid: Grid,
                     mask: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """What :func:`coregister` saw in its last pass, for figures and reports.

    Returns:
        ``{"model": kind, "field": ShiftField or None, "windows": [{"centre": (col, row),
        "residual": (dx, dy) or None, "used": bool}]}``: window centres and measured positions
        minus the fitted warp's (target pixels, without the field; None where the window could
        not be measured).
    """
    fit, ws, used = _fit(target, references, grid, mask)
    warp = fit.warp
    return {"model": fit.kind, "field": fit.field, "windows": [
        {"centre": w.centre, "used": bool(u),
         "residual": None if w.error >= 1 and not w.ok else
         tuple(float(v) for v in np.subtract(w.sample, warp @ w.centre))}
        for w, u in zip(ws, used, strict=True)]}


def _fit(target: DatasetReader, references: Sequence[DatasetReader], grid: Grid,
         mask: Callable[[np.ndarray], np.ndarray] | None
         ) -> tuple[Coregistration, list[_Window], np.ndarray]:
    """:func:`coregister`, with the windows of the last pass and which of them the fit used.

    The shift field (:func:`_field`) is fitted on the windows of the pass that made the final
    warp, when that was a sub-pixel pass."""
    from threadpoolctl import threadpool_limits

    side, windows = _windows(grid)
    if side < MIN_WINDOW:
        return Coregistration(), [], np.zeros(0, bool)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    warp, fit = Affine.identity(), None
    ws: list[_Window] = []
    used = np.zeros(len(windows), bool)
    corners = [(0, 0), (grid.width, 0), (0, grid.height), (grid.width, grid.height)]
    usable: tuple[list[_Window], np.ndarray] | None = None
    for n in range(PASSES):
        with threadpool_limits(1, user_api="blas"):  # small matrices: threads only wait
            ws = _measure(target, references, grid, windows, side, warp, n > 0, cache, mask)
        use = _neighbours_agree(ws, warp) if n else np.array([w.ok for w in ws])
        if not use.any():
            break
        p = np.array([w.centre for w, u in zip(ws, use, strict=True) if u])
        s = np.array([w.sample for w, u in zip(ws, use, strict=True) if u])
        chosen = _choose(p, s, grid, INLIER_PX if n else 4 * INLIER_PX)
        if chosen is None:
            break
        kind, new, inl = chosen
        moved = max(math.dist(new @ q, warp @ q) for q in corners)
        shifted_only = warp.is_rectilinear and warp.a == warp.e == 1 and kind == "translation"
        warp = new
        used = np.zeros(len(ws), bool)
        used[np.flatnonzero(use)[inl]] = True
        errors = np.array([w.error for w in ws])[used]
        res = _residuals(warp, p[inl], s[inl])
        fit = Coregistration(
            kind, tuple(float(v) for v in warp[:6]), rms=float(np.sqrt(np.mean(res**2))),
            error=float(errors.mean()), windows=int(used.sum()),
            rejected=len(ws) - int(used.sum()))
        usable = (ws, use) if n else None
        if n and (moved < CONVERGED_PX or shifted_only):
            break
    if fit is None:
        return Coregistration(rejected=len(windows)), ws, used
    field = None if usable is None else _field(*usable, fit.warp, grid)
    return replace(fit, field=field), ws, used


def _field(ws: list[_Window], use: np.ndarray, warp: Affine, grid: Grid) -> ShiftField | None:
    """:func:`~georefscale.raster.field.fit_field` on the windows that passed the window and
    neighbour tests (RANSAC outliers of the global warp included: a local misregistration makes
    them) and lie within :data:`~georefscale.raster.field.MAX_FIELD_PX` of ``warp``."""
    res = np.array([np.subtract(w.sample, warp @ w.centre) for w in ws])
    ok = use & (np.hypot(*res.T) <= MAX_FIELD_PX)
    if not ok.any():
        return None
    cols = np.array(sorted({w.centre[0] for w in ws}))
    rows = np.array(sorted({w.centre[1] for w in ws}))
    index = np.array([w.index for w in ws])[ok]
    return fit_field(index, res[ok], cols, rows, grid.width, grid.height)
