"""Cutting an output grid into windows: pure functions on ``rasterio.windows.Window``."""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

from mpraster.errors import OptionError

MIN_BLOCK = 16


@dataclass(frozen=True)
class WindowTask:
    """One unit of work: the output window and the (possibly larger) window to read.

    ``read`` is ``window`` grown by the kernel's halo on every side; it may reach past the
    raster's edge, and ``crop`` gives the part of a result computed on ``read`` that
    belongs to ``window`` as (row_start, row_stop, col_start, col_stop).
    """

    index: int
    window: Window
    read: Window

    @property
    def crop(self) -> tuple[int, int, int, int]:
        r0 = int(self.window.row_off - self.read.row_off)
        c0 = int(self.window.col_off - self.read.col_off)
        return r0, r0 + int(self.window.height), c0, c0 + int(self.window.width)

    @property
    def pixels(self) -> int:
        return int(self.window.height) * int(self.window.width)


def check_block_size(block: int) -> int:
    """Return ``block`` if it is a valid tile size, else raise `OptionError`.

    GeoTIFF tiles must be a multiple of 16 pixels on each side.
    """
    if isinstance(block, bool) or not isinstance(block, int):
        raise OptionError(f"--block-size must be a whole number, got {block!r}")
    if block < MIN_BLOCK or block % 16:
        raise OptionError(
            f"--block-size must be a multiple of 16 and at least {MIN_BLOCK}, got {block}; "
            "try 256 or 512"
        )
    return block


def plan_windows(height: int, width: int, block: int, halo: int = 0) -> list[WindowTask]:
    """Cut a ``height`` x ``width`` grid into ``block``-sized windows in row-major order.

    Windows are aligned to the output's tiles, so every write covers whole tiles (the last
    row and column of windows are cut short by the raster's edge).

    Parameters
    ----------
    height, width : int
        Size of the output grid in pixels.
    block : int
        Window and tile size; see `check_block_size`.
    halo : int
        Pixels added on every side of each window's read window.

    Raises
    ------
    OptionError
        If ``block`` is not a valid tile size or ``halo`` is negative.
    """
    check_block_size(block)
    if halo < 0:
        raise OptionError(f"a kernel halo must be zero or more, got {halo}")
    tasks = []
    for row in range(0, height, block):
        for col in range(0, width, block):
            window = Window(col, row, min(block, width - col), min(block, height - row))
            read = Window(col - halo, row - halo, window.width + 2 * halo, window.height + 2 * halo)
            tasks.append(WindowTask(len(tasks), window, read))
    return tasks
