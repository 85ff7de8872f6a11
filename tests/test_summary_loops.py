"""The compiled per-window loops of `mpraster stats` (ext/_summary.pyx, ext/_rank_search.pyx)
against NumPy: every pixel type, the types' extremes, invalid pixels, empty and strided
windows, infinities, the validity of nodata values a type cannot hold, and the answers to
a percentile search's requests."""

from fractions import Fraction

import numpy as np
import pytest

from mpraster import _summary
from mpraster.block_reader import validity
from mpraster.percentiles import BINS, RankSearch, Request, _numpy_answer
from mpraster.reductions import Block
from mpraster.summary import BandSummary
from mpraster.validity import valid_pixels

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
DTYPES += ["float32", "float64"]


def _values(dtype, shape, rng):
    """Random values with the type's extremes in them (for floats: a wide spread)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = (rng.normal(0, 1e4, shape) * rng.integers(1, 50, shape)).astype(dt)
        data.flat[0], data.flat[-1] = 1e30, -1e30
        return data
    info = np.iinfo(dt)
    data = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dt)
    data.flat[0], data.flat[-1] = info.min, info.max
    return data


def _partial(values, valid, count_values=False):
    """Each band's partial of one window, by the compiled loops and by NumPy."""
    summary = BandSummary([values.dtype.name], [values.shape[0]], count_values)
    block = Block(0, None, (values,), (valid,))
    compiled = summary.update(summary.start(), block)[0]
    numpy = [summary._band_numpy(values[b][valid[b]], valid[b].size, 0, b) for b in range(3)]
    return compiled, numpy


@pytest.mark.parametrize("dtype", DTYPES)
def test_window_figures_match_numpy(dtype):
    rng = np.random.default_rng(7)
    # 3 x 130 x 1031: more than one chunk of every loop, and a ragged tail.
    values = _values(dtype, (3, 130, 1031), rng)
    valid = rng.random(values.shape) < 0.8
    valid[1] = False  # an empty band
    valid[2] = False
    valid[2, 64, 500] = True  # one valid pixel
    compiled, numpy = _partial(values, valid, count_values=True)
    for ours, theirs in zip(compiled, numpy, strict=True):
        assert (ours.count, ours.invalid) == (theirs.count, theirs.invalid)
        assert ours.min == theirs.min and ours.max == theirs.max
        assert type(ours.min) is type(theirs.min)
        if values.dtype.kind in "iu" and values.dtype.itemsize <= 4:
            assert ours.total == theirs.total and isinstance(ours.total, int)
        else:
            np.testing.assert_allclose(ours.total, theirs.total, rtol=1e-13)
        np.testing.assert_allclose(ours.mean, theirs.mean, rtol=1e-13)
        np.testing.assert_allclose(ours.m2, theirs.m2, rtol=1e-11, atol=1e-300)
        if theirs.values is not None:
            assert np.array_equal(ours.values, theirs.values)
    small = values.dtype.kind in "iu" and values.dtype.itemsize <= 2
    loop = _summary.small_moments if small else _summary.moments
    v = values[0][valid[0]]
    got = loop(values[0].reshape(-1), valid[0].reshape(-1).view(np.uint8))
    assert got[:3] == (v.size, v.min(), v.max())
    assert loop(values[1].reshape(-1), valid[1].reshape(-1).view(np.uint8)) == (
        0,
        None,
        None,
        0,
        0.0,
    )
    if small:
        # Exact sums of squares: m2 is the exact value, rounded once.
        v = [int(x) for x in values[0][valid[0]]]
        n, s = len(v), sum(v)
        assert compiled[0].m2 == float(Fraction(n * sum(x * x for x in v) - s * s, n))


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32"])
def test_strided_windows_give_the_bits_of_contiguous_ones(dtype):
    rng = np.random.default_rng(3)
    big = _values(dtype, (3, 40, 90), rng)
    valid = rng.random(big.shape) < 0.7
    strided, strided_valid = big[:, ::2, 1::3], valid[:, ::2, 1::3]
    assert not strided.flags.c_contiguous
    ours, _ = _partial(strided, strided_valid)
    again, _ = _partial(strided.copy(), strided_valid.copy())
    assert ours == again


