"""Assembling the shards of a ``--shard`` run into one output (``mpraster merge``)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from mpraster.budget import main_gdal_env
from mpraster.creation_options import output_profile
from mpraster.errors import ShardMergeError
from mpraster.inputs import InputInfo, input_codec, open_raster
from mpraster.lock import OutputLock
from mpraster.metadata import OutputMetadata
from mpraster.options import default_jobs
from mpraster.output import Checkpoints, CogOptions, OutputWriter
from mpraster.progress import NullProgress, ProgressSink
from mpraster.resume import checksum, fingerprint, partial_path
from mpraster.stats import RunStats
from mpraster.tiles import EncodedTile, TileTable, tiles_described
from mpraster.windows import plan_windows, shard_path, shard_range, tile_windows


def merge_shards(
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressSink | None = None,
) -> RunStats:
    """Assemble the shards of ``output`` into it: the same bytes as one unsharded run.

    Raises
    ------
    ShardMergeError
        If a shard is missing or unfinished (named), or the shards are of different jobs.
    OutputLockedError
        At once, if another merge or run is writing ``output``; nothing of it is touched.
    """
    output = os.fspath(output)
    # One merge (or run) per output, as `mpraster.execute.execute`.
    with OutputLock(output):
        return _merge_shards_locked(output, overwrite, progress)


def _merge_shards_locked(output: str, overwrite: bool, progress: ProgressSink | None) -> RunStats:
    wall_start = time.perf_counter()
    paths = _finished_shards(output)
    sources = [open_raster(path) for path in paths]
    try:
        tags = [src.tags() for src in sources]
        if len({t.get("MPRASTER_JOB") for t in tags}) != 1:
            raise ShardMergeError(
                f"the shards of {output} are not all of the same job; run them again"
            )
        plan = json.loads(tags[0]["MPRASTER_PLAN"])
        # What the shards' job gave its output besides pixels, as an unsharded run would.
        metadata = OutputMetadata.from_json(plan.get("metadata") or OutputMetadata().to_json())
        first = sources[0]
        tiles = tile_windows(plan_windows(first.height, first.width, plan["block_size"]))
        dtype = np.dtype(first.dtypes[0])
        every = max(
            1,
            int(plan["checkpoint_mb"] * 2**20)
            // (first.count * dtype.itemsize * plan["block_size"] ** 2),
        )
        checkpoints = Checkpoints(
            fingerprint({"merge": tags[0]["MPRASTER_JOB"]}), len(tiles), every
        )
        progress = progress or NullProgress()
        progress.start(len(tiles), first.height * first.width)
        stats = RunStats(mode="merge", io="main", jobs=1, kernel="merge")
        with (
            main_gdal_env(64 << 20),
            OutputWriter(
                output,
                _merged_profile(first, plan, metadata),
                overwrite,
                _cog(plan),
                checkpoints,
                metadata=metadata,
                mask=plan.get("mask", False),
            ) as writer,
        ):
            _copy_tiles(sources, tiles, writer, stats, progress, plan)
            writer.commit()
        progress.close()
    finally:
        for src in sources:
            src.close()
    stats.wall_seconds = time.perf_counter() - wall_start
    progress.finish(stats)
    return stats


def _finished_shards(output: str) -> list[str]:
    return finished_shards(output, ".tif", partial_path)


def shard_files(output: str, suffix: str) -> dict[int, tuple[str, int]]:
    """The files ``OUTPUT.shardIIIIofNNNN<suffix>`` there are: {I: (path, N)}."""
    pattern = re.compile(re.escape(output) + r"\.shard(\d{4})of(\d{4})" + re.escape(suffix) + "$")
    found = {}
    for path in glob.glob(glob.escape(output) + ".shard*of*" + suffix):
        match = pattern.match(path)
        if match:
            found[int(match[1])] = (path, int(match[2]))
    return found


def finished_shards(output: str, suffix: str, unfinished: Callable[[str], str]) -> list[str]:
    """The paths of all N shards of ``output`` (files ending in ``suffix``), in order;
    ``unfinished(shard)`` is the file a shard that has not finished leaves.

    Raises
    ------
    ShardMergeError
        If there are none, they come from runs cut differently, or some are not finished.
    """
    found = shard_files(output, suffix)
    if not found:
        raise ShardMergeError(f"no shards of {output} found ({output}.shardIIIIofNNNN{suffix})")
    counts = {count for _, count in found.values()}
    if len(counts) > 1:
        raise ShardMergeError(f"shards of {output} come from runs cut in {sorted(counts)} parts")
    count = counts.pop()
    missing = [i for i in range(count) if i not in found]
    if missing:
        started = [
            i for i in missing if os.path.exists(unfinished(shard_path(output, i, count, suffix)))
        ]
        again = f" (run shards {', '.join(map(str, started))} again with --resume)"
        raise ShardMergeError(
            f"shards {', '.join(map(str, missing))} of {count} of {output} are not finished"
            + (again if started else "")
        )
    return [found[i][0] for i in range(count)]


def _merged_profile(first: DatasetReader, plan: dict, metadata: OutputMetadata) -> dict:
    """The profile an unsharded run of the shards' job would have written."""
    info = InputInfo(
        first.name,
        tuple(range(1, first.count + 1)),
        first.dtypes[0],
        first.height,
        first.width,
        first.crs,
        first.transform,
        first.nodata,
        # The shards were written with the job's codec: the same one follows.
        **input_codec(first),
    )
    profile = output_profile(
        info,
        np.dtype(first.dtypes[0]),
        first.count,
        plan["block_size"],
        plan["creation_options"],
        default_jobs(),
        first.nodata,
    )
    if metadata.georeferencing.kind != "transform":
        profile.update(metadata.georeferencing.profile())
    return profile


