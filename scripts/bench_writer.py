"""Benchmark the single writer's ceiling: the MPix/s that mpraster's own writer path
absorbs when results are free, per codec and dtype, on each of its three paths; the
end-to-end no-op run beside it; the core count at which each built-in kernel would
saturate it; shards + merge; and a simulation of many cheap workers feeding one writer.

    $ python scripts/bench_writer.py [--runs 3] [--size 4096] [--write]

The writer is timed through `mpraster.execute._write_outputs` itself (the scheduler, the
reorder buffer, `TileAssembly`, `OutputWriter` with its checkpoints, finish and rename),
on a job planned exactly as ``mpraster run -j 2 --mode threads`` plans it (the profile of
`mpraster.creation_options.output_profile`, the main process's GDAL block cache), with
every window's result already in memory. Its three paths:

* **GDAL writes every tile**: GDAL's GTiff writer compresses each tile (on NUM_THREADS=2
  threads) and lays out the file; the path of outputs whose tiles cannot be placed (COG,
  a mask, JPEG/WEBP), and of every output before `mpraster.tiles`.
* **the writer encodes**: the writer's thread encodes each tile itself
  (`mpraster.tiles.TileEncoder`) and places it: what ``-j 1`` does.
* **the writer places**: the tiles arrive encoded (the workers encoded them, as with
  ``-j 2`` and more): the writer only appends their bytes in plan order.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import statistics
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import numpy as np
import rasterio
from affine import Affine
from benchlib import argument_parser, mpraster_command, timed, write_section

import mpraster
from mpraster.budget import main_gdal_env
from mpraster.builtin_kernels import (
    aspect,
    focal_max,
    focal_mean,
    focal_min,
    hillshade,
    normalized_difference,
    rescale,
    reverse,
    slope,
    terrain,
)
from mpraster.execute import _write_outputs
from mpraster.job import plan_job
from mpraster.kernels import KernelContext
from mpraster.lock import OutputLock
from mpraster.merge import merge_shards
from mpraster.progress import NullProgress
from mpraster.resume import checksum
from mpraster.sample import write_raster, write_sample
from mpraster.stats import RunStats
from mpraster.tiles import MIN_TILE_BYTES_VARIABLE, TileEncoder, tile_options
from mpraster.worker import WindowResult

CODECS = [None, "DEFLATE", "ZSTD", "LZW"]
# The writer's paths (see the docstring).
GDAL, ENCODES, PLACES = "GDAL writes every tile", "the writer encodes", "the writer places"
PATHS = (GDAL, ENCODES, PLACES)
WINDOW = 512
SIM_BLOCK = 256

NOOP_SOURCE = '''"""A kernel that returns its input: the run costs only reading and writing."""
import mpraster


@mpraster.kernel(releases_gil=True)
def noop(src):
    return src
'''


@mpraster.kernel(releases_gil=True)
def noop(src):
    """The same no-op kernel, for in-process runs."""
    return src


def codec_name(codec: str | None) -> str:
    return codec or "none"


def creation(codec: str | None, **more: str) -> dict[str, str]:
    return ({"compress": codec} if codec else {}) | more


def terrain_dem(size: int) -> tuple[np.ndarray, str]:
    """A size x size float32 DEM of real terrain (matplotlib's SRTM sample mirror-tiled),
    or mpraster's synthetic sample without matplotlib; and what it is."""
    try:
        from matplotlib import cbook
    except ImportError:
        cbook = None
    if cbook is not None:
        with cbook.get_sample_data("jacksboro_fault_dem.npz") as npz:
            z = np.asarray(npz["elevation"], dtype=np.float32)
        tile = np.concatenate([z, z[::-1]], axis=0)
        tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
        reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1]))
        return np.tile(tile, reps)[:size, :size].copy(), "jacksboro_fault_dem (SRTM, mirror-tiled)"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_sample(Path(tmp) / "dem.tif", size=size, bands=1, dtype="uint8")
        with rasterio.open(path) as src:
            z = src.read(1).astype(np.float32) * 4.0 + 200.0
    return z, "mpraster.sample (synthetic)"


