"""Start-up: what a whole ``mpraster run`` of a tiny raster costs beyond importing its libraries.

    $ python scripts/bench_startup.py [--runs 11] [--write]

``reverse`` (cost 0) runs over a 64 x 64 three-band uint8 GeoTIFF as a whole process
(``python -m mpraster run``), in threads mode with -j 1 and in processes mode with -j 2,
alternating with ``python -c "import rasterio, numpy"``, as is and with
``OPENBLAS_NUM_THREADS=1``: the overhead is the median wall time of the run minus the
median of the bare import with one BLAS thread, as the command runs NumPy's BLAS
(`mpraster.command`), so it is what mpraster adds (its imports, planning, the pool, the
write) to the least any rasterio program pays. mpraster's
own bytecode is compiled first, as an installed package's is, whatever
PYTHONDONTWRITEBYTECODE says. One warm-up round first; every output is checked.
"""

from __future__ import annotations

import compileall
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import rasterio
from benchlib import argument_parser, mpraster_command, wall_seconds, write_section

import mpraster
from mpraster.sample import write_raster

SIZE = 64
CONFIGS = [
    ("threads", ["--mode", "threads", "-j", "1"]),
    ("processes", ["--mode", "processes", "-j", "2"]),
]
BARE = [sys.executable, "-c", "import rasterio, numpy"]


def make_input(path: Path) -> Path:
    if not path.exists():
        data = np.random.default_rng(0).integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8)
        write_raster(path, data)
    return path


def check(src: Path, out: Path) -> None:
    with rasterio.open(src) as a, rasterio.open(out) as b:
        if not np.array_equal(a.read()[::-1], b.read()):
            raise SystemExit(f"WRONG OUTPUT: {out}")


def main() -> int:
    parser = argument_parser(__doc__, runs=11)
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    src = make_input(args.data / f"startup{SIZE}.tif")
    compileall.compile_dir(Path(mpraster.__file__).parent, quiet=1)
    commands = {"bare": BARE, "bare, one BLAS thread": BARE}
    envs = {"bare, one BLAS thread": {**os.environ, "OPENBLAS_NUM_THREADS": "1"}}
    for mode, options in CONFIGS:
        out = args.data / f"startup-{mode}.tif"
        commands[mode] = mpraster_command(src, out, "reverse", "-p", "cost=0", *options)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.runs + 1):
        for name, cmd in commands.items():
            wall = wall_seconds(cmd, envs.get(name))
            if round_:
                walls[name].append(wall)
    for mode, _ in CONFIGS:
        check(src, args.data / f"startup-{mode}.tif")
    # The command runs NumPy's BLAS on one thread (mpraster.command): its overhead is
    # taken over the import with one BLAS thread too, whose spinning threads do not slow.
    bare = statistics.median(walls["bare, one BLAS thread"])
    rows = [
        "| command | wall (ms) | overhead over the bare import, one BLAS thread (ms) |",
        "|---|---|---|",
        f'| `python -c "import rasterio, numpy"` | {statistics.median(walls["bare"]) * 1e3:.0f} '
        "| — |",
        f'| `OPENBLAS_NUM_THREADS=1 python -c "import rasterio, numpy"` | {bare * 1e3:.0f} | — |',
    ]
    for mode, options in CONFIGS:
        wall = statistics.median(walls[mode])
        rows.append(
            f"| `mpraster run` {' '.join(options)} | {wall * 1e3:.0f} | {(wall - bare) * 1e3:.0f} |"
        )
    text = (
        f"Command: `python scripts/bench_startup.py --runs {args.runs} --write`\n\n"
        f"**Start-up: a whole `mpraster run` of `reverse` (cost 0) on a {SIZE}² three-band "
        f"uint8 GeoTIFF against the bare import of rasterio and numpy** (whole processes, "
        f"medians of {args.runs} alternating runs after a warm-up)\n\n" + "\n".join(rows)
    )
    print(text)
    if args.write:
        write_section("startup", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
