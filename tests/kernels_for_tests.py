"""User kernels that misbehave on purpose, loaded by the tests as module:function."""

import os

import numpy as np

import mpraster
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
        # A test that fails before it opens the gate must not leave the run waiting for
        # ever: after two minutes the window fails instead.
        deadline = time.monotonic() + 120
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {path} was never opened")
            time.sleep(0.005)
    return src.copy()


def _same_type(dtypes, params):
    return dtypes[0]


@kernel(
    releases_gil=True,
    outputs=[
        mpraster.Output("total", "float64", bands=1, nodata=-1.0),
        mpraster.Output("flipped", _same_type, bands_from="reverse"),
    ],
)
def two_products(src: np.ndarray, *, scale: float = 1.0) -> dict:
    """Two outputs of different types and bands: the bands' sum times scale, and the bands
    in reverse order (as the reverse kernel)."""
    return {"flipped": src[::-1].copy(), "total": src.sum(axis=0, dtype="float64") * scale}


@kernel(
    releases_gil=True,
    outputs=[mpraster.Output("a", "uint8", bands=1), mpraster.Output("b", "uint8", bands=1)],
)
def forgets_an_output(src: np.ndarray) -> dict:
    """Declares two outputs and returns one."""
    return {"a": src[0].astype("uint8")}
