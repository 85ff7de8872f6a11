"""Benchmark ``mpraster stats`` against the single-threaded tools, as whole processes.

    $ python scripts/bench_stats.py [--runs 3] [--size 8192] [--write]

Inputs (built once in --data): the 8192 x 8192 x 3 uint8 DEFLATE-tiled mosaic of
RGB.byte.tif that scripts/bench.py uses, and a float32 DEM of the same size (smooth
terrain), DEFLATE-tiled and in DEFLATE strips of one row (GDAL's default layout). Each is reduced to per-band count, min, max, mean and std by:
``mpraster stats`` at -j 1 and -j 2 (threads, the default), the same with exact
percentiles 2,50,98, ``gdalinfo -stats`` (Debian's gdal-bin, when installed; its
``.aux.xml`` cache is disabled, so it computes every time), rasterio's
``dataset.stats()`` and NumPy on the whole array (read at once). Commands run
interleaved round by round; figures are medians of --runs, peak memory is summed over
the process tree. ``--write`` replaces the section in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, mosaic, timed, write_section

NUMPY = """
import sys, numpy as np, rasterio
with rasterio.open(sys.argv[1]) as src:
    data = src.read(masked=True)
for band in data:
    v = band.compressed().astype(np.float64)
    print(v.size, v.min(), v.max(), v.mean(), v.std(), np.percentile(v, [2, 50, 98]))
"""
RASTERIO = """
import sys, rasterio
with rasterio.open(sys.argv[1]) as src:
    print(src.stats(approx=False))
"""


def dem(path: Path, size: int, tiled: bool = True) -> Path:
    """A smooth float32 DEM (sums of sines), DEFLATE-compressed in 512 x 512 tiles (or in
    strips of one row, GDAL's default layout), written 512 rows at a time."""
    if path.exists():
        return path
    profile = dict(
        driver="GTiff", dtype="float32", count=1, height=size, width=size, crs="EPSG:32618",
        transform=rasterio.transform.from_origin(0, 0, 30, 30), compress="deflate",
        nodata=-9999.0,
    )  # fmt: skip
    if tiled:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    else:
        profile.update(blockysize=1)
    cols = np.arange(size, dtype=np.float64)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, 512):
            rows = np.arange(row, min(row + 512, size), dtype=np.float64)[:, None]
            z = (
                800
                + 300 * np.sin(rows / 700) * np.cos(cols / 900)
                + 40 * np.sin(rows / 37 + cols / 53)
            )
            dst.write(z.astype("float32")[None], window=((row, row + rows.shape[0]), (0, size)))
    tmp.replace(path)
    return path


def commands(path: Path) -> dict[str, list[str]]:
    mp = [sys.executable, "-m", "mpraster", "stats", str(path), "--progress", "none", "-q"]
    found = {
        "mpraster stats -j 1": [*mp, "-j", "1"],
        "mpraster stats -j 2": [*mp, "-j", "2"],
        "mpraster stats -j 2 --percentiles 2,50,98": [*mp, "-j", "2", "--percentiles", "2,50,98"],
    }
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo:
        found["gdalinfo -stats"] = [
            gdalinfo,
            "-stats",
            "--config",
            "GDAL_PAM_ENABLED",
            "NO",
            str(path),
        ]
    found["rasterio dataset.stats()"] = [sys.executable, "-c", RASTERIO, str(path)]
    found["NumPy, whole array (+ percentiles)"] = [sys.executable, "-c", NUMPY, str(path)]
    return found


def bench(path: Path, runs: int) -> list[tuple[str, float, float]]:
    cmds = commands(path)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cmds}
    os.environ["GDAL_PAM_ENABLED"] = "NO"  # rasterio's stats() must not read a cache either
    for _ in range(runs):
        for name, cmd in cmds.items():
            results[name].append(timed(cmd))
    return [
        (name, statistics.median(r[0] for r in rs), statistics.median(r[2] for r in rs))
        for name, rs in results.items()
    ]


def table(title: str, rows: list[tuple[str, float, float]]) -> str:
    lines = [
        f"**{title}**",
        "",
        "| command | wall s (median) | peak MiB (tree) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {wall:.2f} | {peak:.0f} |" for name, wall, peak in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "bench-data")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    inputs = {
        f"{args.size} x {args.size} x 3 uint8, DEFLATE": mosaic(
            args.data / f"mosaic{args.size}-deflate.tif", args.size, "deflate"
        ),
        f"{args.size} x {args.size} float32 DEM, DEFLATE": dem(
            args.data / f"dem{args.size}-deflate.tif", args.size
        ),
        f"{args.size} x {args.size} float32 DEM, DEFLATE in strips of one row": dem(
            args.data / f"dem{args.size}-deflate-strips.tif", args.size, tiled=False
        ),
    }
    text = [
        "## Statistics (`scripts/bench_stats.py`)",
        "",
        f"{os.cpu_count()} CPUs; medians of {args.runs} runs, interleaved; peak RSS summed "
        "over the process tree.",
    ]
    for title, path in inputs.items():
        text += ["", table(title, bench(path, args.runs))]
    print("\n".join(text))
    if args.write:
        write_section("stats", "\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
