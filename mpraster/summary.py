"""Per-band statistics as reductions: counts, min, max, sum, mean, std, histograms.

Moments merge with Chan, Golub and LeVeque's pairwise update (count, mean and the sum of
squared deviations, in float64), never with a sum of squares, which cancels
catastrophically. Integer types up to 32 bits keep an exact integer sum, so their mean is
the correctly rounded quotient; float sums and means agree with NumPy's to a relative
1e-12 (NumPy sums pairwise over the whole array, we sum each window pairwise then merge
in plan order). Counts, min, max and histograms are exact: a histogram over a fixed range
is NumPy's own ``np.histogram`` of each window, summed. Types of 16 bits or fewer also
keep exact counts of every value, from which any histogram and percentile follows exactly.

A window's figures come from one compiled loop per band that releases the GIL
(``ext/_summary.pyx``): count, min, max and sum in one pass, then the sum of squared
deviations from the window's mean (exact, from exact sums of squares, for integers of 16
bits or fewer). Float windows holding infinities (or NaN marked valid) go through NumPy,
whose rules for them the report follows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpraster import _summary
from mpraster.reductions import Block, Reduction


def exact_sum_type(dtype: np.dtype) -> bool:
    """Whether sums of ``dtype`` are kept as exact integers (integers of 32 bits or fewer)."""
    return np.issubdtype(dtype, np.integer) and dtype.itemsize <= 4


def counts_every_value(dtype: np.dtype) -> bool:
    """Whether a count of every value of ``dtype`` is small enough to keep (16 bits or fewer)."""
    return np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2


@dataclass
class BandPartial:
    """One band's figures over some windows; ``m2`` is the sum of squared deviations."""

    count: int = 0
    invalid: int = 0
    min: Any = None
    max: Any = None
    total: Any = 0
    mean: float = 0.0
    m2: float = 0.0
    values: np.ndarray | None = None  # count of each value from the type's minimum
    histogram: np.ndarray | None = None  # over the fixed range


def merge_moments(a: BandPartial, b: BandPartial) -> tuple[float, float]:
    """Chan et al.'s update: the mean and m2 of ``a``'s values and ``b``'s together."""
    if a.count == 0:
        return b.mean, b.m2
    if b.count == 0:
        return a.mean, a.m2
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / n)
    return mean, m2


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return b if a is None else a if b is None else a + b


def merge_band(a: BandPartial, b: BandPartial) -> BandPartial:
    """The partial of ``a``'s windows and then ``b``'s."""
    with np.errstate(invalid="ignore", over="ignore"):
        mean, m2 = merge_moments(a, b)
    present = [p for p in (a, b) if p.count]
    return BandPartial(
        count=a.count + b.count,
        invalid=a.invalid + b.invalid,
        min=min(p.min for p in present) if present else None,
        max=max(p.max for p in present) if present else None,
        total=a.total + b.total,
        mean=mean,
        m2=m2,
        values=_add(a.values, b.values),
        histogram=_add(a.histogram, b.histogram),
    )


@dataclass(frozen=True)
class HistogramSpec:
    """A histogram of ``bins`` equal bins over [``low``, ``high``], as ``np.histogram``."""

    bins: int
    low: Any
    high: Any


