"""What the benchmark scripts share: their common options, the mpraster command they time,
timing a whole process (with its peak memory), and the BENCHMARKS.md sections they write.

Imported by bench.py, bench_kernels.py, bench_overhead.py, bench_threadsafe.py and
bench_terrain.py (scripts run from this folder, so it is on their path); not a script itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rasterio

from mpraster.sample import write_raster

ROOT = Path(__file__).resolve().parents[1]
# The real raster of rasterio's concurrency example (beside the repository, in shared/).
RGB = ROOT.parent / "shared" / "data" / "RGB.byte.tif"
# Every mode and I/O placement a single node runs.
CONFIGS = [
    ("threads", "main"),
    ("threads", "workers"),
    ("processes", "main"),
    ("processes", "workers"),
]


def argument_parser(doc: str, runs: int) -> argparse.ArgumentParser:
    """The options every benchmark takes: --runs (default ``runs``), --data, --write; the
    script's docstring ``doc`` gives the description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "bench-data")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    return parser


def mpraster_command(src: Path, out: Path, kernel: str, *options: str) -> list[str]:
    """``mpraster run SRC OUT --kernel KERNEL OPTIONS``, replacing OUT, printing nothing."""
    return [
        sys.executable,
        "-m",
        "mpraster",
        "run",
        str(src),
        str(out),
        "--kernel",
        kernel,
        *options,
        "--overwrite",
        "--quiet",
        "--progress",
        "none",
    ]


def wall_seconds(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` to its end (an error if it fails): its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``: wall seconds, peak MiB of the main process, peak MiB of the whole tree.

    Memory is sampled from /proc every 20 ms.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = [0.0, 0.0]

    def sample() -> None:
        while proc.poll() is None:
            main = _rss_mib(proc.pid)
            total = sum(_rss_mib(p) for p in _tree(proc.pid))
            peaks[0], peaks[1] = max(peaks[0], main), max(peaks[1], total)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{stderr.decode()[-2000:]}")
    return wall, peaks[0], peaks[1]


def write_section(name: str, text: str) -> None:
    """Put ``text`` in BENCHMARKS.md between the markers of section ``name``, replacing what
    was there (appending the section if it is new)."""
    path = ROOT / "BENCHMARKS.md"
    begin, end = f"<!-- bench.py:{name} begin -->", f"<!-- bench.py:{name} end -->"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in current:
        head, _, rest = current.partition(begin)
        current = head + block + rest.partition(end)[2]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(current)


def mosaic(path: Path, size: int, compress: str | None) -> Path:
    """A size x size mosaic of RGB.byte.tif, mirrored so that edges meet smoothly."""
    if path.exists():
        return path
    with rasterio.open(RGB) as src:
        data = src.read()
        profile = src.profile
    reps = (1, -(-size // data.shape[1]) + 1, -(-size // data.shape[2]) + 1)
    tile = np.concatenate([data, data[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
    big = np.tile(tile, reps)[:, :size, :size]
    options = {"compress": compress} if compress else {}
    tmp = path.with_suffix(".tmp.tif")
    write_raster(
        tmp,
        big,
        nodata=profile["nodata"],
        tile=512,
        crs=profile["crs"],
        transform=profile["transform"],
        interleave=profile["interleave"],
        **options,
    )
    tmp.replace(path)
    return path
