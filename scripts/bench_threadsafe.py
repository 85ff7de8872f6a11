"""Thread-safe reads: per-thread handles against one shared RFC 101 dataset and LIBERTIFF.

    $ .venv-3.13/bin/python scripts/bench_threadsafe.py [--runs 5] [--also .venv/bin/python]\
        [--jobs io,halo] [--readers handles-nt2,threadsafe,...] [--write]

rasterio 1.5 (Python >= 3.12, GDAL >= 3.10) opens a dataset that several threads may read at
once (``rasterio.open(path, thread_safe=True)``, GDAL's RFC 101), and GDAL >= 3.11 has a
natively thread-safe GeoTIFF reader, LIBERTIFF (``driver="LIBERTIFF"``). This script runs
mpraster in threads mode, ``-j 2``, with ``--io main`` and ``--io workers``, reading its
input each of these ways:

* ``handles``: today's reader, one ``rasterio.open(path, sharing=False)`` per reader (the
  main thread's, or each worker thread's); ``handles-nt2`` adds GTiff's NUM_THREADS=2 open
  option, which decodes in threads the tiles of one read that are not in the block cache.
* ``threadsafe``: one ``rasterio.open(path, thread_safe=True)`` per input, shared by every
  reader of the process.
* ``libertiff``, ``libertiff-nt2``, ``libertiff-thread``: GDAL's LIBERTIFF driver, one
  dataset shared by every reader (it is thread-safe itself), with NUM_THREADS=2, or one per
  reader.

The variants are installed by this script in the child process it times (the reader class
the run uses is replaced; nothing else changes), so the library keeps one reader. Two
jobs: the I/O-bound one of scripts/bench.py (``reverse`` cost 0 on an 8192 x 8192 x 3 uint8
mosaic tiled 512, DEFLATE in and out) and a halo job (``focal-mean`` size 5 on an 8192 x
8192 float32 DEM tiled 512, DEFLATE in and out). ``--also PYTHON`` adds today's reader run
by another interpreter (Python 3.11, rasterio 1.4) to the same rounds, to show the stack's
own difference. Every output is compared with today's reader's on the running interpreter,
byte for byte, before anything is timed; the other interpreter's by pixels. Figures are
medians of ``--runs`` interleaved rounds after a warm-up round: whole-process wall time, CPU
time (user + system) and peak resident memory (GNU time's ``%U``, ``%S``, ``%M``); ratios
are medians of the per-round ratios to today's reader. ``--jobs`` and ``--readers`` choose
a subset (today's reader always runs).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rasterio
from benchlib import mosaic, write_section

from mpraster.sample import write_raster

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()

# key: (label in the table, driver or None for GDAL's choice, one dataset shared by every
# reader of the process, open options)
VARIANTS: dict[str, tuple[str, str | None, bool, dict[str, str]]] = {
    "handles": ("per-thread handles (today)", None, False, {}),
    "handles-nt2": ("per-thread handles, NUM_THREADS=2", None, False, {"num_threads": "2"}),
    "threadsafe": ("thread-safe, shared", None, True, {}),
    "libertiff": ("LIBERTIFF, shared", "LIBERTIFF", True, {}),
    "libertiff-nt2": ("LIBERTIFF, shared, NUM_THREADS=2", "LIBERTIFF", True, {"num_threads": "2"}),
    "libertiff-thread": ("LIBERTIFF, per thread", "LIBERTIFF", False, {}),
}
# With --io main only the main thread reads: sharing changes nothing but the wrapper, and
# a per-thread LIBERTIFF is the shared one.
PER_IO = {
    "main": ["handles", "handles-nt2", "threadsafe", "libertiff", "libertiff-nt2"],
    "workers": ["handles", "threadsafe", "libertiff", "libertiff-thread"],
}
BASELINE = "handles"


# ---------------------------------------------------------------- child side


def install(variant: str) -> None:
    """Make the run read with ``variant`` (in this process, before the run starts)."""
    if variant == BASELINE:
        return
    import mpraster.execute
    import mpraster.worker
    from mpraster.inputs import WindowReader

    _, driver, shared, options = VARIANTS[variant]
    kwargs: dict = dict(options)
    if driver:
        kwargs["driver"] = driver
    if shared:
        kwargs["thread_safe"] = True
    datasets: dict[str, rasterio.io.DatasetReader] = {}
    lock = threading.Lock()

    def open_one(path: str) -> rasterio.io.DatasetReader:
        if not shared:
            return rasterio.open(path, sharing=False, **kwargs)
        with lock:
            if path not in datasets:
                datasets[path] = rasterio.open(path, sharing=False, **kwargs)
            return datasets[path]

    class VariantReader(WindowReader):
        def __init__(self, specs, infos, fill) -> None:
            self.infos = list(infos)
            self.fill = fill
            self.datasets = [open_one(spec.path) for spec in specs]
            if driver and any(d.driver != driver for d in self.datasets):
                raise SystemExit(f"{variant}: opened with {self.datasets[0].driver}")

        def close(self) -> None:
            if not shared:
                super().close()
            self.datasets = []

    # The main process's reader (--io main) and the worker threads' (--io workers).
    mpraster.execute.WindowReader = VariantReader
    mpraster.worker.WindowReader = VariantReader


def child(variant: str, argv: list[str]) -> None:
    install(variant)
    from mpraster.cli import main

    sys.argv = ["mpraster", *argv]
    main()


# ---------------------------------------------------------------- parent side


def dem(path: Path, size: int) -> Path:
    """A size x size float32 DEM-like surface, tiled 512, DEFLATE."""
    if path.exists():
        return path
    r, c = np.mgrid[0:size, 0:size]
    z = (300 + 40 * np.sin(r / 97.0) * np.cos(c / 53.0) + r * 0.01).astype(np.float32)
    plain = write_raster(path.with_suffix(".plain.tif"), z[np.newaxis], tile=512)
    from rasterio.shutil import copy

    tmp = path.with_suffix(".tmp.tif")
    copy(plain, tmp, driver="GTiff", tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    plain.unlink()
    tmp.replace(path)
    return path


def timed(cmd: list[str], report: Path) -> tuple[float, float, float]:
    """Run ``cmd``: wall seconds, CPU seconds (user + system) and its peak resident MiB.

    The peak is GNU time's (``wait4``'s ``ru_maxrss`` of a child it forked): a child forked
    straight from this process would count this process's own memory at the fork.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %M", "-o", str(report), *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(
            f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}"
        )
    user, system, peak = report.read_text().split()[-3:]
    return wall, float(user) + float(system), int(peak) / 1024