class BandSummary(Reduction):
    """Every band's `BandPartial` of every input; the result is ``[[BandPartial]]``.

    Parameters
    ----------
    dtypes : sequence of str
        Each input's data type.
    bands : sequence of int
        Each input's band count.
    count_values : bool
        Keep exact counts of every value of types of 16 bits or fewer.
    histograms : sequence of sequence of HistogramSpec or None
        A fixed-range histogram per input and band, or None for none.
    """

    name = "stats"

    def __init__(
        self,
        dtypes: Sequence[str],
        bands: Sequence[int],
        count_values: bool = False,
        histograms: Sequence[Sequence[HistogramSpec | None]] | None = None,
    ) -> None:
        self.dtypes = tuple(np.dtype(d) for d in dtypes)
        self.bands = tuple(bands)
        self.count_values = count_values
        self.histograms = histograms or [[None] * n for n in self.bands]

    def start(self) -> list[list[BandPartial]]:
        return [[BandPartial() for _ in range(n)] for n in self.bands]

    def update(self, partial: list[list[BandPartial]], block: Block) -> list[list[BandPartial]]:
        return self.merge(partial, [self._input(block, i) for i in range(len(self.bands))])

    def _input(self, block: Block, i: int) -> list[BandPartial]:
        values, valid = block.values[i], block.valid[i].astype(bool, copy=False)
        return [self._band(values[b], valid[b], i, b) for b in range(self.bands[i])]

    def _band(self, values: np.ndarray, valid: np.ndarray, i: int, b: int) -> BandPartial:
        """One band's partial of one window, from the compiled loops where they apply."""
        dtype = self.dtypes[i]
        # The loops' 64-bit integer sums hold 2**31 pixels of any type.
        if values.dtype != dtype or not _summary.compiled(dtype) or values.size >= 2**31:
            return self._band_numpy(values[valid], valid.size, i, b)
        x = np.ascontiguousarray(values).reshape(-1)
        ok = np.ascontiguousarray(valid).reshape(-1).view(np.uint8)
        small = counts_every_value(dtype)
        loop = _summary.small_moments if small else _summary.moments
        count, low, high, total, m2 = loop(x, ok)
        if not (exact_sum_type(dtype) or math.isfinite(total)):
            return self._band_numpy(values[valid], valid.size, i, b)
        part = BandPartial(count=count, invalid=valid.size - count)
        spec = self.histograms[i][b]
        if spec is not None:
            part.histogram = np.histogram(values[valid], spec.bins, (spec.low, spec.high))[0]
        if self.count_values and small:
            info = np.iinfo(dtype)
            part.values = np.zeros(int(info.max) - int(info.min) + 1, np.int64)
            _summary.count_values(x, ok, part.values)
        if count:
            part.min, part.max = dtype.type(low), dtype.type(high)
            part.total = total
            part.mean = total / count
            part.m2 = m2
        return part

    def _band_numpy(self, v: np.ndarray, pixels: int, i: int, b: int) -> BandPartial:
        """`_band` in NumPy, from the valid values ``v`` of ``pixels``."""
        dtype = self.dtypes[i]
        part = BandPartial(count=int(v.size), invalid=pixels - int(v.size))
        spec = self.histograms[i][b]
        if spec is not None:
            part.histogram = np.histogram(v, spec.bins, (spec.low, spec.high))[0]
        if self.count_values and counts_every_value(dtype):
            low = int(np.iinfo(dtype).min)
            size = int(np.iinfo(dtype).max) - low + 1
            part.values = np.bincount(v.astype(np.int64) - low, minlength=size)
        if not v.size:
            return part
        part.min, part.max = v.min(), v.max()
        # Infinities are valid values: their sum, mean and std are inf or NaN, as NumPy's.
        with np.errstate(invalid="ignore", over="ignore"):
            if exact_sum_type(dtype):
                part.total = int(v.sum(dtype=np.int64))
            else:
                part.total = float(v.sum(dtype=np.float64))
            mean = np.float64(v.mean(dtype=np.float64))
            part.mean = float(mean)
            part.m2 = float(np.square(v - mean, dtype=np.float64).sum())
        return part

    def merge(self, first: list[list[BandPartial]], second: list[list[BandPartial]]) -> Any:
        return [
            [merge_band(a, b) for a, b in zip(fa, fb, strict=True)]
            for fa, fb in zip(first, second, strict=True)
        ]


def band_figures(part: BandPartial, dtype: np.dtype) -> dict[str, Any]:
    """The figures of one band: count, invalid, min, max, sum, mean, std (population)."""
    figures: dict[str, Any] = {"count": part.count, "invalid": part.invalid}
    if not part.count:
        return {**figures, "min": None, "max": None, "sum": 0, "mean": None, "std": None}
    mean = part.total / part.count if exact_sum_type(dtype) else part.mean
    if not np.isfinite(mean):
        # Chan's update gives NaN once an infinity is in: inf - inf. The sum knows better.
        mean = part.total / part.count
    return {
        **figures,
        "min": part.min.item(),
        "max": part.max.item(),
        "sum": part.total,
        "mean": float(mean),
        "std": float(np.sqrt(part.m2 / part.count)),
    }


def histogram_of_values(counts: np.ndarray, dtype: np.dtype, spec: HistogramSpec) -> np.ndarray:
    """``np.histogram`` of the values counted in ``counts`` (a count per value of ``dtype``)."""
    low = int(np.iinfo(dtype).min)
    present = np.flatnonzero(counts)
    values = (present + low).astype(dtype)
    hist = np.histogram(values, spec.bins, (spec.low, spec.high), weights=counts[present])[0]
    return np.rint(hist).astype(np.int64)


def with_histograms(partials: list[list[BandPartial]], histograms: list[list[Any]]) -> None:
    """Put histograms computed in a later pass into ``partials``."""
    for bands, hists in zip(partials, histograms, strict=True):
        for i, hist in enumerate(hists):
            if hist is not None:
                bands[i] = dataclasses.replace(bands[i], histogram=hist)