def shaded(dem: np.ndarray) -> np.ndarray:
    """uint8 data with a real image's texture: the DEM's hillshade."""
    padded = np.pad(dem, 1, mode="edge")[np.newaxis]
    return np.asarray(hillshade(padded, ctx=ctx(halo=1)), dtype=np.uint8).reshape(dem.shape)


def ctx(nodata=None, halo=0) -> KernelContext:
    return KernelContext(None, None, Affine(30.0, 0, 0, 0, -30.0, 0), (nodata, nodata), halo)


class _PremadeFeeder:
    """Hands the writer path results that cost nothing: every window's array is cut out
    and checksummed (as a worker does) before the clock starts; with ``encoded``, its tile
    is encoded too (as a worker does when the writer only places tiles)."""

    backend = None

    def __init__(self, job, array: np.ndarray, encoded: bool = False) -> None:
        encoder = TileEncoder(tile_options(job.outputs[0].profile)) if encoded else None
        self.results = {}
        for task in job.tasks:
            w = task.window
            rows = slice(int(w.row_off), int(w.row_off + w.height))
            cols = slice(int(w.col_off), int(w.col_off + w.width))
            data = np.ascontiguousarray(array[np.newaxis, rows, cols])
            whole = checksum(data, None) if task.parts == 1 else None
            result = encoder.encode(data) if encoder is not None and task.parts == 1 else data
            self.results[task.index] = WindowResult(
                task.index, (result,), 0.0, 0.0, 0, checksum=(whole,), mask=(None,)
            )

    def submit(self, task) -> Future:
        future: Future = Future()
        future.set_result(self.results[task.index])
        return future


@contextlib.contextmanager
def gdal_writes_every_tile():
    """The writer path as it was before tiles were placed (and as COG, masked, JPEG and
    WEBP outputs still take it): GDAL's GTiff writer encodes and lays out every tile."""
    reason = "measuring GDAL's own writer"
    # By name: the package's ``execute`` is the function, not the module.
    modules = [importlib.import_module(f"mpraster.{name}") for name in ("output", "job")]
    with contextlib.ExitStack() as patched:
        for module in modules:
            patched.enter_context(mock.patch.object(module, "placement_problem", lambda *a: reason))
        yield


@contextlib.contextmanager
def tiles_placed():
    """Every tile placed, whatever its size (a run places compressed tiles of
    `mpraster.tiles.MIN_TILE_BYTES` and more: a 512² uint8 tile is smaller)."""
    before = os.environ.get(MIN_TILE_BYTES_VARIABLE)
    os.environ[MIN_TILE_BYTES_VARIABLE] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[MIN_TILE_BYTES_VARIABLE]
        else:
            os.environ[MIN_TILE_BYTES_VARIABLE] = before


def writer_path(path: str):
    """The context that makes the writer take ``path`` (one of PATHS)."""
    return gdal_writes_every_tile() if path == GDAL else tiles_placed()


def writer_seconds(
    src: Path, array: np.ndarray, out: Path, co: dict, path: str = PLACES, cache=None
) -> float:
    """One pass of the production writer path over ``array`` on ``path`` (one of PATHS):
    seconds; ``cache``: a GDAL block cache in bytes instead of the run's."""
    with writer_path(path):
        job = plan_job(
            [str(src)], str(out), noop, jobs=2, mode="threads", creation_options=co,
            overwrite=True,
        )  # fmt: skip
        feeder = _PremadeFeeder(job, array, encoded=path == PLACES)
        stats = RunStats()
        with (
            OutputLock(str(out)),
            main_gdal_env(job.main_cache_bytes, job.gdal_config),
            rasterio.Env(**({"GDAL_CACHEMAX": cache} if cache else {})),
        ):
            start = time.perf_counter()
            _write_outputs(job, feeder, NullProgress(), None, stats)
            return time.perf_counter() - start


def median_rate(pixels: int, runs: int, once) -> float:
    times = []
    for _ in range(runs):
        times.append(once())
    return pixels / 1e6 / statistics.median(times)