def same_pixels(a: Path, b: Path) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return np.array_equal(x.read(), y.read(), equal_nan=x.dtypes[0].startswith("float"))


def job_commands(
    name: str, src: Path, kernel: list[str], out: Path, also: str | None, readers: list[str]
) -> dict[str, list[str]]:
    cmds = {}
    for io in ("main", "workers"):
        runs = [(sys.executable, v) for v in PER_IO[io] if v == BASELINE or v in readers]
        if also:
            runs.append((also, BASELINE))
        for python, variant in runs:
            tag = "other" if python != sys.executable else variant
            target = out / f"{name}-{io}-{tag}.tif"
            label = f"{io}|{variant}" + ("|other" if python != sys.executable else "")
            cmds[label] = [
                python,
                str(HERE),
                "--child",
                variant,
                "run",
                str(src),
                str(target),
                *kernel,
                "--co",
                "COMPRESS=DEFLATE",
                "-j",
                "2",
                "--mode",
                "threads",
                "--io",
                io,
                "--overwrite",
                "-q",
                "--progress",
                "none",
            ]
    return cmds


def stack(python: str) -> str:
    code = (
        "import platform, rasterio; print(f'Python {platform.python_version()}, rasterio "
        "{rasterio.__version__}, GDAL {rasterio.__gdal_version__}')"
    )
    return subprocess.run(
        [python, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def bench_job(title: str, cmds: dict[str, list[str]], runs: int, other_stack: str) -> str:
    output = {label: Path(cmd[6]) for label, cmd in cmds.items()}
    report = next(iter(output.values())).with_suffix(".time")
    notes = []
    for cmd in cmds.values():
        timed(cmd, report)  # warm-up; also makes the output to check
    for label in list(cmds):
        io = label.split("|")[0]
        reference = output[f"{io}|{BASELINE}"]
        if label.endswith("|other"):
            if not same_pixels(output[label], reference):
                raise SystemExit(f"WRONG OUTPUT: {label}")
            if output[label].read_bytes() != reference.read_bytes():
                notes.append(f"{other_stack}: same pixels, different bytes (`--io {io}`)")
        elif output[label].read_bytes() != reference.read_bytes():
            raise SystemExit(f"WRONG OUTPUT (bytes differ from today's reader): {label}")
    walls: dict[str, list[float]] = {label: [] for label in cmds}
    mibs: dict[str, list[float]] = {label: [] for label in cmds}
    cpus: dict[str, list[float]] = {label: [] for label in cmds}
    for round_ in range(runs):
        for label, cmd in cmds.items():
            wall, cpu, mib = timed(cmd, report)
            walls[label].append(wall)
            cpus[label].append(cpu)
            mibs[label].append(mib)
        print(f"{title[:30]}: round {round_ + 1}/{runs}", file=sys.stderr, flush=True)
    raw = report.with_name(f"{report.stem.split('-')[0]}-rounds.json")
    raw.write_text(json.dumps({"wall": walls, "cpu": cpus, "peak_mib": mibs}, indent=1))
    med = statistics.median
    rows = [
        f"**{title}**\n",
        "| `--io` | reader | wall (s) | range (s) | wall / today's | CPU (s) | CPU / today's "
        "| peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in cmds:
        io, variant, *other = label.split("|")
        base = walls[f"{io}|{BASELINE}"]
        ratio = med(w / b for w, b in zip(walls[label], base, strict=True))
        base_cpu = cpus[f"{io}|{BASELINE}"]
        cpu_ratio = med(c / b for c, b in zip(cpus[label], base_cpu, strict=True))
        name = VARIANTS[variant][0] + (f" ({other_stack})" if other else "")
        rows.append(
            f"| {io} | {name} | {med(walls[label]):.2f} "
            f"| {min(walls[label]):.2f}–{max(walls[label]):.2f} | {ratio:.2f}× "
            f"| {med(cpus[label]):.2f} | {cpu_ratio:.2f}× | {med(mibs[label]):.0f} |"
        )
    rows.append("\nEvery output on this stack byte-identical to today's reader's.")
    rows.extend(f"\n{note}" for note in notes)
    return "\n".join(rows)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--also", help="another interpreter to run today's reader with")
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-threadsafe")
    parser.add_argument("--jobs", default="io,halo", help="of io, halo")
    parser.add_argument("--readers", default=",".join(VARIANTS), help="of " + ", ".join(VARIANTS))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if "thread_safe" not in inspect.signature(rasterio.open).parameters:
        raise SystemExit("run this with rasterio 1.5 or later (Python >= 3.12)")
    args.data.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    size = args.size
    jobs = [
        (
            f"I/O-bound: `reverse -p cost=0` on a {size} x {size} x 3 uint8 mosaic tiled 512, "
            "DEFLATE in and out, threads, -j 2",
            "io",
            mosaic(args.data / f"mosaic{size}-deflate.tif", size, "deflate"),
            ["-k", "reverse", "-p", "cost=0"],
        ),
        (
            f"Halo: `focal-mean -p size=5` on a {size} x {size} float32 DEM tiled 512, DEFLATE "
            "in and out, threads, -j 2",
            "halo",
            dem(args.data / f"dem{size}-deflate.tif", size),
            ["-k", "focal-mean", "-p", "size=5"],
        ),
    ]
    here = stack(sys.executable)
    other = stack(args.also) if args.also else ""
    also = f" --also {args.also}" if args.also else ""
    parts = [
        f"Machine: {os.cpu_count()} CPUs, {here}"
        + (f"; and {other} for today's reader" if other else "")
        + f". Medians of {args.runs} interleaved rounds after a warm-up round; page cache warm.",
        f"Command: `{Path(sys.executable).parent.parent.name}/bin/python "
        f"scripts/bench_threadsafe.py --runs {args.runs} --size {size}{also} --jobs {args.jobs} "
        f"--readers {args.readers} --write`",
    ]
    for title, name, src, kernel in jobs:
        if name not in args.jobs.split(","):
            continue
        cmds = job_commands(name, src, kernel, args.out, args.also, args.readers.split(","))
        text = bench_job(title, cmds, args.runs, other)
        print(text + "\n", flush=True)
        parts.append(text)
    if args.write:
        write_section("threadsafe", "\n\n".join(parts))
    print(platform.platform(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
