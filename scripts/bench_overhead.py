"""Per-window overhead of each mode: what a window costs beyond its pixels' own work.

    $ python scripts/bench_overhead.py [--runs 5] [--size 2048] [--write]

A near-zero kernel (``reverse`` with cost 0 on one uint8 band, uncompressed, tiled 64) runs
over a size x size raster twice per mode and I/O placement with -j 2: in 64 x 64 windows and
in 512 x 512 windows. Both move the same pixels, so the difference in wall time, divided by
the difference in window count, is the marginal cost of one window: dispatch, transport
(shared memory for processes with --io main), reordering and the writer's bookkeeping.
Threads and processes run through the library in this process (a new pool each run, so the
pool's start is in both figures and cancels); MPI runs as whole ``mpiexec -n 3`` processes
(two worker ranks), when mpiexec and mpi4py are installed (``pip install .[test]``).
Medians of ``--runs`` runs after a warm-up; every output is checked against the input.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from benchlib import CONFIGS, argument_parser, mpraster_command, wall_seconds, write_section

import mpraster
from mpraster.sample import write_raster

SMALL, LARGE = 64, 512


def make_input(path: Path, size: int) -> Path:
    if not path.exists():
        data = np.random.default_rng(0).integers(0, 255, (1, size, size), dtype=np.uint8)
        write_raster(path, data, tile=SMALL)
    return path


def check(src: Path, out: Path) -> None:
    with rasterio.open(src) as a, rasterio.open(out) as b:
        if not np.array_equal(a.read(), b.read()):
            raise SystemExit(f"WRONG OUTPUT: {out}")


def in_process(src: Path, out: Path, mode: str, io: str, block: int) -> tuple[float, int]:
    start = time.perf_counter()
    stats = mpraster.run(
        src,
        out,
        "reverse",
        params={"cost": 0},
        mode=mode,
        io=io,
        jobs=2,
        block_size=block,
        overwrite=True,
    )
    return time.perf_counter() - start, stats.windows


def mpi_command() -> list[str] | None:
    bin_dir = Path(sys.executable).parent
    mpiexec = shutil.which("mpiexec", path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return [mpiexec, "--oversubscribe", "-n", "3"] if mpiexec else None


def under_mpi(launcher: list[str], src: Path, out: Path, io: str, block: int) -> tuple[float, int]:
    env = dict(
        os.environ,
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        OMPI_MCA_rmaps_base_oversubscribe="1",
    )
    options = ["-p", "cost=0", "--mode", "mpi", "--io", io, "--block-size", str(block)]
    stats = out.with_suffix(".json")
    cmd = mpraster_command(src, out, "reverse", *options, "--stats-json", str(stats))
    wall = wall_seconds([*launcher, *cmd], env)
    return wall, json.loads(stats.read_text())["windows"]


def main() -> int:
    parser = argument_parser(__doc__, runs=5)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    src = make_input(args.data / f"overhead{args.size}.tif", args.size)
    runners = {(mode, io): in_process for mode, io in CONFIGS}
    launcher = mpi_command()
    if launcher:
        for io in ("main", "workers"):
            runners[("mpi", io)] = lambda s, o, _m, io_, b: under_mpi(launcher, s, o, io_, b)
    else:
        print("MPI skipped: mpiexec or mpi4py not installed", file=sys.stderr)
    rows = [
        f"| mode | --io | wall, {SMALL}² windows (s) | wall, {LARGE}² windows (s) | µs per window |",
        "|---|---|---|---|---|",
    ]
    for (mode, io), runner in runners.items():
        walls: dict[int, list[float]] = {SMALL: [], LARGE: []}
        counts = {}
        for round_ in range(args.runs + 1):
            for block in (SMALL, LARGE):
                out = args.data / f"overhead-{mode}-{io}-{block}.tif"
                wall, counts[block] = runner(src, out, mode, io, block)
                if round_ == 0:
                    check(src, out)
                else:
                    walls[block].append(wall)
        small, large = statistics.median(walls[SMALL]), statistics.median(walls[LARGE])
        per_window = (small - large) / (counts[SMALL] - counts[LARGE]) * 1e6
        rows.append(
            f"| {mode} | {io} | {small:.3f} ({counts[SMALL]} windows) "
            f"| {large:.3f} ({counts[LARGE]} windows) | {per_window:.0f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    where = "whole `mpiexec -n 3` processes" if launcher else ""
    text = (
        f"Command: `python scripts/bench_overhead.py --runs {args.runs} --size {args.size} --write`\n\n"
        f"**Per-window overhead, -j 2: `reverse` cost 0 on a {args.size}² uint8 band, "
        f"{SMALL}² against {LARGE}² windows** (medians of {args.runs}; threads and processes "
        f"in-process through `mpraster.run`{', MPI as ' + where if where else ''})\n\n"
        + "\n".join(rows)
        + "\n\nµs per window = (wall with small windows − wall with large windows) / (difference "
        "in window count): the cost of dispatching, moving, reordering and writing one more "
        "window, with the pixels' own work and the pool's start cancelled out."
    )
    print(text)
    if args.write:
        write_section("overhead", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
