"""What the benchmark scripts share: their common options, the mpraster command they time,
timing a whole process (with its peak memory), and the BENCHMARKS.md sections they write.

Imported by the bench*.py scripts (run from this folder,
so it is on their path); not a script itself.
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
from rasterio.transform import from_origin

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


# The real DEM's place: UTM zone 16N (EPSG:32616) covers its longitude, 84.4 to 84.1 degrees W.
DEM_CRS = "EPSG:32616"
DEM_LATITUDE = 36.6


def terrain_dem(path: Path, rows: int) -> tuple[Path, tuple[float, float]]:
    """The mirror-tiled real DEM, ``rows`` x ``rows * 63 // 64`` float32; its cell size."""
    try:
        from matplotlib import cbook
    except ImportError:
        raise SystemExit("the DEM comes with matplotlib: pip install .[bench]") from None

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as npz:
        heights = npz["elevation"].astype(np.float32)
        # dx and dy are in degrees (3 arc-seconds); metres at the DEM's latitude.
        dx = (
            float(npz["dx"]) * 111_320.0 * np.cos(np.radians(DEM_LATITUDE)) if "dx" in npz else 30.0
        )
        dy = float(npz["dy"]) * 110_574.0 if "dy" in npz else dx
    cell = (round(dx, 2), round(dy, 2))
    if path.exists():
        return path, cell
    cols = rows * 63 // 64
    print(f"building the {rows} x {cols} DEM: {path}", file=sys.stderr)
    period = np.concatenate([heights, heights[::-1]], axis=0)
    period = np.concatenate([period, period[:, ::-1]], axis=1)
    reps = (-(-rows // period.shape[0]), -(-cols // period.shape[1]))
    dem = np.tile(period, reps)[np.newaxis, :rows, :cols]
    tmp = path.with_suffix(".tmp.tif")
    write_raster(
        tmp,
        dem,
        tile=512,
        crs=DEM_CRS,
        transform=from_origin(700_000.0, 4_060_000.0, *cell),
        compress="deflate",
        predictor=3,
    )
    tmp.replace(path)
    return path, cell
