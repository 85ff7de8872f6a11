"""Benchmark the focal kernels per core: focal-mean, focal-max and focal-min on one
512 x 512 float32 window at sizes 3 to 31 (MPix/s, one thread), against
scipy.ndimage.uniform_filter and maximum_filter / minimum_filter on the same window.

    $ python scripts/bench_focal.py [--runs 7] [--write]

The compiled kernels skip missing pixels (nodata, NaN, a mask) and repeat the edge pixels
past the raster's edge; scipy's filters know no nodata (``mode="nearest"`` repeats the edge
too). Each pair's outputs are compared before they are timed: equal for max and min, within
float64 rounding for the mean. A second row per size times the kernels with 1% of the
pixels nodata, which the scipy filters cannot do.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from affine import Affine
from benchlib import argument_parser, write_section
from rasterio.windows import Window
from scipy import ndimage

from mpraster.builtin_kernels import focal_max, focal_mean, focal_min
from mpraster.kernels import KernelContext

WINDOW = 512
SIZES = (3, 5, 15, 31)
NODATA = -9999.0


def window_of(size: int, nodata_share: float = 0.0) -> tuple[np.ndarray, KernelContext]:
    """A smooth float32 DEM window grown by the halo of ``size``, and its context as the
    engine gives it (the window at row and column 512 of a larger raster)."""
    half = size // 2
    side = WINDOW + 2 * half
    r, c = np.mgrid[0:side, 0:side]
    rng = np.random.default_rng(size)
    dem = 300 + 40 * np.sin(r / 37.0) * np.cos(c / 23.0) + rng.normal(0, 0.5, (side, side))
    dem = dem.astype(np.float32)
    if nodata_share:
        dem[rng.random((side, side)) < nodata_share] = NODATA
    window = Window(WINDOW, WINDOW, WINDOW, WINDOW)
    read = Window(WINDOW - half, WINDOW - half, side, side)
    ctx = KernelContext(window, read, Affine(30.0, 0, 0, 0, -30.0, 0), (NODATA,), half)
    return dem[np.newaxis], ctx


def rate(func, runs: int) -> float:
    """Output MPix/s of ``func`` (one 512 x 512 window) in the fastest of ``runs`` calls.

    The fastest, not the median, as ``timeit`` advises: on a shared machine the slower
    calls measure the neighbours, not the kernel. A few calls first, so that the core has
    left its idle clock before the first timed one.
    """
    for _ in range(3):
        func()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return WINDOW * WINDOW / 1e6 / min(times)


def checked(size: int) -> tuple[np.ndarray, KernelContext, np.ndarray]:
    """The window, its context and the window without its halo, after checking that the
    kernels and scipy's filters agree on it (scipy sees the halo too: the same pixels)."""
    src, ctx = window_of(size)
    half = size // 2
    inner = (slice(half, -half), slice(half, -half))
    full = src[0].astype(np.float64)
    mean = ndimage.uniform_filter(full, size, mode="nearest")[inner]
    got = focal_mean(src, size=size, ctx=ctx)[0]
    if not np.allclose(got, mean.astype(np.float32), rtol=1e-6, atol=0):
        raise SystemExit(f"focal-mean size={size} disagrees with uniform_filter")
    for kernel, peer in ((focal_max, ndimage.maximum_filter), (focal_min, ndimage.minimum_filter)):
        if not np.array_equal(kernel(src, size=size, ctx=ctx)[0], peer(src[0], size)[inner]):
            raise SystemExit(f"{kernel.__name__} size={size} disagrees with scipy")
    return src, ctx, np.ascontiguousarray(src[0][inner])


def size_row(size: int, runs: int) -> str:
    """One row of the table: every kernel and filter at ``size``."""
    src, ctx, inner = checked(size)
    holes, holes_ctx = window_of(size, nodata_share=0.01)
    ours = {
        name: rate(lambda kernel=kernel, a=a, c=c: kernel(a, size=size, ctx=c), runs)
        for name, kernel, a, c in (
            ("mean", focal_mean, src, ctx),
            ("mean holes", focal_mean, holes, holes_ctx),
            ("max", focal_max, src, ctx),
            ("max holes", focal_max, holes, holes_ctx),
            ("min", focal_min, src, ctx),
        )
    }
    scipy = {
        name: rate(lambda peer=peer: peer(inner, size, mode="nearest"), runs)
        for name, peer in (
            ("mean", ndimage.uniform_filter),
            ("max", ndimage.maximum_filter),
            ("min", ndimage.minimum_filter),
        )
    }
    cells = [str(size)]
    for name in ("mean", "max", "min"):
        cells += [f"{ours[name]:.0f}", f"{scipy[name]:.0f}", f"{ours[name] / scipy[name]:.2f}×"]
        if name != "min":
            cells.append(f"{ours[name + ' holes']:.0f}")
    return "| " + " | ".join(cells) + " |"


def focal_table(runs: int) -> str:
    header = (
        "| size | focal-mean | uniform_filter | mean / scipy | focal-mean, 1% nodata "
        "| focal-max | maximum_filter | max / scipy | focal-max, 1% nodata "
        "| focal-min | minimum_filter | min / scipy |"
    )
    rows = [header, "|---" * 12 + "|"]
    rows += [size_row(size, runs) for size in SIZES]
    return "\n".join(rows)


def main() -> int:
    parser = argument_parser(__doc__, runs=7)
    args = parser.parse_args()
    import scipy

    text = (
        f"Command: `python scripts/bench_focal.py --runs {args.runs} --write` "
        f"(scipy {scipy.__version__}, numpy {np.__version__})\n\n"
        f"**Output MPix/s on one core: one {WINDOW} x {WINDOW} float32 window, fastest of "
        f"{args.runs} calls**\n\n" + focal_table(args.runs)
    )
    print(text)
    if args.write:
        write_section("focal", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