def check_written(out: Path, array: np.ndarray) -> None:
    with rasterio.open(out) as dst:
        if not np.array_equal(dst.read(1), array):
            raise SystemExit(f"{out} does not hold the pixels written")


def ceiling_table(data: Path, arrays: dict, runs: int) -> tuple[str, dict]:
    """MPix/s of the writer path, per codec, dtype and path; every output checked first,
    and the three paths' files compared (the same pixels; the placed paths the same
    bytes)."""
    header = " | ".join(f"{dtype}, {path}" for dtype in arrays for path in PATHS)
    rows = [f"| output codec | {header} |", "|---|" + "---|" * len(arrays) * len(PATHS)]
    rates: dict[tuple[str, str, str], float] = {}
    for codec in CODECS:
        cells = []
        for dtype, (src, array) in arrays.items():
            outs = {}
            for path in PATHS:
                out = data / f"ceiling-{dtype}-{codec_name(codec)}-{PATHS.index(path)}.tif"
                co = creation(codec)
                writer_seconds(src, array, out, co, path)  # warm, and checked before timing
                check_written(out, array)
                outs[path] = out
                rate = median_rate(
                    array.size,
                    runs,
                    lambda src=src, array=array, out=out, co=co, path=path: writer_seconds(
                        src, array, out, co, path
                    ),
                )
                rates[(codec_name(codec), dtype, path)] = rate
                cells.append(f"{rate:.1f}")
            if outs[ENCODES].read_bytes() != outs[PLACES].read_bytes():
                raise SystemExit(f"{outs[ENCODES]} and {outs[PLACES]} differ")
        rows.append(f"| {codec_name(codec)} | " + " | ".join(cells) + " |")
    return "\n".join(rows), rates


def encode_rates(arrays: dict, runs: int) -> tuple[str, dict]:
    """MPix/s per core of encoding one 512² tile as a worker does (`TileEncoder`)."""
    rows = [
        "| output codec | "
        + " | ".join(f"{dtype}: MPix/s per core | {dtype}: compressed to" for dtype in arrays)
        + " |",
        "|---|" + "---|---|" * len(arrays),
    ]
    rates: dict[tuple[str, str], float] = {}
    for codec in CODECS:
        cells = []
        for dtype, (_, array) in arrays.items():
            profile = {
                "driver": "GTiff", "dtype": dtype, "count": 1, "tiled": True,
                "blockxsize": WINDOW, "blockysize": WINDOW, **creation(codec),
            }  # fmt: skip
            encoder = TileEncoder(tile_options(profile))
            tiles = [
                np.ascontiguousarray(array[np.newaxis, r : r + WINDOW, c : c + WINDOW])
                for r in range(0, array.shape[0], WINDOW)
                for c in range(0, array.shape[1], WINDOW)
            ][::4]
            stored = sum(len(c) for t in tiles for c in encoder.encode(t).chunks)
            rate = median_rate(
                sum(t.size for t in tiles),
                runs,
                lambda enc=encoder, tiles=tiles: _seconds(lambda: [enc.encode(t) for t in tiles]),
            )
            rates[(codec_name(codec), dtype)] = rate
            cells.append(f"{rate:.1f} | {stored / sum(t.nbytes for t in tiles):.0%}")
        rows.append(f"| {codec_name(codec)} | " + " | ".join(cells) + " |")
    return "\n".join(rows), rates


def tuning_table(data: Path, arrays: dict, runs: int) -> str:
    """GDAL's writer's own knobs, float32 DEFLATE: its compression threads, block cache."""
    src, array = arrays["float32"]
    out = data / "tuning.tif"
    cases = [
        ("NUM_THREADS=1 (no compression threads)", creation("DEFLATE", num_threads="1"), None),
        ("NUM_THREADS=2 (what -j 2 sets: the default)", creation("DEFLATE"), None),
        ("NUM_THREADS=4", creation("DEFLATE", num_threads="4"), None),
        ("NUM_THREADS=2, GDAL_CACHEMAX=512 MiB", creation("DEFLATE"), 512 << 20),
    ]
    rows = [
        "| float32, DEFLATE, GDAL writes every tile | MPix/s | cores busy (CPU s / wall s of "
        "the process) |",
        "|---|---|---|",
    ]
    for name, co, cache in cases:
        writer_seconds(src, array, out, co, GDAL, cache)
        check_written(out, array)
        cpu = time.process_time()
        walls = [writer_seconds(src, array, out, co, GDAL, cache) for _ in range(runs)]
        cpu = time.process_time() - cpu
        rate = array.size / 1e6 / statistics.median(walls)
        rows.append(f"| {name} | {rate:.1f} | {cpu / sum(walls):.2f} |")
    return "\n".join(rows)


