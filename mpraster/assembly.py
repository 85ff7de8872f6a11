"""Whole tile windows for the writer: results cut into row strips are put back together,
pixels and mask, and handed over in plan order."""

from __future__ import annotations

import numpy as np

from mpraster.output import OutputWriter
from mpraster.resume import checksum
from mpraster.windows import WindowTask


class TileAssembly:
    """Hands results to the writer one whole tile window at a time, in plan order.

    A tile window cut into row strips is assembled here first, so the writer never writes
    part of a tile: GDAL would hold the part in its cache, and under cache pressure flush it
    early and rewrite it later, which would make the file's layout depend on timing. A
    result's mask, when the output has one, is assembled with it.
    """

    def __init__(self, writer: OutputWriter, dtype: np.dtype, bands: int) -> None:
        self.writer = writer
        self.dtype = dtype
        self.bands = bands
        self._buffer: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def add(
        self,
        task: WindowTask,
        data: np.ndarray,
        known: int | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """Take one window's result (and its mask); ``known``: their checksum, if it is a
        whole tile's."""
        if task.parts == 1:
            known = checksum(data, mask) if known is None else known
            self.writer.write(data, task.tile, known, mask)
            return
        if task.part == 0:
            shape = (self.bands, int(task.tile.height), int(task.tile.width))
            self._buffer = np.empty(shape, dtype=self.dtype)
            self._mask = None if mask is None else np.empty(shape[1:], dtype=np.uint8)
        start, stop = task.rows_in_tile
        self._buffer[:, start:stop] = data
        if mask is not None:
            self._mask[start:stop] = mask
        if task.part == task.parts - 1:
            buffer, mask = self._buffer, self._mask
            self._buffer = self._mask = None
            self.writer.write(buffer, task.tile, checksum(buffer, mask), mask)
