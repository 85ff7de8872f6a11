"""Signals and exits of the command line: SIGINT and SIGTERM as a clean stop, seen even while
the main thread is stuck inside GDAL, and an exit that never waits on a stuck worker thread.

The library never exits; this is the CLI's (`mpraster.cli`) part.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from typing import Any, NoReturn

import click

from mpraster.modes.threads import WORKER_THREAD_PREFIX
from mpraster.schedule import StopSignal

# After a stop was asked for, how long the run may take beyond its grace period to drain,
# journal and close before the process is ended outright.
HARD_STOP_SECONDS = 5.0


class SignalWatch:
    """SIGINT and SIGTERM become a clean stop, seen even while the main thread is stuck in GDAL.

    Python runs a signal handler only when the main thread is back in the interpreter: a
    main thread blocked in a stalled network read would never see it. The C-level handler
    writes every signal's number to a wakeup pipe at once, and a thread reading that pipe
    sets the stop. If the run has not ended ``grace`` + HARD_STOP_SECONDS after the first
    signal (or HARD_STOP_SECONDS after a second one), the thread ends the process with the
    signal's exit code: what was journaled stays resumable, as after a kill.
    """

    def __init__(self, grace: float) -> None:
        self.stop = StopSignal(grace)
        self._done = threading.Event()
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            # A Python-level handler must exist for the C handler to write the wakeup byte.
            signal.signal(signum, _ignore_here)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="signal-watch", daemon=True).start()

    def _watch(self) -> None:
        deadline = None
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            readable, _, _ = select.select([self._read_fd], [], [], timeout)
            if self._done.is_set():
                return
            if not readable:
                self._hard_stop()
            for signum in os.read(self._read_fd, 64):
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue
                first = not self.stop.is_set()
                self.stop.set(signum)
                wait = (self.stop.grace if first else 0.0) + HARD_STOP_SECONDS
                deadline = min(deadline or float("inf"), time.monotonic() + wait)

    def _hard_stop(self) -> None:
        name = signal.Signals(self.stop.signum).name
        click.echo(
            f"Error: stopped by {name}; the run did not finish stopping within "
            f"{self.stop.grace:g} s of --stop-grace + {HARD_STOP_SECONDS:g} s (a read or a "
            "kernel stuck inside GDAL?), so it was ended; what was journaled is kept: run the "
            "same command with --resume to finish",
            err=True,
        )
        flush_and_exit(128 + self.stop.signum, hard=True)

    def done(self) -> None:
        """The run is over: the watch never ends the process after this."""
        self._done.set()


def _ignore_here(signum: int, frame: Any) -> None:
    """Nothing to do in the main thread: `SignalWatch` has seen the signal already."""


def flush_and_exit(code: int, hard: bool = False) -> NoReturn:
    """Exit with ``code``, not waiting for worker threads stuck inside GDAL.

    A thread blocked in a stalled read cannot be stopped, and the interpreter would wait
    for it at exit for ever: then the process ends without the usual shutdown.
    """
    stuck = any(t.name.startswith(WORKER_THREAD_PREFIX) for t in threading.enumerate())
    if hard or stuck:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
