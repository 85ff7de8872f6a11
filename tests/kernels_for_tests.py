"""User kernels that misbehave on purpose, loaded by the tests as module:function."""

import os

import numpy as np

from mpraster import kernel


@kernel(releases_gil=False)
def fail_on_second_row(src: np.ndarray, *, row: int = 16) -> np.ndarray:
    """Raise on any window that starts at row ``row`` (a kernel bug)."""
    if src.shape[1] and _window_starts_at(src, row):
        raise ZeroDivisionError("kernel bug on purpose")
    return src.copy()


def _window_starts_at(src: np.ndarray, row: int) -> bool:
    # The tests' rasters are written so that band 0 of every pixel of row r is r % 256.
    return int(src[0, 0, 0]) == row


@kernel(releases_gil=False)
def exit_worker(src: np.ndarray, *, row: int = 16) -> np.ndarray:
    """Kill the worker process outright on the window starting at ``row`` (a crash)."""
    if _window_starts_at(src, row):
        os._exit(3)
    return src.copy()


@kernel(releases_gil=False)
def wrong_shape(src: np.ndarray) -> np.ndarray:
    """Return one row too few."""
    return src[:, 1:].copy()


@kernel(releases_gil=True)
def hang(src: np.ndarray, *, row: int = 16) -> np.ndarray:
    """Block forever on the window starting at ``row`` (for interrupt tests)."""
    if _window_starts_at(src, row):
        import threading

        threading.Event().wait()
    return src.copy()


@kernel(releases_gil=True)
def wait_for_file(src: np.ndarray, *, row: int = 16, path: str = "") -> np.ndarray:
    """On the window starting at ``row``, wait until ``path`` exists (a gate the test opens)."""
    if _window_starts_at(src, row):
        import time

        # A gate, not a timer: the test creates the file when it wants the run to go on.
        while not os.path.exists(path):
            time.sleep(0.005)
    return src.copy()
