"""Threads mode: a thread pool in the main process, for kernels that release the GIL.

Each thread sets itself up once (`mpraster.worker.init_worker`) with the kernel object
itself and, for ``--io workers``, dataset handles of its own: GDAL handles are never
shared between threads.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mpraster.modes import Backend
from mpraster.worker import WorkerSpec, WorkerState, init_worker

# Worker threads are named WORKER_THREAD_PREFIX-<run>_<n>, so a stop can find its own.
WORKER_THREAD_PREFIX = "mpraster-worker"
# How long a stop waits for a worker thread to finish its window before leaving it behind.
THREAD_JOIN_SECONDS = 2.0


class ThreadBackend(Backend):
    """A thread pool of ``jobs`` workers; their states are closed when they are done."""

    def __init__(self, jobs: int, spec: WorkerSpec) -> None:
        self._states: list[WorkerState] = []
        self._prefix = f"{WORKER_THREAD_PREFIX}-{spec.run_id}"
        super().__init__(
            ThreadPoolExecutor(
                max_workers=jobs,
                thread_name_prefix=self._prefix,
                initializer=init_worker,
                initargs=(spec, self._states),
            )
        )

    def close(self, finished: bool) -> None:
        """Shut the pool down; after an error or a stop, without waiting on a stuck thread.

        A worker thread cannot be killed: it is given THREAD_JOIN_SECONDS to finish its
        window, and one stuck inside GDAL (a stalled read) is left behind rather than
        hanging the stop, with its handles open (closing a dataset under a thread that is
        reading it would crash the process).
        """
        if finished:
            self.executor.shutdown(wait=True)
        else:
            self.executor.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + THREAD_JOIN_SECONDS
            for thread in threading.enumerate():
                if thread.name.startswith(f"{self._prefix}_"):
                    thread.join(max(deadline - time.monotonic(), 0.0))
        for state in self._states:
            if not state.thread.is_alive():
                state.close()
