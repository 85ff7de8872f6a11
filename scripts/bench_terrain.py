"""Terrain against gdaldem and xarray-spatial: slope and hillshade on a real DEM, as whole
processes, every output checked before anything is timed.

    $ python scripts/bench_terrain.py [--size 8192] [--runs 3] [--kernels slope,hillshade] [--write]

The DEM is the real terrain matplotlib ships (``jacksboro_fault_dem.npz``: 344 x 403 SRTM
heights in metres, 3 arc-seconds), mirror-tiled to ``--size`` rows by 63/64 of that in
columns (8192 x 8064 by default) as float32, and written as a GeoTIFF tiled 512, DEFLATE
with PREDICTOR=3, in UTM zone 16N with the npz's dx/dy turned into metres at the DEM's
latitude (about 74.5 m across by 92.1 m down: the pixels are not square, so a tool that
swaps x and y is caught). It is built once in --data.

Every tool writes a GeoTIFF tiled 512, DEFLATE (no predictor), and gets two threads:

* gdaldem (``--gdaldem``, /usr/bin/gdaldem, Debian's gdal-bin): computes on one thread;
  one row as users run it, one with ``-co NUM_THREADS=2`` (GDAL compresses on 2 threads).
* xarray-spatial: ``scripts/peers/xrspatial_terrain.py``, rioxarray's documented dask
  workflow on dask's threaded scheduler with 2 workers (see that script).
* mpraster ``-j 1``, ``-j 2 --io main``, ``-j 2 --io workers`` and its default (no mode,
  -j or --io given), all with ``--co COMPRESS=DEFLATE`` (mpraster adds NUM_THREADS=-j).

Checks, before timing, in the interior (the outermost ring of pixels differs on purpose:
gdaldem leaves it nodata, xarray-spatial NaN, mpraster repeats the edge pixels): every
mpraster output equals mpraster ``-j 1``'s everywhere, and gdaldem's slope and hillshade
are bit-identical to mpraster's (the script stops if not). xarray-spatial's slope must lie
within SLOPE_TOLERANCE degrees of mpraster's (it computes in float32). Its hillshade is
another formula (central differences on the pixel grid, no cell size, 0..1 floats): it is
checked against that formula evaluated in NumPy, and its correlation with mpraster's is
reported. A peer output that fails its check is reported and not timed.

Figures are medians of ``--runs`` interleaved rounds after the checking round; ratios are
medians of per-round ratios. Peak memory is sampled from /proc every 20 ms, summed over the
process tree. A missing gdaldem or xarray-spatial (``pip install .[bench]``) skips its rows
with a note. ``--write`` replaces the "terrain" section of BENCHMARKS.md.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from benchlib import (
    DEM_CRS,
    ROOT,
    argument_parser,
    mpraster_command,
    terrain_dem,
    timed,
    write_section,
)

TILE = 512
# xarray-spatial's slope runs Horn's method in float32; mpraster and gdaldem in float64.
SLOPE_TOLERANCE = 1e-3  # degrees
# Its hillshade against its own formula evaluated in float64 (0..1 scale).
FORMULA_TOLERANCE = 1e-5
XRS_MODULES = ("xrspatial", "rioxarray", "dask", "numba")
XRS_SETUP = (
    "xarray-spatial runs in dask chunks of 512 x 512 (the file's tiles), with gdaldem's sun "
    "for hillshade, and its results are cast to float32 before writing (its dask graph "
    "declares float64, which would double its output); its time includes numba compiling "
    "its kernels, as every new process does."
)
PEER = ROOT / "scripts" / "peers" / "xrspatial_terrain.py"
GDAL_OPTIONS = ["TILED=YES", f"BLOCKXSIZE={TILE}", f"BLOCKYSIZE={TILE}", "COMPRESS=DEFLATE"]
# The rows' labels.
GDALDEM, GDALDEM_2 = "gdaldem", "gdaldem, NUM_THREADS=2"
J1, J2_MAIN, J2_WORKERS = "mpraster -j 1", "mpraster -j 2 --io main", "mpraster -j 2 --io workers"
DEFAULT = "mpraster, default mode"


@dataclass
class Tool:
    """One row of the table: how to run a kernel, and how the command reads in the table."""

    label: str
    kind: str  # "gdaldem", "xarray-spatial" or "mpraster"
    argv: dict[str, list[str]]  # per kernel
    output: dict[str, Path]  # per kernel
    shown: str


@dataclass
class Figures:
    wall: list[float] = field(default_factory=list)
    total_mib: list[float] = field(default_factory=list)


def gdal_version(gdaldem: str) -> str:
    # gdaldem --version prints the version, then complains that no DEM was given.
    done = subprocess.run([gdaldem, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0].split(",")[0] if done.stdout else "GDAL ?"


def tools(dem: Path, out: Path, kernels: list[str], gdaldem: str | None, xrs: bool) -> list[Tool]:
    """Every row to run; gdaldem's and xarray-spatial's only when they are installed."""
    rows = []
    if gdaldem:
        for label, extra in ((GDALDEM, []), (GDALDEM_2, ["NUM_THREADS=2"])):
            options = [arg for opt in [*GDAL_OPTIONS, *extra] for arg in ("-co", opt)]
            target = {k: out / f"gdaldem{'-nt2' if extra else ''}-{k}.tif" for k in kernels}
            argv = {k: [gdaldem, k, str(dem), str(target[k]), *options, "-q"] for k in kernels}
            shown = f"gdaldem KERNEL dem.tif out.tif {' '.join(options)} -q"
            rows.append(Tool(label, "gdaldem", argv, target, shown))
    if xrs:
        target = {k: out / f"xrspatial-{k}.tif" for k in kernels}
        options = ["-j", "2", "--compress", "DEFLATE"]
        argv = {
            k: [sys.executable, str(PEER), str(dem), str(target[k]), "--kernel", k, *options]
            for k in kernels
        }
        shown = (
            "python scripts/peers/xrspatial_terrain.py dem.tif out.tif --kernel KERNEL -j 2 "
            "--compress DEFLATE"
        )
        label = "xarray-spatial + dask threads, 2 workers"
        rows.append(Tool(label, "xarray-spatial", argv, target, shown))
    configs = [
        (J1, "j1", ["-j", "1"]),
        (J2_MAIN, "j2-main", ["-j", "2", "--io", "main"]),
        (J2_WORKERS, "j2-workers", ["-j", "2", "--io", "workers"]),
        (DEFAULT, "default", []),
    ]
    for label, name, options in configs:
        target = {k: out / f"mpraster-{name}-{k}.tif" for k in kernels}
        argv = {
            k: mpraster_command(dem, target[k], k, *options, "--co", "COMPRESS=DEFLATE")
            for k in kernels
        }
        shown = " ".join(
            ["mpraster run dem.tif out.tif -k KERNEL", *options, "--co COMPRESS=DEFLATE"]
        )
        rows.append(Tool(label, "mpraster", argv, target, shown))
    return rows


def output_label(path: Path) -> str:
    """What the file is: data type and codec, read from the file itself."""
    with rasterio.open(path) as src:
        structure = src.tags(ns="IMAGE_STRUCTURE")
        dtype = src.dtypes[0]
    codec = structure.get("COMPRESSION", "uncompressed")
    predictor = structure.get("PREDICTOR", "1")
    return f"{dtype}, {codec}" + (f", PREDICTOR={predictor}" if predictor != "1" else "")


def strips(*paths: Path, halo: int = 0) -> Iterator[list[np.ndarray]]:
    """Band 1 of each file in strips of rows, the interior only (no outermost ring); with
    ``halo`` extra rows above and below (and the outermost columns) kept."""
    handles = [rasterio.open(p) for p in paths]
    try:
        height, width = handles[0].height, handles[0].width
        for top in range(1, height - 1, TILE):
            bottom = min(top + TILE, height - 1)
            window = ((top - halo, bottom + halo), (1 - halo, width - 1 + halo))
            yield [h.read(1, window=window) for h in handles]
    finally:
        for h in handles:
            h.close()


def differing_pixels(a: Path, b: Path, interior: bool) -> int:
    """How many pixels differ between ``a`` and ``b``, of one shape (NaN equals NaN);
    -1 if their shapes differ."""
    if not same_shape(a, b):
        return -1
    if not interior:
        with rasterio.open(a) as x, rasterio.open(b) as y:
            return int((~_equal(x.read(), y.read())).sum())
    return sum(int((~_equal(x, y)).sum()) for x, y in strips(a, b))


def _equal(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y


def xrs_slope_error(ours: Path, theirs: Path) -> float:
    """Largest |difference| in degrees over the interior (inf where theirs is not finite)."""
    worst = 0.0
    for a, b in strips(ours, theirs):
        diff = np.abs(a.astype(np.float64) - b)
        worst = max(worst, float(np.where(np.isfinite(b), diff, np.inf).max()))
    return worst


def xrs_hillshade_check(
    dem: Path, ours: Path, theirs: Path, cell: tuple[float, float]
) -> tuple[float, float, float]:
    """Its hillshade against its own formula evaluated in float64: the largest |difference|
    over the interior (inf where it is not finite); the Pearson correlation of its output
    with mpraster's; and that of its formula with the cell size put back into the gradients."""
    worst = 0.0
    as_is, with_cell = _Correlation(), _Correlation()
    for z, a, b in strips(dem, ours, theirs, halo=1):
        z, a, b = z.astype(np.float64), a[1:-1, 1:-1].astype(np.float64), b[1:-1, 1:-1]
        formula = _xrs_hillshade(z, 1.0, 1.0)[1:-1, 1:-1]
        worst = max(worst, float(np.where(np.isfinite(b), np.abs(b - formula), np.inf).max()))
        as_is.add(b.astype(np.float64), a)
        with_cell.add(_xrs_hillshade(z, cell[1], cell[0])[1:-1, 1:-1], a)
    return worst, as_is.value(), with_cell.value()


