"""Processes mode: a process pool, for kernels that hold the GIL.

Workers are forked from a *forkserver*, never from the main process: a child forked once
GDAL is loaded inherits its mutexes in whatever state the parent's threads left them, and
deadlocks. Windows travel to and from the workers through shared-memory slots
(`mpraster.modes.transport`), not pickles. Every worker dies with the main process (its
lifeline), so a main process killed outright leaves nothing running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from mpraster.modes import Backend
from mpraster.modes.transport import SlotPool
from mpraster.worker import WindowResult, WorkerSpec, compute, init_worker, read_and_compute

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext

    from mpraster.job import Job
    from mpraster.windows import WindowTask


class ProcessBackend(Backend):
    """A pool of ``job.jobs`` worker processes and one shared-memory slot per window in flight."""

    def __init__(self, job: Job, spec: WorkerSpec) -> None:
        self._layout = [(o.bands, np.dtype(o.dtype), o.validity.writes_mask) for o in spec.outputs]
        self._slots = SlotPool(job.in_flight, *job.window_bytes(inputs=job.io == "main"))
        try:
            executor = ProcessPoolExecutor(
                max_workers=job.jobs,
                mp_context=worker_context(),
                initializer=init_process_worker,
                initargs=(dataclasses.replace(spec, kernel=None), _lifeline()),
            )
        except BaseException:
            self._slots.close()
            raise
        super().__init__(executor)

    def submit(self, task: WindowTask, arrays: list[np.ndarray] | None) -> Future[WindowResult]:
        if arrays is None:
            return self.executor.submit(read_and_compute, task, self._slots.acquire())
        return self.executor.submit(compute, task, None, self._slots.acquire(arrays))

    def result_arrays(self, result: WindowResult) -> list[tuple[np.ndarray, np.ndarray | None]]:
        return self._slots.results(result.slot, result.shape, self._layout)

    def release(self, result: WindowResult) -> None:
        self._slots.release(result.slot)

    def close(self, finished: bool) -> None:
        """Shut down; after an error or a stop, kill the workers first.

        Process workers ignore SIGTERM (the main process owns it), so they are killed
        outright: a worker busy on a long window would otherwise hold the stop up. The
        slots are unlinked once no worker can touch them.
        """
        try:
            if not finished:
                _kill_workers(self.executor)
            self.executor.shutdown(wait=True, cancel_futures=not finished)
        finally:
            self._slots.close()


def worker_context() -> BaseContext:
    """Where workers start from: a forkserver, or where there is none (Windows), spawn.

    A forkserver is a fresh, single-threaded process that has imported mpraster (and so
    GDAL) but never used it; workers forked from it start in milliseconds instead of each
    importing rasterio again.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mpraster.modes.processes"])
    return context


def start_forkserver() -> None:
    """Start the forkserver of `worker_context` now (if it is one, and not yet running):
    its imports then overlap with whatever this process does before the first worker
    starts. It serves every later run of this process, and ends with it."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    kill = getattr(executor, "kill_workers", None)  # Python >= 3.14
    if kill is not None:
        kill()
        return
    # Before 3.14 a process pool offers no public way to reach its workers.
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        if process.is_alive():
            process.kill()


def init_process_worker(spec: WorkerSpec, lifeline: Connection) -> None:
    """Set up a process worker that ends as soon as the main process is gone (see `_lifeline`)."""
    threading.Thread(
        target=exit_with_main, args=(lifeline,), name="mpraster-lifeline", daemon=True
    ).start()
    init_worker(spec)


def exit_with_main(lifeline: Connection) -> None:
    """Wait for the end of the main process's lifeline, then end this worker at once.

    Nothing is ever sent on it: reading returns only once the main process is gone, even
    if it died before this thread started. A kernel that holds the GIL in compiled code
    delays this thread until it lets go of it (at the end of its window at the latest).
    """
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(1)


class _Lifeline:
    """This process's lifeline to its process workers: a pipe whose write end only it holds.

    Without it, the workers of a main process killed outright (SIGKILL, the OOM killer)
    live on: their parent is the forkserver, not the main process, and each holds both
    ends of its call queue's pipe, so no end of file reaches it. They keep the forkserver
    alive (it waits for every holder of its "alive" pipe to close it) and the resource
    tracker (it waits for every holder of its pipe, and only then unlinks the run's shared
    memory and semaphores), and all of them keep the caller's stdout and stderr open.
    Whatever ends this process, the kernel closes the write end, and every worker's
    `exit_with_main` thread sees end of file: how the forkserver itself learns that its
    clients are gone.
    """

    def __init__(self) -> None:
        self._ends: tuple[Connection, Connection] | None = None

    def read_end(self) -> Connection:
        if self._ends is None:
            import multiprocessing

            self._ends = multiprocessing.Pipe(duplex=False)
        return self._ends[0]

    def forget(self) -> None:
        # A child forked from this process must not hold the write end: this process's
        # workers would outlive this process for as long as the child lives.
        if self._ends is not None:
            for end in self._ends:
                end.close()
            self._ends = None


# One per process, by nature: the pipe stands for this process's life.
_LIFELINE = _Lifeline()
_lifeline = _LIFELINE.read_end
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LIFELINE.forget)