def end_to_end_table(data: Path, arrays: dict, runs: int, encoding: dict) -> str:
    """Whole ``mpraster run`` processes of the no-op kernel (threads, --io main)."""
    kernel = data / "noop_kernel.py"
    kernel.write_text(NOOP_SOURCE)
    rows = [
        "| float32 no-op, whole process | output codec | -j 1 MPix/s | -j 2 MPix/s | "
        "encoding, one core | -j 2 / two cores' encoding |",
        "|---|---|---|---|---|---|",
    ]
    src, array = arrays["float32"]
    for codec in CODECS:
        figures = {}
        for jobs in (1, 2):
            out = data / f"e2e-{jobs}.tif"
            co = [f"--co=COMPRESS={codec}"] if codec else []
            cmd = mpraster_command(
                src, out, f"{kernel}:noop", "--mode", "threads", "-j", str(jobs), *co
            )
            timed(cmd)
            check_written(out, array)
            walls = [timed(cmd)[0] for _ in range(runs)]
            figures[jobs] = array.size / 1e6 / statistics.median(walls)
        one = encoding[(codec_name(codec), "float32")]
        rows.append(
            f"| | {codec_name(codec)} | {figures[1]:.1f} | {figures[2]:.1f} | {one:.1f} | "
            f"{figures[2] / (2 * one):.0%} |"
        )
    return "\n".join(rows)


def kernel_cases():
    """(name, call, output loads [(dtype, bands)]) of every built-in kernel on one window."""
    r, c = np.mgrid[0 : WINDOW + 4, 0 : WINDOW + 4]
    dem = (300 + 40 * np.sin(r / 37.0) * np.cos(c / 23.0)).astype(np.float32)[np.newaxis]
    rng = np.random.default_rng(0)
    img = rng.integers(1, 10000, (2, WINDOW + 4, WINDOW + 4), dtype=np.uint16)
    rgb = rng.integers(0, 255, (3, WINDOW, WINDOW), dtype=np.uint8)
    h1, h2 = dem[:, 1:-1, 1:-1], img[:, 2:-2, 2:-2]
    f32, u8 = "float32", "uint8"
    return [
        ("reverse cost=0 (3-band uint8)", lambda: reverse(rgb, cost=0), [(u8, 3)]),
        ("reverse cost=2000, the default (3-band uint8)", lambda: reverse(rgb), [(u8, 3)]),
        ("normalized-difference (uint16 in)", lambda: normalized_difference(h2, ctx=ctx()), [(f32, 1)]),
        ("rescale to uint8 (uint16 in)", lambda: rescale(h2[:1], scale=0.01, offset=3.0, dtype="uint8", ctx=ctx()), [(u8, 1)]),
        ("focal-mean size=3", lambda: focal_mean(dem[:, 1:-1, 1:-1], size=3, ctx=ctx(halo=1)), [(f32, 1)]),
        ("focal-mean size=5", lambda: focal_mean(dem, size=5, ctx=ctx(halo=2)), [(f32, 1)]),
        ("focal-max size=3", lambda: focal_max(dem[:, 1:-1, 1:-1], size=3, ctx=ctx(halo=1)), [(f32, 1)]),
        ("focal-min size=3", lambda: focal_min(dem[:, 1:-1, 1:-1], size=3, ctx=ctx(halo=1)), [(f32, 1)]),
        ("slope", lambda: slope(h1, ctx=ctx(halo=1)), [(f32, 1)]),
        ("aspect", lambda: aspect(h1, ctx=ctx(halo=1)), [(f32, 1)]),
        ("hillshade", lambda: hillshade(h1, ctx=ctx(halo=1)), [(u8, 1)]),
        ("terrain (slope + aspect + hillshade)", lambda: terrain(h1, ctx=ctx(halo=1)), [(f32, 1), (f32, 1), (u8, 1)]),
    ]  # fmt: skip


