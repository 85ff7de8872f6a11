"""Benchmark mpraster against rasterio's own thread-pool pattern, as whole processes.

    $ python scripts/bench.py [--runs 5] [--input ../shared/data/RGB.byte.tif] [--write]

For each mode and I/O placement it times ``mpraster run ... -j 1`` and ``-j 2`` on the
CPU-bound job of rasterio's concurrency example (``reverse``, cost 2000), and in the same
rounds rasterio's ``thread_pool_executor`` pattern (scripts/rasterio_pattern.py). Runs are
interleaved round by round so drift in the machine's speed hits every command alike;
figures are medians, speed-ups are medians of per-round ratios. Every output is checked
against the input with its bands reversed before anything is timed. ``--write`` replaces
the table in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "RGB.byte.tif"
MPRASTER = [sys.executable, "-m", "mpraster"]
CONFIGS = [
    ("threads", "main"),
    ("threads", "workers"),
    ("processes", "main"),
    ("processes", "workers"),
]


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return its wall seconds and peak resident MiB (largest process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(
            f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.read().decode()}"
        )
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024


def commands(src: Path, out: Path, cost: int) -> dict[str, list[str]]:
    cmds = {}
    for mode, io in CONFIGS:
        for jobs in (1, 2):
            cmds[f"{mode}/{io}/j{jobs}"] = [
                *MPRASTER,
                "run",
                str(src),
                str(out / f"{mode}-{io}-{jobs}.tif"),
                "--kernel",
                "reverse",
                "-p",
                f"cost={cost}",
                "--mode",
                mode,
                "--io",
                io,
                "-j",
                str(jobs),
                "--overwrite",
                "--quiet",
                "--progress",
                "none",
            ]
    for jobs in (1, 2):
        cmds[f"rasterio/j{jobs}"] = [
            sys.executable,
            str(ROOT / "scripts" / "rasterio_pattern.py"),
            str(src),
            str(out / f"rasterio-{jobs}.tif"),
            "-j",
            str(jobs),
        ]
    return cmds


def check_outputs(src: Path, out: Path) -> None:
    with rasterio.open(src) as ds:
        expected = ds.read()[::-1]
    for path in sorted(out.glob("*.tif")):
        with rasterio.open(path) as ds:
            if not np.array_equal(ds.read(), expected):
                raise SystemExit(f"wrong output, not timed: {path}")


def table(times: dict[str, list[float]], memory: dict[str, list[float]], runs: int) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    lines = [
        "| job | -j 1 wall (s) | -j 2 wall (s) | speed-up -j 2 vs -j 1 | -j 2 vs rasterio pattern -j 2 | peak MiB (-j 2) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, io in CONFIGS:
        key = f"{mode}/{io}"
        lines.append(
            f"| mpraster `--mode {mode} --io {io}` | {med[key + '/j1']:.2f} | {med[key + '/j2']:.2f} "
            f"| {ratio(key + '/j1', key + '/j2'):.2f}× | {ratio('rasterio/j2', key + '/j2'):.2f}× faster "
            f"| {statistics.median(memory[key + '/j2']):.0f} |"
        )
    lines.append(
        f"| rasterio's thread-pool pattern | {med['rasterio/j1']:.2f} | {med['rasterio/j2']:.2f} "
        f"| {ratio('rasterio/j1', 'rasterio/j2'):.2f}× | — | {statistics.median(memory['rasterio/j2']):.0f} |"
    )
    return "\n".join(lines) + f"\n\nMedians of {runs} interleaved rounds (plus one warm-up round)."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cost", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    if not args.input.exists():
        raise SystemExit(f"input not found: {args.input}")
    args.out.mkdir(parents=True, exist_ok=True)
    cmds = commands(args.input, args.out, args.cost)
    for cmd in cmds.values():  # warm-up round; also produces the outputs to check
        timed(cmd)
    check_outputs(args.input, args.out)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    memory: dict[str, list[float]] = {k: [] for k in cmds}
    for round_ in range(args.runs):
        for name, cmd in cmds.items():
            wall, mib = timed(cmd)
            times[name].append(wall)
            memory[name].append(mib)
        print(f"round {round_ + 1}/{args.runs} done", file=sys.stderr)
    result = table(times, memory, args.runs)
    header = (
        f"`reverse` cost {args.cost} on {args.input.name}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, rasterio {rasterio.__version__}, "
        f"GDAL {rasterio.__gdal_version__}.\n\n"
    )
    print(header + result)
    if args.write:
        write_benchmarks(header + result)
    return 0


def write_benchmarks(section: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    begin, end = "<!-- bench.py:core begin -->", "<!-- bench.py:core end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{section}\n{end}"
    if begin in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
