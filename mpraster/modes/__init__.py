"""Executor back ends: where windows are read (with ``--io workers``) and computed.

Every mode is a `Backend` around a ``concurrent.futures.Executor``; the scheduling loop
(`mpraster.schedule`) is written once against this small protocol:

* ``submit(task, arrays)``: compute ``task`` from ``arrays`` the main process read, or,
  with ``arrays`` None, have the worker read it too; returns a future `WindowResult`;
* ``result_arrays(result)``: per output, the window's array and its mask or None (valid
  until ``release``);
* ``release(result)``: the writer is done with it;
* ``close(finished)``: shut down, waiting for the workers after a finished run, or
  stopping them at once after an error or a stop.

One file a back end: `threads` (a thread pool), `processes` (a process pool fed through
shared memory, `transport`), `mpi` (MPI ranks).
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

import numpy as np

from mpraster.worker import WindowResult, WorkerSpec, compute, read_and_compute

if TYPE_CHECKING:
    from mpraster.job import Job
    from mpraster.windows import WindowTask


class Backend:
    """Runs windows on an executor whose workers were set up from a `WorkerSpec`."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def submit(self, task: WindowTask, arrays: list[np.ndarray] | None) -> Future[WindowResult]:
        if arrays is None:
            return self.executor.submit(read_and_compute, task)
        return self.executor.submit(compute, task, arrays)

    def result_arrays(self, result: WindowResult) -> list[tuple[np.ndarray, np.ndarray | None]]:
        return result.parts()

    def release(self, result: WindowResult) -> None:
        """Nothing to give back: the result array is the worker's own."""

    def close(self, finished: bool) -> None:
        self.executor.shutdown(wait=True, cancel_futures=not finished)


def make_backend(job: Job, spec: WorkerSpec, executor: Executor | None = None) -> Backend:
    """The back end of ``job.mode``; ``executor`` is MPI mode's, made by its caller.

    Each back end is imported only when chosen: a thread run does not pay for
    multiprocessing or MPI.
    """
    if job.mode == "threads":
        from mpraster.modes.threads import ThreadBackend

        return ThreadBackend(job.jobs, spec)
    if job.mode == "processes":
        from mpraster.modes.processes import ProcessBackend

        return ProcessBackend(job, spec)
    from mpraster.modes.mpi import MpiBackend

    return MpiBackend(job.jobs, spec, executor)
