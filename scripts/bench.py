"""Benchmark mpraster against the ways people do this job today, as whole processes.

    $ python scripts/bench.py [--runs 3] [--jobs cpu-rgb,cpu-2048,io-8192,memory] [--write]

Jobs (inputs are built once in --data, from the real RGB.byte.tif):

* ``cpu-rgb``: ``reverse`` cost 2000 on RGB.byte.tif (rasterio's concurrency example).
* ``cpu-2048``: the same on a 2048 x 2048 mosaic of that imagery.
* ``io-8192``: band reversal (cost 0) of an 8192 x 8192 x 3 uint8 DEFLATE-tiled mosaic,
  written DEFLATE-compressed by every tool: the peers are told ``--compress deflate``,
  mpraster follows the input's codec by default (a job whose output codec differs from
  the input's passes ``--co COMPRESS=...``). Each table names the codec each row wrote,
  read back from its output.
* ``memory``: the I/O-bound job in every mode and I/O placement with -j 2 on that mosaic and
  on one of twice its side (16384 x 16384, four times the pixels): peak memory must not
  follow the raster.

Each job runs mpraster with its defaults (``--mode auto``, no ``--io``: what a user gets),
in every mode and I/O placement, and every peer found (scripts/peers/:
rasterio's thread- and process-pool examples, rio-mucho, dask + rioxarray, and GDAL's own
copy for the I/O job) with -j 1 and -j 2, interleaved round by round so drift hits every
command alike. Every output is checked against the input (band-reversed) before anything is
timed; a wrong output is reported, not timed. Figures are medians; speed-ups are medians of
per-round ratios. Peak memory is sampled from /proc every 20 ms: the main process alone, and
summed over the process tree. ``--write`` replaces the tables in BENCHMARKS.md and writes
PNG plots (with matplotlib) beside it.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from benchlib import (
    CONFIGS,
    RGB,
    ROOT,
    argument_parser,
    mosaic,
    mpraster_command,
    timed,
    write_section,
)

PEERS = ROOT / "scripts" / "peers"
PEER_SCRIPTS = {
    "rasterio thread-pool example": ("rasterio_threads", None),
    "rasterio process-pool example": ("rasterio_processes", None),
    "rio-mucho": ("rio_mucho", "riomucho"),
    "dask + rioxarray (distributed)": ("dask_rioxarray", "rioxarray"),
}


@dataclass
class Job:
    name: str
    title: str
    input: Path
    cost: int
    # The codec every tool writes (None: uncompressed), and the input's.
    compress: str | None
    input_codec: str | None = None

    def __post_init__(self) -> None:
        self.input_codec = codec_of(self.input)


def codec_of(path: Path) -> str | None:
    """The file's codec as GDAL names it (``DEFLATE``), None when uncompressed."""
    with rasterio.open(path) as src:
        codec = src.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION", "NONE").upper()
    return None if codec == "NONE" else codec


@dataclass
class Figures:
    wall: list[float] = field(default_factory=list)
    main_mib: list[float] = field(default_factory=list)
    total_mib: list[float] = field(default_factory=list)
    codec: str = ""


# mpraster as a user runs it (no --mode, no --io: what `auto` picks), then every placement.
DEFAULTS = "mpraster, defaults (`--mode auto`)"


def commands(job: Job, out: Path) -> dict[str, list[str]]:
    cmds = {}
    # mpraster's output follows the input's codec by default (the peers' src.profile
    # pattern): only an output codec other than the input's is asked for.
    same = (job.compress or "").upper() == (job.input_codec or "")
    extra = [] if same else ["--co", f"COMPRESS={job.compress or 'NONE'}"]
    for mode, io in [(None, None), *CONFIGS]:
        for jobs in (1, 2):
            target = out / f"{job.name}-{f'{mode}-{io}' if mode else 'defaults'}-{jobs}.tif"
            options = ["-p", f"cost={job.cost}", "-j", str(jobs)]
            label = DEFAULTS
            if mode is not None:
                options += ["--mode", mode, "--io", io]
                label = f"mpraster `--mode {mode} --io {io}`"
            cmds[f"{label}|{jobs}"] = mpraster_command(
                job.input, target, "reverse", *options, *extra
            )
    peers = dict(PEER_SCRIPTS)
    if job.cost == 0:
        peers["GDAL's own copy (no kernel)"] = ("gdal_copy", None)
    for label, (script, module) in peers.items():
        if module and not _importable(module):
            print(f"peer skipped, not installed: {label} (pip install .[bench])", file=sys.stderr)
            continue
        for jobs in (1, 2):
            cmds[f"{label}|{jobs}"] = [
                sys.executable,
                str(PEERS / f"{script}.py"),
                str(job.input),
                str(out / f"{job.name}-{script}-{jobs}.tif"),
                "-j",
                str(jobs),
                "--cost",
                str(job.cost),
                *(["--compress", job.compress] if job.compress else []),
            ]
    return cmds


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def correct(job: Job, cmd: list[str]) -> bool:
    output = Path(cmd[cmd.index(str(job.input)) + 1])
    with rasterio.open(job.input) as src, rasterio.open(output) as dst:
        expected_reversed = "gdal_copy" not in cmd[1]
        for _, window in dst.block_windows():
            a = src.read(window=window)
            if expected_reversed:
                a = a[::-1]
            if not np.array_equal(dst.read(window=window), a):
                return False
    return True