def saturation_table(rates: dict, encoding: dict, runs: int) -> str:
    """Cores at which each kernel would saturate the writer: writer MPix/s ÷ MPix/s per
    core. Each worker computes and, when tiles are placed, encodes (its MPix/s per core is
    then 1 / (1/kernel + Σ 1/encoding) over the bands and outputs it writes); when GDAL
    writes every tile, the writer encodes and the worker only computes. A kernel writing
    several bands or outputs loads the writer with each."""
    pixels = WINDOW * WINDOW
    rows = [
        f"| kernel, one {WINDOW}² window, one thread | MPix/s per core | "
        + " | ".join(f"{codec_name(c)}: GDAL writes → placed" for c in CODECS)
        + " |",
        "|---|---|" + "---|" * len(CODECS),
    ]
    for name, call, loads in kernel_cases():
        call()
        per_core = median_rate(pixels, max(runs, 5), lambda call=call: _seconds(call))
        cells = []
        for codec in CODECS:
            c = codec_name(codec)
            gdal_cost = sum(bands / rates[(c, dtype, GDAL)] for dtype, bands in loads)
            gdal_cores = (1 / gdal_cost) / per_core
            place_cost = sum(bands / rates[(c, dtype, PLACES)] for dtype, bands in loads)
            encode_cost = sum(bands / encoding[(c, dtype)] for dtype, bands in loads)
            worker_rate = 1 / (1 / per_core + encode_cost)
            placed_cores = (1 / place_cost) / worker_rate
            cells.append(f"{_cores(gdal_cores)} → {_cores(placed_cores)}")
        rows.append(f"| {name} | {_figure(per_core)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cores(cores: float) -> str:
    return f"**{_figure(cores)}**" if cores < 64 else f"{cores:.0f}"


def _figure(value: float) -> str:
    """One decimal, or two significant digits below 1 (so a small figure is not 0.0)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def simulation_table(data: Path, arrays: dict, runs: int) -> str:
    """Many cheap workers (threads, the no-op kernel) feeding one writer, in process, with
    GDAL writing every tile and with tiles placed; in tiles of SIM_BLOCK, so that up to
    -j 8 every window is a whole tile (no strips) of a 4096² raster."""
    src, array = arrays["float32"]
    out = data / "sim.tif"
    rows = [
        "| no-op workers (threads, --io workers) | output codec | writer path | MPix/s | "
        "writer busy (write s / wall s) | what the writer would absorb (MPix/s ÷ busy) |",
        "|---|---|---|---|---|---|",
    ]
    for codec in (None, "DEFLATE"):
        for path in (GDAL, PLACES):
            for jobs in (1, 2, 4, 8):

                def once(jobs=jobs, codec=codec, path=path):
                    with writer_path(path):
                        return mpraster.run(
                            str(src), str(out), noop, jobs=jobs, mode="threads", io="workers",
                            creation_options=creation(codec), overwrite=True,
                            block_size=SIM_BLOCK,
                        )  # fmt: skip

                once()
                check_written(out, array)
                results = [once() for _ in range(runs)]
                best = sorted(results, key=lambda s: s.wall_seconds)[len(results) // 2]
                rate = array.size / 1e6 / best.wall_seconds
                busy = best.write_seconds / best.wall_seconds
                label = ENCODES if path == PLACES and jobs == 1 else path
                rows.append(
                    f"| -j {jobs} | {codec_name(codec)} | {label} | {rate:.1f} | {busy:.0%} | "
                    f"{rate / busy if busy else float('inf'):.0f} |"
                )
    return "\n".join(rows)


def merge_table(data: Path, arrays: dict, runs: int) -> str:
    """Shards written per rank, then `mpraster merge`: with placed tiles it copies each
    shard's stored tiles as they are; with GDAL writing, it decodes and encodes them."""
    src, array = arrays["float32"]
    rows = [
        "| float32, 4 shards | output codec | merge path | merge MPix/s |",
        "|---|---|---|---|",
    ]
    for codec in (None, "DEFLATE"):
        for path in (GDAL, PLACES):
            out = data / f"merged-{codec_name(codec)}.tif"
            with writer_path(path):
                for i in range(4):
                    mpraster.run(
                        str(src), str(out), noop, jobs=1, mode="threads", shard=(i, 4),
                        creation_options=creation(codec), overwrite=True,
                    )  # fmt: skip
                merge_shards(str(out), overwrite=True)
                check_written(out, array)
                rate = median_rate(
                    array.size,
                    runs,
                    lambda out=out: merge_shards(str(out), overwrite=True).wall_seconds,
                )
            how = "copies the stored tiles" if path == PLACES else "decodes, GDAL encodes"
            rows.append(f"| | {codec_name(codec)} | {how} | {rate:.1f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argument_parser(__doc__, runs=3)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    data = args.data / "writer"
    data.mkdir(parents=True, exist_ok=True)
    dem, origin = terrain_dem(args.size)
    arrays = {}
    for dtype, array in (("float32", dem), ("uint8", shaded(dem))):
        src = data / f"input-{dtype}-{args.size}.tif"
        if not src.exists():
            write_raster(src, array[np.newaxis], tile=512)
        arrays[dtype] = (src, array)
    ceiling, rates = ceiling_table(data, arrays, args.runs)
    print(ceiling, flush=True)
    encoding_text, encoding = encode_rates(arrays, args.runs)
    print(encoding_text, flush=True)
    tuning = tuning_table(data, arrays, args.runs)
    print(tuning, flush=True)
    e2e = end_to_end_table(data, arrays, args.runs, encoding)
    print(e2e, flush=True)
    saturation = saturation_table(rates, encoding, args.runs)
    print(saturation, flush=True)
    sim = simulation_table(data, arrays, args.runs)
    print(sim, flush=True)
    merge = merge_table(data, arrays, args.runs)
    print(merge, flush=True)
    text = (
        f"Command: `python scripts/bench_writer.py --runs {args.runs} --size {args.size} "
        f"--write`; data: {args.size}² float32 DEM from {origin}, and its hillshade as "
        "uint8; output tiled 512, the codec's default settings; medians of "
        f"{args.runs}; {platform_line()}.\n\n"
        "**The single writer's ceiling** (MPix/s; results free: every window's result in "
        'memory, checksummed, and for "the writer places" encoded; the production path '
        "`_write_outputs` → `TileAssembly` → `OutputWriter` with checkpoints, finish and "
        "rename, planned as a `-j 2` run):\n\n"
        + ceiling
        + "\n\n**Encoding one tile in a worker** (`TileEncoder`, one thread; and the "
        "stored size against the raw pixels):\n\n"
        + encoding_text
        + "\n\n**GDAL's writer's knobs** (the path COG, masked, JPEG and WEBP outputs "
        "take):\n\n"
        + tuning
        + "\n\n**End to end** (`mpraster run` of a kernel that returns its input, threads, "
        "--io main; tiles placed):\n\n"
        + e2e
        + "\n\n**Cores at which each built-in kernel saturates the writer** (writer MPix/s "
        "÷ MPix/s per core, GDAL writing every tile → tiles placed; bold: under 64):\n\n"
        + saturation
        + "\n\n**Many cheap workers, one writer** (in process, `mpraster.run`, tiles of "
        f"{SIM_BLOCK}; with one worker the writer's pool encodes; writer busy counts the "
        "writer's thread, placing or waiting for a tile):\n\n"
        + sim
        + "\n\n**Shards + merge**:\n\n"
        + merge
    )
    if args.write:
        write_section("writer", text)
    return 0


def platform_line() -> str:
    return (
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, rasterio "
        f"{rasterio.__version__}, GDAL {rasterio.__gdal_version__}, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    sys.exit(main())