def _cog(plan: dict) -> CogOptions | None:
    if not plan["cog"]:
        return None
    cog = plan["cog"]
    overviews = cog["overviews"]
    return CogOptions(tuple(overviews) if isinstance(overviews, list) else overviews,
                      cog["resampling"])  # fmt: skip


def _copy_tiles(
    sources: list[DatasetReader],
    tiles: list,
    writer: OutputWriter,
    stats: RunStats,
    progress: ProgressSink,
    plan: dict,
) -> None:
    """Write every tile window (and its mask), in plan order, from the shard that holds it.

    When the shards' tiles are encoded as the merged output encodes them (`_stored_tiles`),
    their bytes are copied as they are: nothing is decoded or encoded again.
    """
    count = len(sources)
    with_mask = plan.get("mask", False)
    with contextlib.ExitStack() as files:
        stored = _stored_tiles(sources, plan, writer, files)
        for number, tile in enumerate(tiles):
            owner = next(i for i in range(count) if number in shard_range(len(tiles), i, count))
            start = time.perf_counter()
            pixels = int(tile.height) * int(tile.width)
            size = pixels * sources[owner].count * np.dtype(sources[owner].dtypes[0]).itemsize
            if stored is not None:
                data, mask = _stored_tile(sources[owner].name, *stored[owner], tile, size), None
                known = zlib.crc32(b"".join(data.chunks))
                stats.bytes_read += sum(len(chunk) for chunk in data.chunks)
            else:
                data = sources[owner].read(window=tile)
                mask = sources[owner].read_masks(1, window=tile) if with_mask else None
                known = checksum(data, mask)
                stats.bytes_read += data.nbytes
            stats.read_seconds += time.perf_counter() - start
            start = time.perf_counter()
            writer.write(data, tile, known, mask)
            stats.write_seconds += time.perf_counter() - start
            stats.windows += 1
            stats.pixels += pixels
            stats.bytes_written += size
            progress.advance(1, pixels)


def _stored_tiles(
    sources: list[DatasetReader], plan: dict, writer: OutputWriter, files: contextlib.ExitStack
) -> list[tuple[BinaryIO, TileTable, int, int, int]] | None:
    """Per shard, its open file, tile table, tile grid and tile size, when its stored tiles can be
    copied as they are: the writer places tiles, and the shards' plan says their tiles
    were encoded with the merged output's options (shards of older versions do not say)."""
    if not writer.placed_tiles or plan.get("tiles") != tiles_described(writer.profile):
        return None
    block = plan["block_size"]
    stored = []
    for src in sources:
        fh = files.enter_context(open(src.name, "rb"))
        try:
            table = TileTable.read(fh)
        except (ValueError, struct.error) as err:
            raise ShardMergeError(f"the shard {src.name} is not a tiled GeoTIFF: {err}") from err
        stored.append((fh, table, -(-src.width // block), -(-src.height // block), block))
    return stored


def _stored_tile(
    name: str,
    fh: BinaryIO,
    table: TileTable,
    across: int,
    down: int,
    block: int,
    tile: Window,
    size: int,
) -> EncodedTile:
    """The shard's stored bytes of ``tile`` (``size``: its pixels' bytes)."""
    row, col = int(tile.row_off) // block, int(tile.col_off) // block
    chunks = table.read_chunks(fh, table.numbers(row, col, across, down))
    if chunks is None:
        raise ShardMergeError(
            f"the shard {name} lacks its tile at row {row}, col {col}; run that shard again"
        )
    return EncodedTile(chunks, size)