def bench_job(job: Job, out: Path, runs: int) -> tuple[dict[str, Figures], list[str]]:
    return measure(job, commands(job, out), runs)


def measure(
    job: Job, cmds: dict[str, list[str]], runs: int
) -> tuple[dict[str, Figures], list[str]]:
    """Check every command's output once, then time the correct ones, round by round."""
    cmds = dict(cmds)
    wrong = []
    for name, cmd in list(cmds.items()):
        timed(cmd)  # warm-up; also makes the output to check
        if not correct(job, cmd):
            wrong.append(name)
            del cmds[name]
    figures = {name: Figures() for name in cmds}
    for name, cmd in cmds.items():
        figures[name].codec = codec_of(Path(cmd[cmd.index(str(job.input)) + 1])) or "none"
    for round_ in range(runs):
        for name, cmd in cmds.items():
            wall, main, total = timed(cmd)
            figures[name].wall.append(wall)
            figures[name].main_mib.append(main)
            figures[name].total_mib.append(total)
        print(f"{job.name}: round {round_ + 1}/{runs}", file=sys.stderr)
    return figures, wrong


def table(job: Job, figures: dict[str, Figures], wrong: list[str]) -> str:
    labels = list(dict.fromkeys(name.split("|")[0] for name in figures))
    med = statistics.median
    rows = [
        f"**{job.title}**\n",
        "| how | output codec | -j 1 wall (s) | -j 2 wall (s) | speed-up -j 2 / -j 1 | peak MiB main (-j 2) | peak MiB all processes (-j 2) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        one, two = figures.get(f"{label}|1"), figures.get(f"{label}|2")
        if not one or not two:
            continue
        speedup = med(a / b for a, b in zip(one.wall, two.wall, strict=True))
        rows.append(
            f"| {label} | {two.codec} | {med(one.wall):.2f} | {med(two.wall):.2f} | {speedup:.2f}× "
            f"| {med(two.main_mib):.0f} | {med(two.total_mib):.0f} |"
        )
    ours = [f for n, f in figures.items() if n.startswith("mpraster") and n.endswith("|2")]
    theirs = {n: f for n, f in figures.items() if not n.startswith("mpraster") and n.endswith("|2")}
    if ours and theirs:
        best_ours = min(med(f.wall) for f in ours)
        best_peer, peer_figures = min(theirs.items(), key=lambda item: med(item[1].wall))
        rows.append(
            f"\nBest mpraster -j 2: {best_ours:.2f} s; best peer -j 2: {med(peer_figures.wall):.2f} s "
            f"({best_peer.split('|')[0]}), {med(peer_figures.wall) / best_ours:.2f}× our time."
        )
    defaults = figures.get(f"{DEFAULTS}|2")
    if defaults:
        for peer in ("GDAL's own copy (no kernel)", "rasterio thread-pool example"):
            if f"{peer}|2" in figures:
                ratio = med(
                    b / a for a, b in zip(defaults.wall, figures[f"{peer}|2"].wall, strict=True)
                )
                rows.append(
                    f"\nmpraster's defaults against {peer}, both -j 2: {ratio:.2f}× (its wall "
                    "time over ours, median of per-round ratios; above 1: mpraster is faster)."
                )
    for name in wrong:
        rows.append(f"\nWRONG OUTPUT, not timed: {name.replace('|', ' -j ')}")
    return "\n".join(rows)


def memory_table(data: Path, out: Path, runs: int) -> str:
    """Peak memory of the I/O-bound job at 8192² and at 16384² (mpraster, -j 2)."""
    sizes = (8192, 16384)
    jobs = [
        Job(
            f"mem-{size}",
            "",
            mosaic(data / f"mosaic{size}-deflate.tif", size, "deflate"),
            0,
            "deflate",
        )
        for size in sizes
    ]
    rows = [
        "**Memory against raster size: band reversal (cost 0), DEFLATE in and out, -j 2**\n",
        "| how | wall 8192² (s) | wall 16384² (s) | peak MiB main 8192² | 16384² | growth "
        "| peak MiB all processes 8192² | 16384² | growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    med = statistics.median
    per_size = []
    for job in jobs:
        cmds = {
            n: c
            for n, c in commands(job, out).items()
            if n.startswith("mpraster") and n.endswith("|2")
        }
        figures, wrong = measure(job, cmds, runs)
        if wrong:
            raise SystemExit(f"WRONG OUTPUT: {', '.join(wrong)} on {job.input}")
        per_size.append(figures)
    small, large = per_size
    for name in small:
        a, b = small[name], large[name]
        main_a, main_b = med(a.main_mib), med(b.main_mib)
        all_a, all_b = med(a.total_mib), med(b.total_mib)
        rows.append(
            f"| {name.split('|')[0]} | {med(a.wall):.2f} | {med(b.wall):.2f} | {main_a:.0f} | {main_b:.0f} "
            f"| {100 * (main_b / main_a - 1):+.1f}% | {all_a:.0f} | {all_b:.0f} | {100 * (all_b / all_a - 1):+.1f}% |"
        )
    return "\n".join(rows)


def plot(job: Job, figures: dict[str, Figures], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    with rasterio.open(job.input) as src:
        mpix = src.width * src.height / 1e6
    fig, ax = plt.subplots(figsize=(9, 4))
    for label in dict.fromkeys(name.split("|")[0] for name in figures):
        xs = [j for j in (1, 2) if f"{label}|{j}" in figures]
        ys = [mpix / statistics.median(figures[f"{label}|{j}"].wall) for j in xs]
        ax.plot(xs, ys, marker="o", label=label.replace("`", ""))
    ax.set_xticks([1, 2])
    ax.set_xlabel("-j (workers)")
    ax.set_ylabel("MPix/s, whole process")
    ax.set_title(textwrap.fill(job.title, 60), fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argument_parser(__doc__, runs=3)
    parser.add_argument("--jobs", default="cpu-rgb,cpu-2048,io-8192,memory")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    if not RGB.exists():
        raise SystemExit(f"the real raster is needed: {RGB}")
    args.data.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = {
        "cpu-rgb": lambda: Job(
            "cpu-rgb",
            "CPU-bound: reverse cost 2000 on RGB.byte.tif (3 x 718 x 791)",
            RGB,
            2000,
            None,
        ),
        "cpu-2048": lambda: Job(
            "cpu-2048",
            "CPU-bound: reverse cost 2000 on a 2048 x 2048 x 3 mosaic of RGB.byte.tif",
            mosaic(args.data / "mosaic2048.tif", 2048, None),
            2000,
            None,
        ),
        "io-8192": lambda: Job(
            "io-8192",
            "I/O-bound: band reversal (cost 0) of an 8192 x 8192 x 3 uint8 DEFLATE-tiled mosaic, written DEFLATE",
            mosaic(args.data / "mosaic8192-deflate.tif", 8192, "deflate"),
            0,
            "deflate",
        ),
    }
    header = (
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, rasterio "
        f"{rasterio.__version__}, GDAL {rasterio.__gdal_version__}; medians of {args.runs} "
        "interleaved rounds after a warm-up round; page cache warm.\n\n"
        f"Command: `python scripts/bench.py --runs {args.runs} --jobs {args.jobs} --write`"
    )
    if args.write:
        write_section("header", header)
    for name in args.jobs.split(","):
        if name == "memory":
            text = memory_table(args.data, args.out, args.runs)
            print(text + "\n", flush=True)
            if args.write:
                write_section("memory", text)
            continue
        job = jobs[name]()
        figures, wrong = bench_job(job, args.out, args.runs)
        text = table(job, figures, wrong)
        print(text + "\n", flush=True)
        if args.write:
            write_section(job.name, text + f"\n\n![{job.name}](bench-{job.name}.png)")
            plot(job, figures, ROOT / f"bench-{job.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
