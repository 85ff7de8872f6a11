"""focal-mean, focal-max and focal-min: every windowing gives the whole raster's bytes
(windows smaller than the neighbourhood, edges, nodata, masks, NaN, infinities), and the
whole raster agrees with a NumPy reference: exactly for extremes and for the mean of
integers up to 32 bits, within a stated bound for the mean of floats."""

import math

import numpy as np
import pytest
import rasterio
from helpers import synthetic
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.transform import from_origin
from rasterio.windows import Window

import mpraster
from mpraster import builtin_kernels
from mpraster.kernels import KernelContext
from mpraster.sample import write_raster

KERNELS = {
    "mean": builtin_kernels.focal_mean,
    "max": builtin_kernels.focal_max,
    "min": builtin_kernels.focal_min,
}
ROWS, COLS = 29, 23


def tiles(rows: int, cols: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(row, col, height, width) of height x width windows covering the grid."""
    return [
        (row, col, min(height, rows - row), min(width, cols - col))
        for row in range(0, rows, height)
        for col in range(0, cols, width)
    ]


def windowings(rows: int, cols: int) -> dict[str, list[tuple[int, int, int, int]]]:
    """Ways to cut the grid: the engine's 16-pixel tiles, windows of odd sizes (every
    offset modulo the neighbourhood's size), one-row strips and three-column strips, all
    smaller than a 31-pixel neighbourhood."""
    return {
        "16x16": tiles(rows, cols, 16, 16),
        "7x5": tiles(rows, cols, 7, 5),
        "rows": tiles(rows, cols, 1, cols),
        "columns": tiles(rows, cols, rows, 3),
    }


def run_windows(op, data, size, windows, nodata=None, mask=None):
    """The kernel run window by window as the engine runs it: each window's read grown by
    the halo, edge pixels (and mask values) repeated past the raster's edge, the context
    holding the read window at its raster offsets; the results put back together."""
    half = size // 2
    padded = np.pad(data, ((0, 0), (half, half), (half, half)), mode="edge")
    padded_mask = None if mask is None else np.pad(mask, half, mode="edge")
    out = None
    for row, col, height, width in windows:
        grown = (slice(row, row + height + 2 * half), slice(col, col + width + 2 * half))
        ctx = KernelContext(
            window=Window(col, row, width, height),
            read=Window(col - half, row - half, width + 2 * half, height + 2 * half),
            transform=from_origin(0, 0, 1, 1),
            nodata=(nodata,),
            halo=half,
            masks=(None if mask is None else padded_mask[grown],),
        )
        result = KERNELS[op](padded[(slice(None), *grown)], size=size, ctx=ctx)
        if out is None:
            out = np.empty(data.shape, result.dtype)
        out[:, row : row + height, col : col + width] = result
    return out


def assert_every_windowing_is_the_whole(op, data, size, nodata=None, mask=None):
    """The whole raster computed in one window, after checking that every windowing gives
    its bytes."""
    rows, cols = data.shape[1:]
    whole = run_windows(op, data, size, [(0, 0, rows, cols)], nodata, mask)
    for name, windows in windowings(rows, cols).items():
        got = run_windows(op, data, size, windows, nodata, mask)
        assert got.tobytes() == whole.tobytes(), f"{name} windows differ from the whole raster"
    return whole


def reference(op, band, valid, size):
    """Per pixel, from the valid pixels of its neighbourhood (edges repeated): the exact
    mean (math.fsum, one rounding, then the division; NumPy's sum where an infinity is
    in it) and the mean of their absolute values, both float64; or the max (min) in the
    band's type. Centres that are not valid are left NaN (0 for max and min)."""
    half = size // 2
    hoods = sliding_window_view(np.pad(band, half, mode="edge"), (size, size))
    oks = sliding_window_view(np.pad(valid, half, mode="edge"), (size, size))
    out = np.full(band.shape, np.nan) if op == "mean" else np.zeros(band.shape, band.dtype)
    scale = np.zeros(band.shape)
    for i, j in np.ndindex(band.shape):
        if not valid[i, j]:
            continue
        hood = hoods[i, j][oks[i, j]]
        if op == "mean":
            values = hood.astype(np.float64)
            if np.isinf(values).any():
                with np.errstate(invalid="ignore"):  # inf - inf: NaN, as the kernel gives
                    total = values.sum()
            else:
                total = math.fsum(values)
            out[i, j] = total / len(values)
            scale[i, j] = np.abs(values).mean()
        else:
            out[i, j] = hood.max() if op == "max" else hood.min()
    return out, scale


def mean_bound(size, scale, dtype):
    """How far the mean may be from the exact one: the column sums and the row sums each
    add ``size`` terms in float64 (suffix + prefix), each sum off by at most (size - 1)
    half-ulps of the sum of absolute values, 2 * size * 2**-53 * mean(|x|) in all; plus the
    float32 output's own rounding (half an ulp) for inputs narrower than float64."""
    bound = size * np.finfo(np.float64).eps * scale
    return bound if dtype == np.float64 else bound + np.finfo(np.float32).eps * scale


def holes(shape, share, seed):
    return np.random.default_rng(seed).random(shape) < share


# ---------------------------------------------------------------- windowings


def float_raster(rows=ROWS, cols=COLS, dtype=np.float32):
    """A smooth surface with noise over 16 orders of magnitude (so that float64 sums round),
    nodata holes, NaN (missing without being nodata), +inf and -inf (valid values, side by
    side and alone) and a run of -0.0."""
    r, c = np.mgrid[0:rows, 0:cols]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (rows, cols)) * 10.0 ** rng.integers(-8, 8, (rows, cols))
    data = (300 + 40 * np.sin(r / 5.0) * np.cos(c / 3.0) + noise).astype(dtype)
    data[holes(data.shape, 0.08, 1)] = -9999.0
    data[holes(data.shape, 0.03, 2)] = np.nan
    for (row, col), value in {
        (4, 5): np.inf,
        (20, 17): np.inf,
        (4, 8): -np.inf,
        (25, 2): -np.inf,
    }.items():
        data[row % rows, col % cols] = value
    data[12 % rows, 3:9] = -0.0
    return data[np.newaxis]


