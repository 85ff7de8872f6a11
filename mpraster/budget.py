"""Memory budgets: GDAL's block cache per process, from the windows in flight.

GDAL sizes its block cache at 5% of RAM per process unless told otherwise: 24 workers would
reserve more than the node, and a main process writing a large compressed output would
hold tiles by the gigabyte. Here each process gets what its reads and writes reuse.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from mpraster.inputs import band_grid, gdal_env

if TYPE_CHECKING:
    from mpraster.job import Job

# The smallest GDAL block cache a process gets, whatever the windows need: room for GDAL's
# own bookkeeping and a few blocks.
MIN_CACHE_BYTES = 4 << 20


def reuses_blocks(job: Job) -> bool:
    """Whether input blocks are read by more than one window.

    They are when windows overlap (a halo), when tiles are cut into row strips, or when an
    input's blocks do not fit the window grid (a striped file: each strip spans every
    window of its row). Then a row of windows' blocks is worth caching, so that each block
    is decoded once; otherwise a cached block is never used again.
    """
    if job.halo or any(task.parts > 1 for task in job.tasks):
        return True
    return any(
        (info.height > job.block_size and job.block_size % info.block_shape[0])
        or (info.width > job.block_size and job.block_size % info.block_shape[1])
        for info in job.infos
    )


def reader_cache_bytes(job: Job, in_bands: bool = False) -> int:
    """GDAL cache one reader (one dataset handle per input) needs; see `reuses_blocks`.

    A reader asking GDAL for each window decodes each block once when the cache holds
    every block a row of windows touches: GDAL evicts the least recently used block, and
    the blocks the next row still needs were last used in step with those it does not.
    A reader of bands of whole rows (``in_bands``, `reads_in_bands`) asks for each block once:
    the cache only carries a pixel-interleaved block's other bands through one request.
    """
    if not reuses_blocks(job):
        window_in, _ = job.window_bytes()
        return job.in_flight * window_in
    total = 0
    for info in job.infos:
        rows_of_blocks, cols_of_blocks = info.block_shape
        if in_bands:
            rows = rows_of_blocks
            cols = (-(-(job.block_size + 2 * job.halo) // cols_of_blocks) + 1) * cols_of_blocks
        else:
            # Rows of blocks a row of windows touches, however it falls on the block grid.
            rows = (-(-(job.block_size + 2 * job.halo) // rows_of_blocks) + 1) * rows_of_blocks
            cols = -(-info.width // cols_of_blocks) * cols_of_blocks
        total += rows * cols * info.count * np.dtype(info.dtype).itemsize
    return total


def reads_in_bands(job: Job) -> bool:
    """Whether the main process's reader reads the inputs in bands of whole rows of blocks.

    It does where windows share blocks (`reuses_blocks`) and the main process reads (``--io
    main``; `mpraster.inputs.WindowReader`): each block is asked of GDAL once, a band's
    blocks decoded on GDAL's threads at once. A reduction's reader reads window by window.
    """
    return getattr(job, "kernel", None) is not None and job.io == "main" and reuses_blocks(job)


def reader_rows_bytes(job: Job) -> int:
    """Bytes of the bands of rows the main process's reader holds at the peak: the halo
    above a row of windows, the row, and the whole blocks its halo below reaches (see
    `mpraster.inputs.band_grid`)."""
    if not reads_in_bands(job):
        return 0
    total = 0
    for info in job.infos:
        block_rows = info.block_shape[0]
        held = 2 * job.halo + band_grid(job.block_size, block_rows) + block_rows - 1
        per_row = info.width * (info.count * np.dtype(info.dtype).itemsize + info.has_mask)
        total += min(info.height, held) * per_row
    return total


def main_cache_bytes(job: Job) -> int:
    """GDAL block cache of the main process.

    The writer's tiles of the windows in flight, and the readers that share the main
    process: its own (``--io main``), or each thread's handles (threads with
    ``--io workers``; GDAL caches blocks per handle).
    """
    budget = 2 * job.in_flight * job.tile_bytes
    if job.io == "main":
        budget += reader_cache_bytes(job, in_bands=reads_in_bands(job))
    elif job.mode == "threads":
        budget += job.jobs * reader_cache_bytes(job)
    return max(budget, MIN_CACHE_BYTES)


def worker_cache_bytes(job: Job) -> int:
    """GDAL block cache of each worker process (processes and MPI modes)."""
    reader = reader_cache_bytes(job) if job.io == "workers" else 0
    return max(reader, MIN_CACHE_BYTES)


def memory_estimate(job: Job) -> dict[str, int]:
    """Bytes of pixel data held at the peak: windows in flight, the rows the main
    process's reader holds (`reader_rows_bytes`) and GDAL caches.

    The interpreter, NumPy and GDAL themselves add some 70 MiB per process on top.
    """
    window_in, window_out = job.window_bytes()
    # Process workers hold their own copy of what they read and return.
    copies = 2 if job.mode == "processes" else 1
    caches = main_cache_bytes(job)
    if job.mode == "processes":
        caches += job.jobs * worker_cache_bytes(job)
    windows = job.in_flight * (window_in + window_out) * copies
    # Results waiting for the writer's thread (`mpraster.write_thread`): one per worker
    # (a reduction has no output: nothing waits).
    windows += job.jobs * window_out
    rows = reader_rows_bytes(job)
    return {
        "windows": windows,
        "reader_rows": rows,
        "gdal_cache": caches,
        "total": windows + rows + caches,
    }


class CacheBudget:
    """The windows in flight and the GDAL caches of a planned run, for the plans that have
    ``jobs``, ``prefetch`` and what `reader_cache_bytes` reads (a `Job`, a reduction's)."""

    @property
    def in_flight(self) -> int:
        """The most windows held at once (read, computing, or waiting to be written)."""
        return self.jobs * self.prefetch

    @property
    def main_cache_bytes(self) -> int:
        """GDAL block cache of the main process (see `main_cache_bytes`)."""
        return main_cache_bytes(self)

    @property
    def worker_cache_bytes(self) -> int:
        """GDAL block cache of each worker process (processes and MPI modes)."""
        return worker_cache_bytes(self)


def main_gdal_env(
    cache_bytes: int, config: Mapping[str, str] | None = None
) -> contextlib.AbstractContextManager:
    """The main process's GDAL configuration: its block cache and the network timeouts.

    The writer's tiles stay in the cache until GDAL flushes them (compressing on its
    NUM_THREADS); bounding the cache bounds the main process's memory, whatever the
    raster's size. A GDAL_CACHEMAX the user set (environment or ``config``) wins; ``config``
    is the run's own GDAL configuration (``--config``).
    """
    config = dict(config or {})
    if "GDAL_CACHEMAX" not in os.environ:
        config.setdefault("GDAL_CACHEMAX", cache_bytes)
    return gdal_env(**config)
