"""The ``mpraster`` command's entry point: sets up the process, then runs the CLI.

Two settings of the process, each unless the user's environment gives its own, made here
because they must precede NumPy's import or the first large allocation; worker processes,
started from this one, inherit them through the environment:

* **Thread pools.** The command's parallelism is its workers (``-j``) and GDAL's own
  threads. A BLAS thread pool in every process only competes with them for the same
  cores: OpenBLAS, which NumPy bundles, starts one thread per core when NumPy is
  imported, and they spin for a while even when no kernel ever calls BLAS (some 70 ms of
  CPU per process here, half the cost of importing NumPy). So, as dask does for its
  workers, BLAS and OpenMP pools get one thread each.
* **Freed memory.** glibc hands a freed block of more than 128 KiB straight back to the
  kernel, and trims a thread's heap as soon as 128 KiB are free at its top: then every
  window's fresh arrays, and every tile GDAL encodes, fault their pages in and have them
  zeroed again (about a tenth of a DEFLATE band reversal's CPU here, half of it in the
  kernel). Blocks of up to 32 MiB (a 1024² window of four float64 bands) come from the
  heap, and a heap keeps up to 64 MiB free before it gives memory back.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import NoReturn

# Read by OpenBLAS, MKL and OpenMP when they load.
ONE_THREAD_POOLS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
# glibc's tunables, read from the environment when a process starts, and the mallopt(3)
# parameter that sets each in a running one.
MALLOC_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": (-3, 32 << 20),  # M_MMAP_THRESHOLD
    "MALLOC_TRIM_THRESHOLD_": (-1, 64 << 20),  # M_TRIM_THRESHOLD
}


def main() -> NoReturn:
    """Run the ``mpraster`` command (`mpraster.cli.main`) in a process set up for it, and
    end the process as soon as the command is done.

    By then the command has closed every file, pool and shared-memory block it opened,
    and what is left is the interpreter's teardown: collecting every module of NumPy,
    rasterio, GDAL's drivers and mpraster (some 25 ms here, a tenth of a small run). The
    process ends without it, once its output is flushed, except under MPI: mpi4py
    finalizes MPI at exit, and a rank that skips that fails the whole job.
    """
    set_up_process()
    code = run_command()
    if "mpi4py.MPI" in sys.modules:
        sys.exit(code)
    os._exit(code)


def run_command() -> int:
    """Run the CLI; its exit code, once what it printed is flushed."""
    from mpraster.cli import main as cli_main

    try:
        cli_main()
        code: object = 0
    except SystemExit as end:
        code = end.code
    if not isinstance(code, int):  # a message instead of a code, as sys.exit takes it
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more to say
        code = code or 1
    return code


def set_up_process() -> None:
    """Apply this module's settings to this process and to the processes it starts."""
    for name in ONE_THREAD_POOLS:
        os.environ.setdefault(name, "1")
    mallopt = _glibc_mallopt()
    for name, (parameter, value) in MALLOC_SETTINGS.items():
        if name in os.environ or mallopt is None:
            continue  # the user's, read by glibc when this process started
        os.environ[name] = str(value)
        mallopt(parameter, value)


def _glibc_mallopt():
    """glibc's ``mallopt``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols, the C library's among them
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        return libc.mallopt
    except (OSError, AttributeError):
        return None
