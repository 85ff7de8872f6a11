"""Placed tiles against GDAL's own writer on whole jobs: what encoding each tile in the
worker that computed it costs or saves on this machine, as whole ``mpraster run``
processes.

    $ python scripts/bench_placement.py [--runs 5] [--write]

The same command runs twice per round, the environment choosing the writer's path
(`mpraster.tiles`): ``MPRASTER_MIN_PLACED_TILE_BYTES=0`` places every compressed tile
(workers encode, the writer appends), a threshold no tile reaches has GDAL's writer
compress every tile on ``-j`` threads. The two files hold the same pixels (checked
before timing) and the same tile bytes, laid out differently. Jobs: the I/O-bound band
reversal of the 8192² x 3 uint8 DEFLATE mosaic (`benchlib.mosaic`), and slope and
hillshade of the 8192 x 8064 real DEM (`benchlib.terrain_dem`), each output DEFLATE, -j 2,
in threads and in processes mode. Wall and, in threads mode, CPU (user + system of the
process) are medians of ``--runs`` interleaved rounds after a warm-up round (a process
worker is a child of multiprocessing's forkserver, whose CPU no one here can count).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from benchlib import argument_parser, mosaic, mpraster_command, terrain_dem, write_section

from mpraster.tiles import MIN_TILE_BYTES_VARIABLE

PATHS = {"GDAL's writer (NUM_THREADS=-j)": str(1 << 50), "placed (workers encode)": "0"}
JOBS = [
    ("band reversal, uint8 x 3 (768 KiB tiles)", "mosaic", "reverse", ["-p", "cost=0"]),
    ("slope, float32 (1 MiB tiles)", "dem", "slope", ["--co", "COMPRESS=DEFLATE"]),
    ("hillshade, uint8 (256 KiB tiles)", "dem", "hillshade", ["--co", "COMPRESS=DEFLATE"]),
]
MODES = ["threads", "processes"]


def run(cmd: list[str], threshold: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``cmd`` as a whole process (children included)."""
    env = {**os.environ, MIN_TILE_BYTES_VARIABLE: threshold}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def same_pixels(a: Path, b: Path) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        for _, window in x.block_windows(1):
            if not np.array_equal(x.read(window=window), y.read(window=window)):
                return False
    return True


def main() -> int:
    parser = argument_parser(__doc__, runs=5)
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    inputs = {
        "mosaic": mosaic(args.data / "mosaic8192-deflate.tif", 8192, "deflate"),
        "dem": terrain_dem(args.data / "jacksboro8192.tif", 8192)[0],
    }
    out = args.data / "placement"
    out.mkdir(exist_ok=True)
    commands = {}
    for label, source, kernel, extra in JOBS:
        for mode in MODES:
            for path in PATHS:
                target = out / f"{kernel}-{mode}-{list(PATHS).index(path)}.tif"
                cmd = mpraster_command(
                    inputs[source], target, kernel, "--mode", mode, "-j", "2", *extra
                )
                commands[(label, mode, path)] = (cmd, target)
    for key, (cmd, _) in commands.items():  # a warm-up round, whose files are checked
        run(cmd, PATHS[key[2]])
    for label, _, kernel, _ in JOBS:
        for mode in MODES:
            files = [commands[(label, mode, path)][1] for path in PATHS]
            if not same_pixels(*files):
                raise SystemExit(f"{kernel} in {mode}: the two writers' files differ")
    figures: dict[tuple, list[tuple[float, float]]] = {key: [] for key in commands}
    for round_ in range(args.runs):
        print(f"placement: round {round_ + 1}/{args.runs}", file=sys.stderr)
        for key, (cmd, _) in commands.items():
            figures[key].append(run(cmd, PATHS[key[2]]))
    rows = [
        "| job, -j 2, DEFLATE output | mode | "
        + " | ".join(f"{path}: wall (s) / CPU (s, threads)" for path in PATHS)
        + " | placed / GDAL's, wall |",
        "|---|---|" + "---|" * (len(PATHS) + 1),
    ]
    for label, *_ in JOBS:
        for mode in MODES:
            cells, walls = [], []
            for path in PATHS:
                runs = figures[(label, mode, path)]
                wall = statistics.median(w for w, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                walls.append(wall)
                # A process worker is the forkserver's child: its CPU is nobody's to count.
                cells.append(f"{wall:.2f} / {cpu:.2f}" if mode == "threads" else f"{wall:.2f}")
            rows.append(
                f"| {label} | {mode} | " + " | ".join(cells) + f" | {walls[1] / walls[0]:.2f}× |"
            )
    text = (
        f"Command: `python scripts/bench_placement.py --runs {args.runs} --write`; 2 CPUs, "
        f"Python {sys.version.split()[0]}, rasterio {rasterio.__version__}, GDAL "
        f"{rasterio.__gdal_version__}; medians of {args.runs} interleaved rounds; load "
        f"average {os.getloadavg()[0]:.1f} at the end.\n\n" + "\n".join(rows)
    )
    print(text)
    if args.write:
        write_section("placement", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
