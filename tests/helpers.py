"""What the test modules share: the command line run as users run it and its one-line
errors, the rasters the tests write, file digests, and the mode matrix.

Fixtures live in conftest.py; test modules import plain functions and constants from here,
never from conftest.py or from each other.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio

import mpraster
from mpraster.progress import NullProgress
from mpraster.sample import write_raster

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")

DTYPES = ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
#: Every mode, I/O placement and -j a result must not depend on.
MATRIX = list(itertools.product(["threads", "processes"], ["main", "workers"], [1, 2, 3]))

#: A run in 16-pixel windows that journals after every window and logs each one (so that
#: wait_for_windows can follow it): one to stop part-way and resume.
RESUMABLE_RUN = [
    "--block-size",
    "16",
    "--co",
    "COMPRESS=DEFLATE",
    "--checkpoint-mb",
    "0.0001",
    "--progress",
    "log",
    "--log-interval",
    "0",
]

# Only a hang runs this long: every command here takes seconds.
TIMEOUT = 120


# ---------------------------------------------------------------- commands


def run_command(
    command: Sequence, *args, env: dict, timeout: float = TIMEOUT, check: bool = False
) -> subprocess.CompletedProcess:
    """Run ``command`` with ``args`` as a user would, with nothing on stdin; output as text.

    ``check`` asserts that it exited 0, showing its stderr if not.
    """
    proc = subprocess.run(
        [*map(str, command), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_cli(mpraster_cmd: Sequence, env: dict, *args, **kwargs) -> subprocess.CompletedProcess:
    """``mpraster run ARGS``, through run_command."""
    return run_command([*mpraster_cmd, "run"], *args, env=env, **kwargs)


def start_command(command: Sequence, *args, env: dict) -> subprocess.Popen:
    """Start ``command`` with ``args`` (nothing on stdin, stdout and stderr piped as text),
    for a test that signals it or reads its log as it goes; ``finish`` waits for it."""
    return subprocess.Popen(
        [*map(str, command), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def start_cli(mpraster_cmd: Sequence, env: dict, *args) -> subprocess.Popen:
    """Start ``mpraster run ARGS``, through start_command."""
    return start_command([*mpraster_cmd, "run"], *args, env=env)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Wait for a started command; what it printed from then on, as run_command returns."""
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def wait_for_windows(proc: subprocess.Popen, count: int) -> None:
    """Read a started run's log lines until ``count`` windows are written (never sleeps)."""
    for line in proc.stderr:
        if "windows (" in line and int(line.split(":")[1].split("/")[0]) >= count:
            return
    raise AssertionError("the run ended before it got that far")


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """The run exited ``code`` with one line ``Error: ...`` holding every fragment, and no
    traceback."""
    assert proc.returncode == code, proc.stderr
    # Progress log lines may come first; the error is the one line that ends the output.
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("mpraster: ")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------- rasters and files


def synthetic(shape: tuple[int, int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """Deterministic data covering the dtype's range, including its extremes."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = rng.normal(0, 1e6, size=shape).astype(dt)
        flat = data.reshape(-1)
        flat[:4] = [np.finfo(dt).max, np.finfo(dt).min, -0.0, np.inf]
    else:
        info = np.iinfo(dt)
        data = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)
    return data


def row_coded(
    tmp_path: Path, rows: int = 48, cols: int = 16, *, bands: int = 2, textured: bool = False
) -> Path:
    """``rows.tif``, uint8, whose band 0 holds each pixel's row number (mod 256), for the
    kernels of kernels_for_tests.py that act on one window.

    Any other band is zeros, or with ``textured`` the pixel's index mod 251.
    """
    data = np.zeros((bands, rows, cols), dtype="uint8")
    data[0] = (np.arange(rows) % 256).astype("uint8")[:, None]
    if textured:
        data[1:] = np.arange(rows * cols).reshape(rows, cols) % 251
    return write_raster(tmp_path / "rows.tif", data)


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes: equal digests, byte-identical files."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- processes


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid``, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat.rpartition(b")")[2].split()[1])


def in_this_tree(pid: int) -> bool:
    """Whether ``pid`` is this process or a live descendant of it."""
    ancestor: int | None = pid
    while ancestor:  # up to pid 0, init's parent
        if ancestor == os.getpid():
            return True
        ancestor = parent_pid(ancestor)
    return False


# ---------------------------------------------------------------- remote and virtual inputs


def tile_offset(path, number: int) -> int:
    """Where the ``number``-th tile (row-major) of ``path`` starts in the file."""
    with rasterio.open(path) as ds:
        across = -(-ds.width // ds.block_shapes[0][1])
        row, col = divmod(number, across)
        return int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))


def http_env(cli_env: dict, **settings) -> dict:
    """The CLI environment with GDAL_HTTP_<NAME> settings (``low_speed_time=1``)."""
    return {**cli_env, **{f"GDAL_HTTP_{k.upper()}": str(v) for k, v in settings.items()}}


def write_netcdf(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A netCDF classic (CDF-1) file of float32 variables over (y, x), written byte by byte
    (the wheels' GDAL writes one variable per file; a container needs several)."""
    rows, cols = next(iter(variables.values())).shape
    dims = [("y", rows), ("x", cols)]
    arrays = [(name, np.asarray(data, ">f4")) for name, data in variables.items()]

    def name(text: str) -> bytes:
        raw = text.encode()
        return struct.pack(">i", len(raw)) + raw + b"\0" * (-len(raw) % 4)

    def header(offsets: list[int]) -> bytes:
        out = b"CDF\x01" + struct.pack(">i", 0)
        out += struct.pack(">ii", 10, len(dims))
        out += b"".join(name(n) + struct.pack(">i", size) for n, size in dims)
        out += struct.pack(">ii", 0, 0) + struct.pack(">ii", 11, len(arrays))
        for (label, data), offset in zip(arrays, offsets, strict=True):
            out += name(label) + struct.pack(">iii", 2, 0, 1) + struct.pack(">ii", 0, 0)
            out += struct.pack(">iii", 5, data.nbytes, offset)  # NC_FLOAT, size, begin
        return out

    start = len(header([0] * len(arrays)))
    offsets = [start + sum(d.nbytes for _, d in arrays[:i]) for i in range(len(arrays))]
    path.write_bytes(header(offsets) + b"".join(d.tobytes() for _, d in arrays))
    return path


def stop_after_first_window(src, out, **options) -> None:
    """Run ``reverse`` and stop it, as SIGTERM does, once its first window is written: the
    partial and its journal stay for --resume."""
    stop = mpraster.StopSignal(grace=0)

    class StopAfter(NullProgress):
        def advance(self, windows, pixels):
            stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(src, out, "reverse", stop=stop, progress=StopAfter(), **options)
