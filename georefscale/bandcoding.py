"""How the enhancement layer codes a multi-band residual across its bands.

* :class:`BandTransform`: a lossily coded residual goes through the Karhunen-Loeve transform of
  its band covariance (orthonormal; JPEG 2000's own colour transform only mixes the first
  three bands).
* :class:`BandPrediction`: a losslessly coded (quantised) residual has each band predicted from
  the bands before it with integer weights, exactly reversible; on the Sentinel-2 test cities
  this codes 1.5-5 % smaller than JPEG 2000's reversible colour transform.

Both are recorded in the enhancement layer's tags and parsed back as untrusted input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BandCoding", "BandPrediction", "BandTransform", "fits_int16", "predicted_bands"]

@dataclass(frozen=True)
class BandTransform:
    """An orthonormal transform across bands that decorrelates a residual before JPEG 2000
    codes it lossily (the Karhunen-Loeve transform of its band covariance; JPEG 2000's own colour
    transform, which is off then, only mixes the first three bands).

    Attributes:
        matrix: ``bands x bands`` values, row-major; column k is the k-th basis vector
            (strongest first). The coded bands are ``round(matrix.T @ residual)``, the decoded
            residual ``round(matrix @ coded)`` (float64, on both sides alike).
    """

    matrix: tuple[float, ...]

    @classmethod
    def fit(cls, residual: np.ndarray, valid: np.ndarray) -> BandTransform:
        """The transform of a residual (DN, ``(bands, rows, cols)``) over its samples valid in
        every band; each basis vector signed so its largest component is positive."""
        n = residual.shape[0]
        keep = valid.reshape(n, -1).all(axis=0)
        x = residual.reshape(n, -1)[:, keep].astype(np.float64)
        cov = np.cov(x) if x.shape[1] > 1 else np.eye(n)
        _, vectors = np.linalg.eigh(np.atleast_2d(cov))
        vectors = vectors[:, ::-1]
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(n)])
        return cls(tuple(float(v) for v in (vectors * signs).ravel()))

    @property
    def _m(self) -> np.ndarray:
        n = math.isqrt(len(self.matrix))
        return np.asarray(self.matrix, np.float64).reshape(n, n)

    def forward(self, residual: np.ndarray) -> np.ndarray:
        """The decorrelated bands of a residual, rounded (int64)."""
        return np.rint(np.tensordot(self._m.T, residual.astype(np.float64), 1)).astype(np.int64)

    def inverse(self, coded: np.ndarray) -> np.ndarray:
        """The residual of decoded bands, rounded (int64)."""
        return np.rint(np.tensordot(self._m, coded.astype(np.float64), 1)).astype(np.int64)

    def to_tag(self) -> str:
        return ",".join(repr(v) for v in self.matrix)

    @classmethod
    def from_tag(cls, text: str, bands: int) -> BandTransform:
        """Parse and validate (untrusted): ``bands**2`` finite values forming an orthonormal
        matrix (to 1e-6), so a decoded residual is never amplified.

        Raises:
            ValueError: it is not one.
        """
        values = tuple(float(v) for v in text.split(","))
        if len(values) != bands * bands or not all(math.isfinite(v) for v in values):
            raise ValueError(f"ENH_TRANSFORM is not {bands} x {bands} finite values")
        m = np.asarray(values).reshape(bands, bands)
        if not np.allclose(m.T @ m, np.eye(bands), atol=1e-6):
            raise ValueError("ENH_TRANSFORM is not orthonormal")
        return cls(values)


@dataclass(frozen=True)
class BandPrediction:
    """An exactly reversible integer prediction across bands, for a residual coded losslessly:
    band k is coded as ``q[k] - floor((sum_j w[k, j] * q[j] + UNIT / 2) / UNIT)`` over the
    bands ``j < k``, which the decoder has rebuilt before band k (integer arithmetic, so
    identical on every machine). JPEG 2000's colour transform is off then.

    Attributes:
        weights: the weights ``w[k, j]`` for ``k = 1 .. n-1``, ``j = 0 .. k-1``, in that order,
            in units of ``1 / UNIT``; at most :attr:`BOUND` in magnitude.
    """

    weights: tuple[int, ...]

    #: Weights are multiples of 1 / UNIT.
    UNIT = 64
    #: Largest weight magnitude, in units (4.0).
    BOUND = 4 * 64

    @classmethod
    def fit(cls, q: np.ndarray, valid: np.ndarray) -> BandPrediction:
        """Least-squares weights for an integer residual ``q`` (``(bands, rows, cols)``), fitted
        on its detail (each sample minus the mean of its 4 neighbours) over the samples valid
        in every band, so they follow what the wavelet codes."""
        n = q.shape[0]
        x = q.astype(np.float64)
        detail = x[:, 1:-1, 1:-1] - (x[:, :-2, 1:-1] + x[:, 2:, 1:-1]
                                     + x[:, 1:-1, :-2] + x[:, 1:-1, 2:]) / 4
        keep = valid[:, 1:-1, 1:-1].all(axis=0).ravel()
        d = detail.reshape(n, -1)[:, keep]
        weights: list[int] = []
        for k in range(1, n):
            w = (np.linalg.lstsq(d[:k].T, d[k], rcond=None)[0] if d.shape[1] > k
                 else np.zeros(k))
            weights += [int(v) for v in np.clip(np.rint(w * cls.UNIT), -cls.BOUND, cls.BOUND)]
        return cls(tuple(weights))

    def _rows(self) -> list[np.ndarray]:
        out, i = [], 0
        for k in range(1, self.bands):
            out.append(np.asarray(self.weights[i:i + k], np.int64))
            i += k
        return out

    @property
    def bands(self) -> int:
        """The band count the weights are for."""
        return (1 + math.isqrt(1 + 8 * len(self.weights))) // 2

    def _predict(self, w: np.ndarray, before: np.ndarray) -> np.ndarray:
        return (np.tensordot(w, before, 1) + self.UNIT // 2) // self.UNIT

    def forward(self, q: np.ndarray) -> np.ndarray:
        """The coded bands of an integer residual (int64)."""
        q = q.astype(np.int64)
        out = q.copy()
        for k, w in enumerate(self._rows(), 1):
            out[k] -= self._predict(w, q[:k])
        return out

    def inverse(self, coded: np.ndarray) -> np.ndarray:
        """The integer residual of decoded bands (int64), exactly."""
        q = coded.astype(np.int64)
        for k, w in enumerate(self._rows(), 1):
            q[k] += self._predict(w, q[:k])
        return q

    def to_tag(self) -> str:
        return ",".join(map(str, self.weights))

    @classmethod
    def from_tag(cls, text: str, bands: int) -> BandPrediction:
        """Parse and validate (untrusted): ``bands * (bands - 1) / 2`` integers within
        :attr:`BOUND`.

        Raises:
            ValueError: they are not.
        """
        values = tuple(int(v) for v in text.split(",")) if text else ()
        if len(values) != bands * (bands - 1) // 2:
            raise ValueError(f"ENH_PREDICTION is not {bands * (bands - 1) // 2} weights for "
                             f"{bands} bands")
        if any(abs(v) > cls.BOUND for v in values):
            raise ValueError(f"ENH_PREDICTION has a weight beyond {cls.BOUND}")
        return cls(values)


#: A band coding of the enhancement layer (None in its place: bands coded as they are).
BandCoding = BandTransform | BandPrediction

#: The range of the enhancement layer's integer raster (int16).
INT16 = np.iinfo(np.int16)


def fits_int16(a: np.ndarray) -> bool:
    """Whether every value of an integer array lies in the enhancement layer's int16 range
    (:data:`INT16`); True for an empty array."""
    return a.size == 0 or bool(INT16.min <= a.min() and a.max() <= INT16.max)


def predicted_bands(q: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, BandPrediction | None]:
    """What a residual coded losslessly is coded as: for an integer residual ``q`` (``(bands,
    rows, cols)``, ``valid`` of the same shape) of more than one band, its predicted bands and
    the prediction (:meth:`BandPrediction.fit`) when they fit 16 bits; else ``q`` itself and
    None."""
    if q.shape[0] > 1:
        prediction = BandPrediction.fit(q, valid)
        bands = prediction.forward(q)
        if fits_int16(bands):
            return bands, prediction
    return q, None
