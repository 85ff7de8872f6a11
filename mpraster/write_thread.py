"""The writer's own thread: results are written while the main thread reads and dispatches.

The main thread of a run reads windows (``--io main``), dispatches them and collects the
results; writing a result — GDAL encoding its tiles (DEFLATE is the costliest step of most
runs), writing them, checkpointing — used to happen in that same thread, so no window was
read or dispatched while a tile was being compressed. `WriteThread` takes the writes, in
plan order, on a thread of its own (GDAL releases the GIL while it encodes and writes), so
reading, the kernels and the writer's encoding overlap. The order of writes, and so the
file's bytes, is unchanged: one thread writes them all, first in, first out.

Errors GDAL raises or only logs are heard in the thread that made the call
(`mpraster.gdal_errors`): the writes run under a rasterio environment of this thread's own,
and a failed write fails the run at the main thread's next hand-over, or at `finish`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import rasterio
from rasterio.env import env_ctx_if_needed


class WriteThread:
    """Runs the writes handed to it, in order, on one thread of its own.

    At most ``depth`` writes wait at once: a caller that gets ahead of the writer waits
    (so the windows held in memory stay bounded). Use as a context manager: leaving it
    waits for the writes handed over (or, after an error, skips them) and ends the thread.
    """

    def __init__(self, depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="mpraster-writer", daemon=True)

    def __enter__(self) -> WriteThread:
        self._thread.start()
        return self

    def put(self, write: Callable[..., Any], *args: Any) -> None:
        """Hand ``write(*args)`` over; first raise what an earlier write raised."""
        self._raise_failure()
        self._queue.put((write, args))

    def finish(self) -> None:
        """Wait until every write handed over is done; raise what one of them raised."""
        self._end()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _end(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        # GDAL's error handler is pushed per thread by a rasterio environment, and the
        # writer wants masks inside the file (see `mpraster.output.OutputWriter`).
        with env_ctx_if_needed(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self._error is not None:
                    continue  # a write failed: the rest are dropped, the run fails
                write, args = item
                try:
                    write(*args)
                except BaseException as err:  # handed to the main thread
                    self._error = err

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is not None and self._error is None:
            # The run failed elsewhere: what is still queued need not be written.
            self._error = RuntimeError("the run failed")
            self._end()
            self._error = None
            return
        self._end()
