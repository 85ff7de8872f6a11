"""Exact percentiles of rasters too big for memory, as NumPy's ``np.percentile`` gives them.

A percentile (NumPy's default, "linear") interpolates between two order statistics, the
values of rank ``floor(h)`` and ``floor(h) + 1`` with ``h = (n - 1) * q / 100``. For types
of 16 bits or fewer they come from exact counts of every value (`mpraster.summary`). For
other types they are found by refinement, each step one pass of the engine over the
raster (`RankSearch`): values inside an interval known to hold the rank are counted into
equal bins; the bin holding the rank becomes the next interval, bounded by the least and
greatest value in it (a pass of its own), until the interval holds few enough values to
gather and sort. The bin of a value is computed by one monotone formula, so a bin's values
are exactly those between its least and greatest: nothing is lost between passes. Values
are compared as float64, so 64-bit integers beyond 2**53 are rounded.

A window answers a pass in compiled loops (``ext/_rank_search.pyx``, the same bin formula):
one pass over it for a count, two for every bin a pass bounds or gathers, whatever their
number; gathered values are joined once, when the search learns them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpraster import _rank_search, _summary
from mpraster.reductions import Block, Reduction

# Bins a counting pass splits an interval into; a pass's partial holds this many counts.
BINS = 4096
# An interval with at most this many values is gathered and sorted: the last pass.
GATHER_LIMIT = 1_000_000


def ranks_of(count: int, percentiles: Sequence[float]) -> list[tuple[int, int, float]]:
    """Each percentile's two ranks (0-based) and weight, as ``np.percentile`` (linear)."""
    out = []
    for q in percentiles:
        virtual = (count - 1) * (np.float64(q) / 100)
        below = int(np.floor(virtual))
        out.append((below, min(below + 1, count - 1), float(virtual - below)))
    return out


def interpolate(a: float, b: float, gamma: float) -> float:
    """NumPy's ``_lerp``: from ``a`` when the weight is under 0.5, from ``b`` otherwise."""
    a, b, t = np.float64(a), np.float64(b), np.float64(gamma)
    diff = b - a
    return float(b - diff * (1 - t) if t >= 0.5 else a + diff * t)


def value_of_rank_from_counts(counts: np.ndarray, low: int, rank: int) -> int:
    """The value of ``rank`` (0-based) among values counted in ``counts`` from ``low``."""
    return int(np.searchsorted(np.cumsum(counts), rank, side="right")) + low


