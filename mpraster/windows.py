"""Cutting an output grid into windows: pure functions on ``rasterio.windows.Window``."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rasterio.windows import Window

from mpraster.errors import OptionError

MIN_BLOCK = 16


@dataclass(frozen=True)
class WindowTask:
    """One unit of work: the window to compute, the window to read, the tile window to write.

    ``read`` is ``window`` grown by the kernel's halo on every side; it may reach past the
    raster's edge, and ``crop`` gives the part of a result computed on ``read`` that
    belongs to ``window`` as (row_start, row_stop, col_start, col_stop).

    ``tile`` is the tile-aligned window the result is written to. Usually it is ``window``
    itself; when a raster has too few tiles to keep every worker busy, a tile window is cut
    into ``parts`` row strips, computed separately and written together once the last one
    (``part == parts - 1``) is in, so writes always cover whole tiles.
    """

    index: int
    window: Window
    read: Window
    tile: Window
    part: int = 0
    parts: int = 1

    @property
    def crop(self) -> tuple[int, int, int, int]:
        r0 = int(self.window.row_off - self.read.row_off)
        c0 = int(self.window.col_off - self.read.col_off)
        return r0, r0 + int(self.window.height), c0, c0 + int(self.window.width)

    @property
    def rows_in_tile(self) -> tuple[int, int]:
        """The rows of ``tile`` that ``window`` covers, as (start, stop)."""
        start = int(self.window.row_off - self.tile.row_off)
        return start, start + int(self.window.height)

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


def _row_strips(tile: Window, parts: int) -> list[Window]:
    """Cut ``tile`` into at most ``parts`` row strips of near-equal height (16 rows or more)."""
    rows = int(tile.height)
    parts = max(1, min(parts, rows // MIN_BLOCK))
    bounds = [rows * i // parts for i in range(parts + 1)]
    return [
        Window(tile.col_off, tile.row_off + top, tile.width, bottom - top)
        for top, bottom in itertools.pairwise(bounds)
    ]


def plan_windows(
    height: int, width: int, block: int, halo: int = 0, min_tasks: int = 1
) -> list[WindowTask]:
    """Cut a ``height`` x ``width`` grid into ``block``-sized windows in row-major order.

    Windows are aligned to the output's tiles, so every write covers whole tiles (the last
    row and column of windows are cut short by the raster's edge). When there are fewer
    tile windows than ``min_tasks``, each is cut into row strips so that the work still
    spreads over every worker; the file written is the same either way.

    Parameters
    ----------
    height, width : int
        Size of the output grid in pixels.
    block : int
        Window and tile size; see `check_block_size`.
    halo : int
        Pixels added on every side of each window's read window.
    min_tasks : int
        The number of tasks to aim for at least (e.g. a few per worker).

    Raises
    ------
    OptionError
        If ``block`` is not a valid tile size or ``halo`` is negative.
    """
    check_block_size(block)
    if halo < 0:
        raise OptionError(f"a kernel halo must be zero or more, got {halo}")
    tiles = [
        Window(col, row, min(block, width - col), min(block, height - row))
        for row in range(0, height, block)
        for col in range(0, width, block)
    ]
    parts = -(-min_tasks // len(tiles)) if tiles else 1
    tasks = []
    for tile in tiles:
        strips = _row_strips(tile, parts)
        for part, window in enumerate(strips):
            read = Window(
                window.col_off - halo,
                window.row_off - halo,
                window.width + 2 * halo,
                window.height + 2 * halo,
            )
            tasks.append(WindowTask(len(tasks), window, read, tile, part, len(strips)))
    return tasks


def plan_block_windows(
    height: int, width: int, block: int, block_shape: tuple[int, int], min_tasks: int = 1
) -> list[WindowTask] | None:
    """Cut a grid into windows of whole blocks, about ``block`` x ``block`` pixels each,
    in row-major order; None if there are too few blocks for ``min_tasks`` windows.

    For reductions, which write no tiles: a window that cuts through an input's blocks
    (``block_shape``: a block's rows and cols; a strip spans every window of its row) has
    GDAL decode the block again for every window, or every worker, that reads a part of it.
    Here every block is read by one window. Windows narrow down (in whole blocks) until
    there are ``min_tasks`` of them.
    """
    rows_of_block, cols_of_block = min(block_shape[0], height), min(block_shape[1], width)
    cols = min(width, cols_of_block * max(1, round(block / cols_of_block)))
    # Tiles: as near block x block as whole tiles go; strips (a block as wide as the
    # raster): full-width windows of about block * block pixels.
    side = block if cols_of_block < width else block * block / cols
    rows = min(height, rows_of_block * max(1, round(side / rows_of_block)))
    across = -(-width // cols)
    wanted = -(-min_tasks // across)  # rows of windows
    if -(-height // rows) < wanted:
        rows = max(rows_of_block, height // wanted // rows_of_block * rows_of_block)
    down = -(-height // rows)
    wanted = -(-min_tasks // down)  # windows in a row
    if across < wanted:
        cols = max(cols_of_block, width // wanted // cols_of_block * cols_of_block)
    if -(-height // rows) * -(-width // cols) < min_tasks:
        return None
    windows = [
        Window(col, row, min(cols, width - col), min(rows, height - row))
        for row in range(0, height, rows)
        for col in range(0, width, cols)
    ]
    return [WindowTask(i, window, window, window) for i, window in enumerate(windows)]


def shard_path(output: str, index: int, count: int, suffix: str = ".tif") -> str:
    """Where shard ``index`` of ``count`` writes its share of ``output`` (a raster's
    ``.tif``, or a stats job's partial results, ``.stats``)."""
    return f"{output}.shard{index:04d}of{count:04d}{suffix}"


def parse_shard(text: str, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``"i/n"`` (0-based) or ``"auto"`` (from a SLURM job array) to (index, count).

    Raises
    ------
    OptionError
        For a malformed value, or ``auto`` outside a job array.
    """
    if text == "auto":
        try:
            task = int(environ["SLURM_ARRAY_TASK_ID"])
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = int(environ["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError) as err:
            raise OptionError(
                "--shard auto needs a SLURM job array (SLURM_ARRAY_TASK_ID and "
                "SLURM_ARRAY_TASK_COUNT); give --shard I/N instead"
            ) from err
        index = task - first
    else:
        match = re.fullmatch(r"(\d+)/(\d+)", text)
        if not match:
            raise OptionError(f"--shard takes I/N (0-based I) or auto, got '{text}'")
        index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise OptionError(f"--shard {index}/{count}: need 0 <= I < N")
    return index, count


def shard_range(tiles: int, index: int, count: int) -> range:
    """Shard ``index``'s contiguous share of ``tiles`` tile windows."""
    return range(tiles * index // count, tiles * (index + 1) // count)


def tasks_of_tiles(tasks: Sequence[WindowTask], tiles: range) -> list[WindowTask]:
    numbers = {(t.row_off, t.col_off): i for i, t in enumerate(tile_windows(tasks))}
    kept = [t for t in tasks if numbers[(t.tile.row_off, t.tile.col_off)] in tiles]
    return [dataclasses.replace(t, index=i) for i, t in enumerate(kept)]


def tile_windows(tasks: Iterable[WindowTask]) -> list[Window]:
    """The distinct tile windows of a plan, in plan order."""
    tiles, seen = [], set()
    for task in tasks:
        key = (task.tile.row_off, task.tile.col_off)
        if key not in seen:
            seen.add(key)
            tiles.append(task.tile)
    return tiles


def describe_window(task: WindowTask) -> str:
    """A short, human name for a task's window."""
    w = task.window
    return (
        f"{task.index} (row {int(w.row_off)}, col {int(w.col_off)}, {int(w.height)}x{int(w.width)})"
    )
