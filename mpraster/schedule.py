"""The one scheduling loop: bounded in flight, written in plan order, stoppable.

Written once against the `mpraster.modes` protocol (a ``submit`` that returns a future),
whatever the mode and the I/O placement. A window counts as in flight from submission
until it is written, so memory is bounded by ``max_in_flight`` windows, never by the
raster; results that finish early wait in a reorder buffer for their turn, so the output
is the same bytes however the windows were run.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait

from mpraster.errors import Interrupted, WindowTimeoutError, WorkerDied
from mpraster.stats import RunStats
from mpraster.windows import WindowTask, describe_window
from mpraster.worker import WindowResult

# How long the loop waits for a result before it looks at a stop request again.
_STOP_POLL_SECONDS = 0.1


class StopSignal:
    """A request to stop a run, with the signal that asked for it.

    Windows in flight are given ``grace`` seconds to finish and be written (a batch system
    kills the job some 30 seconds after its SIGTERM); the rest are dropped and redone by
    ``--resume``. A second request stops at once.
    """

    def __init__(self, grace: float = 20.0) -> None:
        self._event = threading.Event()
        self.signum = int(signal.SIGINT)
        self.grace = grace
        self.deadline = float("inf")

    def set(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop: at once if it was asked before, else after the grace period."""
        self.signum = int(signum)
        if self._event.is_set():
            self.deadline = time.monotonic()
        else:
            self.deadline = time.monotonic() + self.grace
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


def schedule(
    tasks: Sequence[WindowTask],
    submit: Callable[[WindowTask], Future],
    write: Callable[[WindowTask, WindowResult], None],
    max_in_flight: int,
    stats: RunStats,
    stop: StopSignal | None = None,
    window_timeout: float | None = None,
) -> None:
    """Submit as results drain, keep at most ``max_in_flight`` windows, write in plan order.

    ``Executor.map`` would submit the whole plan at once, and memory would grow with the
    raster.

    Raises
    ------
    WindowTimeoutError
        If a window has been running (reading or computing in a worker) for longer than
        ``window_timeout`` seconds: a hung network filesystem or kernel.
    WorkerDied
        If a worker process died, naming the windows in flight.
    Interrupted
        Once ``stop`` is set: nothing more is submitted, the windows in flight are finished
        and written, and then it raises (never in the middle of starting a worker process,
        which would leave a half-spawned child behind).
    """
    pending: dict[Future, WindowTask] = {}
    ready: dict[int, WindowResult] = {}
    started: dict[Future, float] = {}  # when each pending window was first seen running
    submitted = written = 0
    while written < len(tasks):
        draining = stop is not None and stop.is_set()
        if draining and (written == submitted or stop.expired()):
            raise _stopped(stop, written, len(tasks))
        while not draining and submitted < len(tasks) and submitted - written < max_in_flight:
            task = tasks[submitted]
            try:
                pending[submit(task)] = task
            except BrokenExecutor as err:
                # A worker died between two submissions: the pool refuses new work.
                raise _worker_died(list(pending.values())) from err
            submitted += 1
        _collect(pending, ready, started, stats)
        if window_timeout is not None:
            _check_window_times(pending, started, window_timeout)
        while written < len(tasks) and tasks[written].index in ready:
            write(tasks[written], ready.pop(tasks[written].index))
            written += 1


def _collect(
    pending: dict[Future, WindowTask],
    ready: dict[int, WindowResult],
    started: dict[Future, float],
    stats: RunStats,
) -> None:
    """Move the results that are done from ``pending`` to ``ready``, in plan order."""
    start = time.perf_counter()
    # The timeout only bounds how long a stop request waits to be seen.
    done, _ = wait(pending, timeout=_STOP_POLL_SECONDS, return_when=FIRST_COMPLETED)
    stats.wait_seconds += time.perf_counter() - start
    # In plan order, so that of several failed windows the first is reported.
    for future in sorted(done, key=lambda f: pending[f].index):
        task = pending.pop(future)
        started.pop(future, None)
        try:
            ready[task.index] = future.result()
        except BrokenExecutor as err:
            raise _worker_died([task, *pending.values()]) from err


def _stopped(stop: StopSignal, written: int, total: int) -> Interrupted:
    return Interrupted(
        f"stopped by {signal.Signals(stop.signum).name} after {written} of {total} "
        "windows; the partial output and its journal are kept: run the same command "
        "with --resume to finish",
        stop.signum,
    )


def _worker_died(in_flight: Sequence[WindowTask]) -> WorkerDied:
    lost = ", ".join(describe_window(t) for t in sorted(in_flight, key=lambda t: t.index))
    during = f" while windows {lost} were in flight" if lost else ""
    return WorkerDied(
        f"a worker process died (crashed, killed or out of memory){during}; "
        "nothing was written to the output"
    )


def _check_window_times(
    pending: Mapping[Future, WindowTask], started: dict[Future, float], timeout: float
) -> None:
    """Raise `WindowTimeoutError` for the first window running longer than ``timeout``.

    A window's clock starts when its future is first seen running (a process pool marks a
    window running when it queues it to a worker, so its clock may start a window early).
    """
    now = time.monotonic()
    for future, task in sorted(pending.items(), key=lambda item: item[1].index):
        if future.running():
            since = started.setdefault(future, now)
            if now - since > timeout:
                raise WindowTimeoutError(
                    f"window {describe_window(task)} ran for more than {timeout:g} s "
                    "(--window-timeout): a read or the kernel hung (a stalled network "
                    "filesystem?); check the input's storage, or give more time"
                )