def bin_index(v: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Each value's bin among ``bins`` equal bins of [low, high]; monotone in the value.

    Halves first, so that the width of [-max, max] does not overflow.
    """
    scale = bins / (high * 0.5 - low * 0.5)
    index = np.floor((v * 0.5 - low * 0.5) * scale)
    return np.clip(index, 0, bins - 1).astype(np.int64)


@dataclass(frozen=True)
class Request:
    """What one pass asks of the values of input ``i``'s band ``b`` within [low, high]
    (and in bin ``bin`` of it, if given): ``"count"`` into bins, ``"bounds"`` (least and
    greatest) or ``"gather"``."""

    i: int
    b: int
    low: float
    high: float
    kind: str
    bin: int | None = None


def _numpy_answer(block: Block, r: Request, bands: dict[tuple[int, int], np.ndarray]) -> Any:
    """One window's answer to ``r``, in NumPy (for types the compiled loops do not take)."""
    v = _selected(block, r, bands)
    if r.kind == "count":
        return np.bincount(bin_index(v, r.low, r.high, BINS), minlength=BINS)
    if r.kind == "bounds":
        return (v.min(), v.max()) if v.size else None
    return [v]


def _flat(block: Block, i: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Band ``b`` of input ``i`` and its validity, flat, as the compiled loops take them."""
    values = np.ascontiguousarray(block.values[i][b]).reshape(-1)
    valid = np.ascontiguousarray(block.valid[i][b], dtype=bool).reshape(-1).view(np.uint8)
    return values, valid


def _bin_answers(block: Block, requests: Sequence[Request]) -> list[Any]:
    """The answers to ``requests`` about bins of one band's one interval, in two passes
    over the window whatever their number: one bounds and counts every bin asked about,
    one gathers the values of the bins to gather."""
    r0 = requests[0]
    values, valid = _flat(block, r0.i, r0.b)
    scale = BINS / (r0.high * 0.5 - r0.low * 0.5)  # as bin_index's
    bins = sorted({r.bin for r in requests})
    slots = np.full(BINS, -1, np.int64)
    slots[bins] = np.arange(len(bins))
    counts = np.zeros(len(bins), np.int64)
    least, greatest = np.zeros(len(bins)), np.zeros(len(bins))
    _rank_search.scan_bins(values, valid, r0.low, r0.high, scale, slots, counts, least, greatest)
    gathered = {r.bin for r in requests if r.kind == "gather"}
    if gathered:
        # Only the bins to gather: a bin to bound holds too many values to gather.
        slots[[b for b in bins if b not in gathered]] = -1
        sizes = np.where(slots[bins] >= 0, counts, 0)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        out = np.empty(int(offsets[-1]))
        _rank_search.gather_bins(
            values, valid, r0.low, r0.high, scale, slots, offsets[:-1].copy(), out
        )
    answers = []
    for r in requests:
        k = bins.index(r.bin)
        if r.kind == "bounds":
            answers.append((least[k], greatest[k]) if counts[k] else None)
        else:
            answers.append([out[offsets[k] : offsets[k + 1]]])
    return answers


def _selected(block: Block, r: Request, bands: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """The values of ``block`` that ``r`` asks about; ``bands`` caches each band's valid
    values as float64, which several requests share."""
    v = bands.get((r.i, r.b))
    if v is None:
        v = bands[(r.i, r.b)] = block.values[r.i][r.b][block.valid[r.i][r.b]].astype(np.float64)
    v = v[(v >= r.low) & (v <= r.high)]
    if r.bin is not None:
        v = v[bin_index(v, r.low, r.high, BINS) == r.bin]
    return v


class RankSearch(Reduction):
    """One refinement pass: the answer to every `Request`, merged over the windows."""

    name = "percentiles"

    def __init__(self, requests: Sequence[Request]) -> None:
        self.requests = tuple(requests)

    def start(self) -> list[Any]:
        return [None] * len(self.requests)

    def update(self, partial: list[Any], block: Block) -> list[Any]:
        answers: list[Any] = [None] * len(self.requests)
        bands: dict[tuple[int, int], np.ndarray] = {}
        binned: dict[tuple[int, int, float, float], list[int]] = {}
        for k, r in enumerate(self.requests):
            if not _summary.compiled(block.values[r.i].dtype):
                answers[k] = _numpy_answer(block, r, bands)
            elif r.kind == "count":
                answers[k] = np.zeros(BINS, np.int64)
                scale = BINS / (r.high * 0.5 - r.low * 0.5)  # as bin_index's
                _rank_search.count_bins(*_flat(block, r.i, r.b), r.low, r.high, scale, answers[k])
            elif r.bin is None:
                answers[k] = [_rank_search.gather_all(*_flat(block, r.i, r.b), r.low, r.high)]
            else:
                binned.setdefault((r.i, r.b, r.low, r.high), []).append(k)
        for ks in binned.values():
            found = _bin_answers(block, [self.requests[k] for k in ks])
            for k, answer in zip(ks, found, strict=True):
                answers[k] = answer
        return self.merge(partial, answers)

    def merge(self, first: list[Any], second: list[Any]) -> list[Any]:
        return [
            _merge_answer(r, a, b) for r, a, b in zip(self.requests, first, second, strict=True)
        ]


def _merge_answer(r: Request, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return b if a is None else a
    if r.kind == "count":
        return a + b
    if r.kind == "bounds":
        return (min(a[0], b[0]), max(a[1], b[1]))
    return a + b  # lists of arrays: joined once, not at every merge


@dataclass
class _Search:
    """Where the value of one rank of one band is known to be."""

    i: int
    b: int
    rank: int
    low: float
    high: float
    below: int  # values less than low
    inside: int  # values within [low, high]
    bin: int | None = None  # the bin of [low, high] holding it, once counted
    value: float | None = None

    def request(self, gather_limit: int) -> Request | None:
        if self.value is not None:
            return None
        if self.bin is not None:
            kind = "gather" if self.inside <= gather_limit else "bounds"
            return Request(self.i, self.b, self.low, self.high, kind, self.bin)
        if self.low == self.high:
            self.value = self.low
            return None
        kind = "gather" if self.inside <= gather_limit else "count"
        return Request(self.i, self.b, self.low, self.high, kind)

    def learn(self, r: Request, answer: Any) -> None:
        if r.kind == "gather":
            self.value = float(np.sort(np.concatenate(answer))[self.rank - self.below])
        elif r.kind == "count":
            cumulative = np.cumsum(answer)
            self.bin = int(np.searchsorted(cumulative, self.rank - self.below, side="right"))
            self.below += int(cumulative[self.bin] - answer[self.bin])
            self.inside = int(answer[self.bin])
        else:
            self.low, self.high = float(answer[0]), float(answer[1])
            self.bin = None


def search_ranks(
    targets: Sequence[tuple[int, int, int, float, float, int]],
    run_pass: Callable[[Reduction], Any],
    gather_limit: int = GATHER_LIMIT,
) -> dict[tuple[int, int, int], float]:
    """The value of each rank, by as many passes of ``run_pass`` as it takes.

    ``targets`` are (input, band, rank, min, max, count) of the band's valid values.
    """
    searches = [_Search(i, b, k, lo, hi, 0, n) for i, b, k, lo, hi, n in targets]
    while True:
        asked = {s_id: s.request(gather_limit) for s_id, s in enumerate(searches)}
        requests = sorted({r for r in asked.values() if r is not None}, key=repr)
        if not requests:
            break
        answers = dict(zip(requests, run_pass(RankSearch(requests)), strict=True))
        for s_id, r in asked.items():
            if r is not None:
                searches[s_id].learn(r, answers[r])
    return {(s.i, s.b, s.rank): s.value for s in searches}