def test_infinities_and_nan_marked_valid_go_through_numpy():
    values = np.arange(3 * 8 * 8, dtype="float32").reshape(3, 8, 8)
    values[0, 1, 1] = np.inf
    values[1, 2, 2] = -np.inf
    values[1, 3, 3] = np.inf
    values[2, 4, 4] = np.nan  # a reduction's own block may mark NaN valid
    compiled, numpy = _partial(values, np.ones(values.shape, bool))
    for ours, theirs in zip(compiled, numpy, strict=True):
        assert np.array_equal(
            [ours.count, ours.min, ours.max, ours.total, ours.mean, ours.m2],
            [theirs.count, theirs.min, theirs.max, theirs.total, theirs.mean, theirs.m2],
            equal_nan=True,
        )


@pytest.mark.parametrize(
    "dtype,nodata",
    [
        ("uint8", 0.0),
        ("uint8", -9999.0),  # out of the type's range: no pixel is nodata
        ("uint8", 300.0),
        ("int16", -32768.0),
        ("int16", 1.5),  # not an integer: no pixel is nodata
        ("uint32", 4294967295.0),
        ("int64", 2.0**53),  # 64-bit integers compare as float64, as NumPy's
        ("uint64", 0.0),
        ("float32", 0.1),  # compared as float32, as NumPy compares
        ("float32", float("nan")),
        ("float64", -9999.0),
    ],
)
def test_validity_matches_numpy(dtype, nodata):
    rng = np.random.default_rng(11)
    data = _values(dtype, (3, 37, 41), rng)
    if np.dtype(dtype).kind == "f":
        data[:, ::7, ::5] = np.float32(0.1) if dtype == "float32" else -9999.0
        data[1, ::3, ::3] = np.nan
    else:
        info = np.iinfo(dtype)
        held = nodata == int(nodata) and info.min <= nodata <= info.max
        data[:, ::7, ::5] = int(nodata) if held else 7
    if dtype == "int64":
        data[0, 0, :3] = [2**53, 2**53 + 1, 2**53 - 1]
    mask = np.where(rng.random(data.shape[1:]) < 0.2, 0, 255).astype(np.uint8)
    bands = (nodata, None, nodata)
    for m in (None, mask):
        expected = valid_pixels(data, bands, m)
        if data.dtype.kind == "f":
            expected &= ~np.isnan(data)
        assert np.array_equal(validity(data, bands, m), expected)


def test_compiled_types():
    assert all(_summary.compiled(np.dtype(d)) for d in DTYPES)
    assert not _summary.compiled(np.dtype("complex64"))
    assert not _summary.compiled(np.dtype(">i2"))  # not in native byte order


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "float32", "float64"])
def test_rank_search_answers_match_numpy(dtype):
    rng = np.random.default_rng(5)
    values = _values(dtype, (2, 70, 90), rng)
    values[1, :10] = values[1, 10:20]  # repeats: crowded bins
    valid = rng.random(values.shape) < 0.9
    block = Block(0, None, (values,), (valid,))
    v = values[1][valid[1]].astype(np.float64)
    low, high = float(v.min()), float(v.max())
    mid = float(np.median(v))
    counts = _numpy_answer(block, Request(0, 1, low, high, "count"), {})
    full = [int(b) for b in np.flatnonzero(counts)]
    empty = int(np.flatnonzero(counts == 0)[0])
    requests = [
        Request(0, 1, low, high, "count"),
        Request(0, 1, mid, high, "count"),
        Request(0, 1, low, mid, "gather"),
        Request(0, 0, low, high, "gather"),
        *(Request(0, 1, low, high, kind, b) for b in full[:3] for kind in ("bounds", "gather")),
        Request(0, 1, low, high, "bounds", full[-1]),
        Request(0, 1, low, high, "gather", empty),
        Request(0, 1, low, high, "bounds", empty),
    ]
    search = RankSearch(requests)
    got = search.update(search.start(), block)
    for r, answer in zip(requests, got, strict=True):
        expected = _numpy_answer(block, r, {})
        if r.kind == "gather":
            assert np.array_equal(np.concatenate(answer), np.concatenate(expected))
        elif r.kind == "count":
            assert answer.shape == (BINS,) and np.array_equal(answer, expected)
        else:
            assert answer == expected