class _Correlation:
    """Pearson's r of two samples given in pieces."""

    def __init__(self) -> None:
        self.n, self.sums = 0, np.zeros(5)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.n += x.size
        self.sums += [x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]

    def value(self) -> float:
        sx, sy, sxx, syy, sxy = self.sums / self.n
        return float((sxy - sx * sy) / np.sqrt((sxx - sx * sx) * (syy - sy * sy)))


def _xrs_hillshade(z: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """xarray-spatial's hillshade (xrspatial/hillshade.py, ``_run_numpy``) at gdaldem's sun,
    with gradients divided by (dy, dx): (1, 1) is what it computes."""
    gy, gx = np.gradient(z, dy, dx)
    azimuth, altitude = np.radians(360.0 - 315.0), np.radians(45.0)
    slope = np.pi / 2.0 - np.arctan(np.sqrt(gy * gy + gx * gx))
    aspect = np.arctan2(-gy, gx)
    shaded = np.sin(altitude) * np.sin(slope) + np.cos(altitude) * np.cos(slope) * np.cos(
        azimuth - np.pi / 2.0 - aspect
    )
    return (shaded + 1.0) / 2.0


def check(
    kernel: str, rows: list[Tool], dem: Path, cell: tuple[float, float]
) -> tuple[list[str], set[str]]:
    """Check every row's output of ``kernel`` (already made): notes to print, and the rows
    whose output is wrong (not to be timed). Stops if mpraster disagrees with itself or
    with gdaldem."""
    notes, wrong = [], set()
    by_label = {t.label: t.output[kernel] for t in rows}
    ref = by_label[J1]
    for tool in rows:
        out = by_label[tool.label]
        if tool.kind == "mpraster" and out != ref:
            if differ := differing_pixels(ref, out, interior=False):
                raise SystemExit(
                    f"{tool.label} {kernel}: output differs from -j 1's ({differ} pixels; "
                    "-1: another shape)"
                )
        elif tool.kind == "gdaldem":
            if differ := differing_pixels(ref, out, interior=True):
                raise SystemExit(
                    f"{tool.label} {kernel}: output differs from mpraster's in the interior "
                    f"({differ} pixels; -1: another shape)"
                )
            notes.append(f"{kernel}: {tool.label} bit-identical to mpraster in the interior.")
        elif tool.kind == "xarray-spatial":
            note, ok = check_xrs(kernel, dem, ref, out, cell)
            notes.append(f"{kernel}: xarray-spatial {note}")
            if not ok:
                wrong.add(tool.label)
    return notes, wrong


def same_shape(a: Path, b: Path) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return (x.count, x.height, x.width) == (y.count, y.height, y.width)


def check_xrs(
    kernel: str, dem: Path, ref: Path, out: Path, cell: tuple[float, float]
) -> tuple[str, bool]:
    if not same_shape(ref, out):
        return "output has another shape than the DEM: WRONG, not timed", False
    if kernel == "slope":
        error = xrs_slope_error(ref, out)
        ok = error <= SLOPE_TOLERANCE
        return (
            f"slope within {error:.1e} degrees of mpraster's in the interior "
            f"(tolerance {SLOPE_TOLERANCE:g}: it computes in float32)"
            + ("." if ok else ": WRONG, not timed."),
            ok,
        )
    error, r_as_is, r_cell = xrs_hillshade_check(dem, ref, out, cell)
    ok = error <= FORMULA_TOLERANCE and r_as_is > 0
    return (
        "hillshade is another formula: central differences on the pixel grid, the cell "
        "size ignored (its gradients are per pixel, as if the relief were exaggerated "
        f"{cell[0]:.0f}-{cell[1]:.0f} times here), values 0..1 as (shaded + 1) / 2 in float "
        "(gdaldem and mpraster: Horn's method in metres, 1..255 as uint8). Given gdaldem's "
        f"sun (315, 45), it matches its own formula evaluated in NumPy to {error:.1e}; "
        f"Pearson r with mpraster's output {r_as_is:.3f} (its formula with the cell size put "
        f"back: {r_cell:.3f})" + ("." if ok else ": WRONG, not timed."),
        ok,
    )


def measure(
    rows: list[Tool], kernels: list[str], runs: int, dem: Path, cell: tuple[float, float]
) -> tuple[dict[tuple[str, str], Figures], list[str], dict[str, set[str]], dict[str, str]]:
    """One round that makes and checks every output, then ``runs`` timed rounds."""
    notes, wrong, outputs = [], {}, {}
    for kernel in kernels:
        for tool in rows:
            timed(tool.argv[kernel])
        kernel_notes, wrong[kernel] = check(kernel, rows, dem, cell)
        notes += kernel_notes
        for tool in rows:
            outputs.setdefault(tool.label, []).append(output_label(tool.output[kernel]))
        print(f"{kernel}: outputs checked", file=sys.stderr)
    figures = {(t.label, k): Figures() for t in rows for k in kernels}
    for round_ in range(runs):
        for kernel in kernels:
            for tool in rows:
                if tool.label in wrong[kernel]:
                    continue
                wall, _, total = timed(tool.argv[kernel])
                figures[tool.label, kernel].wall.append(wall)
                figures[tool.label, kernel].total_mib.append(total)
        print(f"terrain: round {round_ + 1}/{runs}", file=sys.stderr)
    labels = {label: " / ".join(kinds) for label, kinds in outputs.items()}
    return figures, notes, wrong, labels


def tables(
    rows: list[Tool],
    kernels: list[str],
    figures: dict[tuple[str, str], Figures],
    outputs: dict[str, str],
    wrong: dict[str, set[str]],
) -> str:
    med = statistics.median
    head = "| how | output (" + " / ".join(kernels) + ") |"
    rule = "|---|---|"
    for kernel in kernels:
        head += f" {kernel} wall (s) | {kernel} peak MiB, all processes |"
        rule += "---|---|"
    lines = [head + " command |", rule + "---|"]
    for tool in rows:
        cells = f"| {tool.label} | {outputs[tool.label]} |"
        for kernel in kernels:
            f = figures[tool.label, kernel]
            cells += f" {med(f.wall):.2f} | {med(f.total_mib):.0f} |" if f.wall else " wrong | — |"
        lines.append(cells + f" `{tool.shown}` |")

    def ratio(a: str, b: str, kernel: str, memory: bool = False) -> str:
        fa, fb = figures.get((a, kernel)), figures.get((b, kernel))
        if not fa or not fb or not fa.wall or not fb.wall:
            return "—"
        if memory:
            return f"{med(fa.total_mib) / med(fb.total_mib):.2f}×"
        return f"{med(x / y for x, y in zip(fa.wall, fb.wall, strict=True)):.2f}×"

    xrs = rows_named(rows, "xarray-spatial")
    pairs = [
        ("gdaldem / mpraster default, wall", GDALDEM, DEFAULT, False),
        ("gdaldem NUM_THREADS=2 / mpraster default, wall", GDALDEM_2, DEFAULT, False),
        ("xarray-spatial / mpraster default, wall", xrs, DEFAULT, False),
        ("speed-up of mpraster -j 2 --io main over -j 1", J1, J2_MAIN, False),
        ("speed-up of mpraster -j 2 --io workers over -j 1", J1, J2_WORKERS, False),
        ("speed-up of mpraster default over -j 1", J1, DEFAULT, False),
        ("gdaldem / mpraster default, peak memory", GDALDEM, DEFAULT, True),
        ("xarray-spatial / mpraster default, peak memory", xrs, DEFAULT, True),
    ]
    lines += [
        "",
        "| ratio (wall: median of per-round ratios; speed-up: wall of -j 1 / wall of the other) | "
        + " | ".join(kernels)
        + " |",
        "|---|" + "---|" * len(kernels),
    ]
    for title, a, b, memory in pairs:
        cells = [ratio(a, b, k, memory) for k in kernels]
        if any(cell != "—" for cell in cells):  # a tool not installed has no ratio
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    for kernel, labels in wrong.items():
        for label in sorted(labels):
            lines.append(f"\nWRONG OUTPUT, not timed: {label} {kernel}")
    return "\n".join(lines)


def rows_named(rows: list[Tool], kind: str) -> str:
    return next((t.label for t in rows if t.kind == kind), kind)


def main() -> int:
    parser = argument_parser(__doc__, runs=3)
    parser.add_argument("--size", type=int, default=8192, help="DEM rows (columns: 63/64 of it)")
    parser.add_argument("--kernels", default="slope,hillshade")
    parser.add_argument("--gdaldem", default="/usr/bin/gdaldem")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-terrain")
    args = parser.parse_args()
    kernels = args.kernels.split(",")
    if unknown := set(kernels) - {"slope", "hillshade"}:
        raise SystemExit(f"--kernels: slope and hillshade only, not {', '.join(sorted(unknown))}")
    args.data.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    dem, cell = terrain_dem(args.data / f"jacksboro{args.size}.tif", args.size)
    skipped = []
    gdaldem = shutil.which(args.gdaldem)
    if not gdaldem:
        skipped.append(
            f"gdaldem not found ({args.gdaldem}; Debian: apt-get install gdal-bin): its rows skipped."
        )
    missing = [m for m in XRS_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        skipped.append(
            f"xarray-spatial skipped: {', '.join(missing)} not installed (pip install .[bench])."
        )
    for note in skipped:
        print(note, file=sys.stderr)
    rows = tools(dem, args.out, kernels, gdaldem, not missing)
    load = os.getloadavg()[0]
    figures, notes, wrong, outputs = measure(rows, kernels, args.runs, dem, cell)
    with rasterio.open(dem) as src:
        shape = f"{src.height} x {src.width}"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    versions = f"{gdal_version(gdaldem)} (gdaldem), " if gdaldem else ""
    if not missing:
        from importlib.metadata import version

        versions += (
            f"xarray-spatial {version('xarray-spatial')}, rioxarray {version('rioxarray')}, "
            f"dask {version('dask')}, numba {version('numba')}, "
        )
    text = "\n".join(
        [
            "## Terrain against gdaldem and xarray-spatial\n",
            f"Command: `python scripts/bench_terrain.py --size {args.size} --runs {args.runs} "
            f"--kernels {args.kernels} --write`\n",
            f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, rasterio "
            f"{rasterio.__version__} (GDAL {rasterio.__gdal_version__}), {versions}medians of "
            f"{args.runs} interleaved rounds after a checking round; peak memory summed over "
            "the process tree, sampled every 20 ms; page cache warm. Taken "
            f"{time.strftime('%Y-%m-%d')} at commit `{commit or '?'}`; load average "
            f"{load:.1f} before the first run and {os.getloadavg()[0]:.1f} after the last "
            "(a busy machine slows every row).\n",
            f"**slope and hillshade of a {shape} float32 DEM** (matplotlib's "
            "`jacksboro_fault_dem.npz`, real SRTM terrain, mirror-tiled; tiled 512, DEFLATE + "
            f"PREDICTOR=3, {DEM_CRS}, {cell[0]} x {cell[1]} m cells). Every output tiled 512, "
            "DEFLATE, no predictor; the output column is read from the files (slope's "
            "type, then hillshade's).\n",
            tables(rows, kernels, figures, outputs, wrong),
            "",
            *(f"* {note}" for note in notes + ([] if missing else [XRS_SETUP]) + skipped),
        ]
    )
    print(text)
    if args.write:
        write_section("terrain", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
