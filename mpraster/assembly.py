"""Whole tile windows for the writer: results cut into row strips are put back together,
pixels and mask, and the tiles of a placed output that arrive as pixels are encoded on a
pool of threads; the writer's thread then writes them in plan order."""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from mpraster.output import OutputWriter
from mpraster.resume import checksum
from mpraster.tiles import EncodedTile
from mpraster.windows import WindowTask


@dataclass(frozen=True)
class WholeTile:
    """One tile window ready for the writer: its pixels, its stored bytes
    (`EncodedTile`), or a Future of them from the encoding pool; ``known``: the journal's
    checksum of its pixels and mask, if taken already (a placed tile is journaled by its
    stored bytes instead)."""

    window: Window
    data: np.ndarray | EncodedTile | Future
    known: int | None
    mask: np.ndarray | None


class TileAssembly:
    """Turns one output's window results into whole tile windows, in plan order.

    A tile window cut into row strips is assembled here first, so the writer never writes
    part of a tile: GDAL would hold the part in its cache, and under cache pressure flush it
    early and rewrite it later, which would make the file's layout depend on timing. A
    result's mask, when the output has one, is assembled with it.

    When the writer places the output's tiles (`OutputWriter.encoder`), a whole tile that
    arrives as pixels — assembled from strips, or computed by a worker that does not
    encode (``-j 1``) — is encoded on ``pool`` (GDAL releases the GIL while it
    compresses), so that the writer's one thread only places tiles and the encoding
    spreads over as many threads as there are workers. The bytes do not depend on which
    thread encoded a tile.

    `add` runs where results are collected (the main thread), `write` on the writer's
    thread, in the same order.
    """

    def __init__(
        self, writer: OutputWriter, dtype: np.dtype, bands: int, pool: Executor | None = None
    ) -> None:
        self.writer = writer
        self.dtype = dtype
        self.bands = bands
        self.pool = pool if writer.encoder is not None else None
        self._buffer: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def add(
        self,
        task: WindowTask,
        data: np.ndarray | EncodedTile,
        known: int | None = None,
        mask: np.ndarray | None = None,
    ) -> WholeTile | None:
        """Take one window's result (and its mask); ``known``: their checksum, if it is a
        whole tile's. Returns the whole tile window once its last part is in, else None."""
        if task.parts == 1:
            return self._ready(WholeTile(task.tile, data, known, mask))
        if isinstance(data, EncodedTile):
            # A placed tile taken whole from an interrupted run, handed over with each of
            # its strips: written once, with its last.
            last = task.part == task.parts - 1
            return WholeTile(task.tile, data, None, None) if last else None
        if task.part == 0:
            shape = (self.bands, int(task.tile.height), int(task.tile.width))
            self._buffer = np.empty(shape, dtype=self.dtype)
            self._mask = None if mask is None else np.empty(shape[1:], dtype=np.uint8)
        start, stop = task.rows_in_tile
        self._buffer[:, start:stop] = data
        if mask is not None:
            self._mask[start:stop] = mask
        if task.part < task.parts - 1:
            return None
        buffer, whole_mask = self._buffer, self._mask
        self._buffer = self._mask = None
        return self._ready(WholeTile(task.tile, buffer, None, whole_mask))

    def _ready(self, tile: WholeTile) -> WholeTile:
        if self.pool is None or isinstance(tile.data, EncodedTile):
            return tile
        job = self.pool.submit(self.writer.encoder.encode, tile.data)
        return WholeTile(tile.window, job, None, tile.mask)

    def write(self, tile: WholeTile) -> None:
        """Hand ``tile`` to the writer (on the writer's thread).

        Raises
        ------
        OutputWriteError
            As `OutputWriter.write`; also when encoding the tile failed.
        """
        if isinstance(tile.data, (Future, EncodedTile)):  # journaled by its stored bytes
            self.writer.write(tile.data, tile.window, None, tile.mask)
            return
        known = checksum(tile.data, tile.mask) if tile.known is None else tile.known
        self.writer.write(tile.data, tile.window, known, tile.mask)