def one_missing_pixel():
    data = float_raster().astype(np.float64)
    data[np.isnan(data) | np.isinf(data) | (data == -9999.0)] = 1 / 3
    data[0, 17, 9] = np.nan
    return data


CASES = {
    "float32 nodata NaN inf": lambda: (float_raster(), -9999.0, None),
    "float64 nodata NaN inf": lambda: (float_raster(dtype=np.float64), -9999.0, None),
    "float32 mask": lambda: (
        float_raster(),
        None,
        np.where(holes((ROWS, COLS), 0.1, 3), 0, 255).astype(np.uint8),
    ),
    # One missing pixel: most windows have none (the loops skip counting there) while
    # the whole raster has one; the two ways must agree.
    "float64 one NaN pixel": lambda: (one_missing_pixel(), None, None),
    "int16 nodata": lambda: (
        (np.arange(ROWS * COLS, dtype=np.int16).reshape(1, ROWS, COLS) * 37) % 1001,
        0,
        None,
    ),
    "raster smaller than the neighbourhood": lambda: (float_raster(5, 4), -9999.0, None),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("size", [3, 5, 31])
@pytest.mark.parametrize("op", ["mean", "max", "min"])
def test_every_windowing_gives_the_whole_rasters_bytes(op, size, case):
    data, nodata, mask = CASES[case]()
    whole = assert_every_windowing_is_the_whole(op, data, size, nodata, mask)
    valid = ~np.isnan(data[0]) & (data[0] != nodata)
    if mask is not None:
        valid &= mask > 0
    expected, scale = reference(op, data[0], valid, size)
    if op == "mean":
        got = whole[0].astype(np.float64)
        assert np.array_equal(np.isnan(got) & valid, np.isnan(expected) & valid)
        finite = valid & np.isfinite(expected)
        error = np.abs(got[finite] - expected[finite])
        assert (error <= mean_bound(size, scale, data.dtype)[finite]).all()
        infinite = valid & np.isinf(expected)
        assert np.array_equal(got[infinite], expected[infinite])
    else:
        assert np.array_equal(whole[0][valid], expected[valid])
    # Nodata where the centre is missing (without a nodata value: NaN for the mean, 0 for
    # max and min).
    fill = nodata if nodata is not None else np.nan if op == "mean" else 0
    assert np.array_equal(whole[0][~valid], np.full((~valid).sum(), fill, whole.dtype), True)


def test_infinities_stay_in_their_own_neighbourhoods():
    """A running sum that met +inf could never give a finite sum again, nor one that met
    +inf and -inf anything but NaN. Suffix + prefix sums add only a neighbourhood's own
    pixels: inf where it holds +inf, NaN where it holds both, finite everywhere else."""
    data = np.full((1, 30, 40), 2.5, dtype=np.float64)
    data[0, 10, 10] = np.inf
    data[0, 10, 13] = -np.inf
    got = assert_every_windowing_is_the_whole("mean", data, 5)[0]
    near_plus = np.zeros((30, 40), bool)
    near_plus[8:13, 8:13] = True
    near_minus = np.zeros((30, 40), bool)
    near_minus[8:13, 11:16] = True
    assert np.isnan(got[near_plus & near_minus]).all()
    assert (got[near_plus & ~near_minus] == np.inf).all()
    assert (got[near_minus & ~near_plus] == -np.inf).all()
    assert (got[~near_plus & ~near_minus] == 2.5).all()


# ---------------------------------------------------------------- every dtype


@pytest.mark.parametrize("size", [3, 31])
@pytest.mark.parametrize("op", ["mean", "max", "min"])
@pytest.mark.parametrize("dtype", builtin_kernels.REVERSE_DTYPES)
def test_every_dtype_against_numpy(dtype, op, size):
    """Extremes exact in every type (64-bit integers compared as integers); the mean exact
    for integers up to 32 bits (their float64 sums are exact), else within mean_bound."""
    data = synthetic((1, ROWS, COLS), dtype, seed=5)
    if np.dtype(dtype).kind == "f":
        # Sums of the type's largest values would overflow float64 (as they do in NumPy);
        # a wide range with cancellation stays, with NaN and a lone infinity.
        data[0, 0, :4] = [1e-3, -2.0, -0.0, np.inf]
        data[0, 9, 9] = np.nan
    data[0][holes((ROWS, COLS), 0.08, 6)] = 7
    whole = assert_every_windowing_is_the_whole(op, data, size, nodata=7)
    valid = data[0] != 7
    if np.dtype(dtype).kind == "f":
        valid &= ~np.isnan(data[0])
    expected, scale = reference(op, data[0], valid, size)
    if op != "mean":
        assert whole.dtype == dtype
        assert np.array_equal(whole[0][valid], expected[valid])
    else:
        got = whole[0].astype(np.float64)
        out_type = np.float64 if dtype == "float64" else np.float32
        assert whole.dtype == out_type
        if np.dtype(dtype).kind in "iu" and np.dtype(dtype).itemsize <= 4:
            assert np.array_equal(whole[0][valid], expected[valid].astype(out_type))
        else:
            finite = valid & np.isfinite(expected)
            error = np.abs(got[finite] - expected[finite])
            assert (error <= mean_bound(size, scale, np.dtype(dtype))[finite]).all()
            infinite = valid & ~np.isfinite(expected)
            assert np.array_equal(got[infinite], expected[infinite])
    assert (whole[0][~valid] == 7).all()


# ---------------------------------------------------------------- through the engine


def canonical_nan(array):
    return np.where(np.isnan(array), np.nan, array)


@pytest.mark.parametrize(
    "mode,io,jobs,block",
    [
        ("threads", "main", 1, 16),
        ("threads", "workers", 3, 16),
        ("processes", "main", 2, 16),
        # One tile cut into row strips, one per worker: windows at rows 0 and 20.
        ("threads", "main", 2, 48),
    ],
)
@pytest.mark.parametrize("op,size", [("mean", 3), ("mean", 31), ("max", 5)])
def test_runs_give_the_whole_rasters_bytes(tmp_path, op, size, mode, io, jobs, block):
    """mpraster.run in tiles smaller than the neighbourhood, in strips, in every mode: the
    pixels of the kernel run on the whole raster at once (float64, whose last bits show
    any difference in the order of the sums), with NaN, infinities and a mask."""
    data = float_raster(40, 37, np.float64)
    mask = np.where(holes((40, 37), 0.05, 4), 0, 255).astype(np.uint8)
    # No nodata value: GDAL's mask flags let a per-dataset mask take its place.
    src = write_raster(tmp_path / "in.tif", data)
    with rasterio.open(src, "r+") as ds:
        ds.write_mask(mask)
    out = tmp_path / "out.tif"
    params = {"size": size}
    mpraster.run(
        src, out, f"focal-{op}", mode=mode, io=io, jobs=jobs, block_size=block, params=params
    )
    whole = run_windows(op, data, size, [(0, 0, 40, 37)], None, mask)
    with rasterio.open(out) as ds:
        got = ds.read()
    # NaN's sign aside: +inf + -inf gives -NaN, and GDAL writes a tile that is all nodata
    # (NaN here) as its own nodata value, +NaN. Every other bit must agree.
    assert canonical_nan(got).tobytes() == canonical_nan(whole).tobytes()
