"""Assembling the shards of a ``--shard`` run into one output (``mpraster merge``)."""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Callable

import numpy as np
from rasterio.io import DatasetReader

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
            _copy_tiles(sources, tiles, writer, stats, progress, plan.get("mask", False))
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
    with_mask: bool,
) -> None:
    """Write every tile window (and its mask), in plan order, from the shard that holds it."""
    count = len(sources)
    for number, tile in enumerate(tiles):
        owner = next(i for i in range(count) if number in shard_range(len(tiles), i, count))
        start = time.perf_counter()
        data = sources[owner].read(window=tile)
        mask = sources[owner].read_masks(1, window=tile) if with_mask else None
        stats.read_seconds += time.perf_counter() - start
        start = time.perf_counter()
        writer.write(data, tile, checksum(data, mask), mask)
        stats.write_seconds += time.perf_counter() - start
        pixels = int(tile.height) * int(tile.width)
        stats.windows += 1
        stats.pixels += pixels
        stats.bytes_read += data.nbytes
        stats.bytes_written += data.nbytes
        progress.advance(1, pixels)
