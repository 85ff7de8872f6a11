"""The ``mpraster`` command's entry point: sets up the process, then runs the CLI.

The command's parallelism is its workers (``-j``) and GDAL's own threads. A BLAS thread
pool in every process only competes with them for the same cores: OpenBLAS, which NumPy
bundles, starts one thread per core when NumPy is imported, and they spin for a while
even when no kernel ever calls BLAS (some 70 ms of CPU per process here, half the cost of
importing NumPy). So, as dask does for its workers, BLAS and OpenMP pools get one thread
each, unless the user's environment says otherwise. This must happen before NumPy is
imported: ``import mpraster`` imports nothing else (see `mpraster.__init__`). Worker
processes, started from this process, inherit it.
"""

from __future__ import annotations

import os

# Read by OpenBLAS, MKL and OpenMP when they load.
ONE_THREAD_POOLS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def main() -> None:
    """Run the ``mpraster`` command (`mpraster.cli.main`) in a process set up for it."""
    for name in ONE_THREAD_POOLS:
        os.environ.setdefault(name, "1")
    from mpraster.cli import main as cli_main

    cli_main()
