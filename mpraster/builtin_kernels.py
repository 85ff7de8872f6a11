"""The kernels that ship with mpraster: public wrappers over the compiled loops in ``ext/``.

Each wrapper checks and prepares its inputs (shape, contiguity, output array) so that the
compiled loop never sees a bad shape, as numcodecs does around its Cython kernels.
"""

from __future__ import annotations

import numpy as np

from mpraster import _reverse
from mpraster.kernels import kernel

__all__ = ["reverse", "reverse_py"]

#: Every data type the compiled band-reversal loop is specialised for.
REVERSE_DTYPES = (
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
)


def _check_cost(params: dict) -> None:
    if params["cost"] < 0:
        raise ValueError(f"cost must be zero or more, got {params['cost']}")


@kernel("reverse", releases_gil=True, dtypes=REVERSE_DTYPES, validate=_check_cost)
def reverse(src: np.ndarray, *, cost: int = 2000) -> np.ndarray:
    """Reverse the band order, spending `cost` float additions per element (compiled, nogil).

    out[b] = src[bands - 1 - b]. With ``cost=2000`` this is the CPU-bound job of rasterio's
    concurrency example (``rasterio._example.compute``); ``cost=0`` is a pure band reversal,
    an I/O-bound job.
    """
    if src.ndim != 3:
        raise ValueError(f"reverse takes a (bands, rows, cols) array, got shape {src.shape}")
    src = np.ascontiguousarray(src)
    out = np.empty(src.shape, dtype=src.dtype)
    _reverse.reverse_bands(src, out, cost)
    return out


@kernel("reverse-py", releases_gil=False, validate=_check_cost)
def reverse_py(src: np.ndarray, *, cost: int = 2000) -> np.ndarray:
    """Reverse the band order in NumPy, holding the GIL between array operations.

    The same result as ``reverse``; the busy work is ``cost`` whole-array additions. It is
    the GIL-holding kernel that ``--mode auto`` runs in processes with worker I/O.
    """
    if src.ndim != 3:
        raise ValueError(f"reverse-py takes a (bands, rows, cols) array, got shape {src.shape}")
    work = np.zeros(src.shape, dtype=np.float64)
    for _ in range(cost):
        work += 1.0
    return src[::-1].copy()
