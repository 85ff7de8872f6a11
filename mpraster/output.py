"""The output: its path rules, the COG options, the atomic single writer, tile assembly.

The output is built as ``OUTPUT.partial`` beside the target and renamed into place only
when complete; a write that fails anywhere fails the run and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Interleaving
from rasterio.env import env_ctx_if_needed
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from mpraster.errors import (
    MprasterError,
    OptionError,
    OutputExistsError,
    OutputPathError,
    OutputWriteError,
)
from mpraster.gdal_errors import GDAL_MESSAGES, GDAL_RAISES, gdal_reason, one_line
from mpraster.metadata import OutputMetadata, quiet_about_georeferencing, write_metadata
from mpraster.resume import Journal, journal_path, partial_path
from mpraster.tiles import (
    EncodedTile,
    TileEncoder,
    TilePlacer,
    placement_problem,
    tile_grid,
    tile_options,
)


def check_output(target: str, overwrite: bool) -> None:
    """Check, before any work, that ``target`` may be written.

    Raises
    ------
    OutputExistsError
        If it exists and ``overwrite`` is false.
    OutputPathError
        If it is a folder, or its folder is missing or not a folder.
    """
    if os.path.isdir(target):
        raise OutputPathError(f"output is a folder: {target}; give a file name")
    if os.path.lexists(target) and not overwrite:
        raise OutputExistsError(f"output exists: {target}; pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.exists(folder):
        raise OutputPathError(f"output folder does not exist: {folder}; create it first")
    if not os.path.isdir(folder):
        raise OutputPathError(f"output folder is not a folder: {folder}")


RESAMPLING_METHODS = ("nearest", "average", "bilinear", "cubic", "mode", "gauss", "lanczos")
# Compression settings that GDAL keeps only for the handle that created a file: a file
# reopened to continue after a checkpoint would be compressed differently. With any of
# these, the windows go to an uncompressed working file and GDAL compresses a copy.
_CREATION_ONLY = {
    "zlevel",
    "zstd_level",
    "level",
    "quality",
    "jpeg_quality",
    "webp_level",
    "max_z_error",
    "max_z_error_overview",
    "discard_lsb",
    "jxl_effort",
    "jxl_distance",
    "jxl_lossless",
    "lerc_maxzerror",
}
# Profile keys that describe the grid rather than how GDAL creates the file.
PROFILE_KEYS = {"driver", "dtype", "count", "height", "width", "crs", "transform", "nodata"}
# GTiff creation options that carry over to GDAL's COG driver.
COG_OPTIONS = {
    "compress",
    "predictor",
    "level",
    "quality",
    "num_threads",
    "bigtiff",
    "zstd_level",
    "max_z_error",
    "max_z_error_overview",
}


@dataclass(frozen=True)
class CogOptions:
    """How to turn the finished output into a Cloud-Optimized GeoTIFF.

    ``overviews`` is ``"auto"`` (halve until the image fits in one tile), ``"none"``, or
    decimation factors such as ``(2, 4, 8)``; ``resampling`` is used to build them.
    """

    overviews: str | tuple[int, ...] = "auto"
    resampling: str = "nearest"

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLING_METHODS:
            raise OptionError(
                f"unknown --resampling '{self.resampling}'; choose one of "
                f"{', '.join(RESAMPLING_METHODS)}"
            )
        if isinstance(self.overviews, str):
            if self.overviews not in ("auto", "none"):
                raise OptionError(
                    f"--overviews takes auto, none or factors like 2,4,8; got '{self.overviews}'"
                )
        elif not self.overviews or any(f < 2 for f in self.overviews):
            raise OptionError(f"overview factors must be 2 or more, got {self.overviews}")


def parse_overviews(text: str) -> str | tuple[int, ...]:
    """``auto``, ``none`` or comma-separated factors (``2,4,8``), as ``--overviews`` takes."""
    if text in ("auto", "none"):
        return text
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as err:
        raise OptionError(
            f"--overviews takes auto, none or factors like 2,4,8; got '{text}'"
        ) from err


def _cog_copy(src_path: str, dst_path: str, profile: Mapping[str, Any], cog: CogOptions) -> None:
    """Write ``src_path`` as a COG at ``dst_path`` with GDAL's COG driver."""
    from rasterio.enums import Resampling
    from rasterio.shutil import copy

    options = {k: v for k, v in profile.items() if k in COG_OPTIONS}
    options["blocksize"] = profile["blockxsize"]
    if isinstance(cog.overviews, tuple):
        with rasterio.open(src_path, "r+") as dst:
            dst.build_overviews(list(cog.overviews), Resampling[cog.resampling])
        options["overviews"] = "FORCE_USE_EXISTING"
    else:
        options["overviews"] = "AUTO" if cog.overviews == "auto" else "NONE"
        options["overview_resampling"] = cog.resampling
    copy(src_path, dst_path, driver="COG", **options)


def writer_profiles(profile: Mapping[str, Any], cog: bool) -> tuple[dict[str, Any], bool]:
    """The profile of the file the windows go to, and whether GDAL copies it at the end.

    The windows go to the final file directly unless it must be made in one go at the end:
    a COG (overviews and layout need the whole image), compression settings that a
    reopened file would not keep, or a lossy codec (`is_lossy`: the journal checks a
    tile by its pixels, which the codec changes, so a stopped run could not resume);
    then they go to an uncompressed working file.
    """
    if not cog and not _CREATION_ONLY & set(profile) and not is_lossy(profile):
        return dict(profile), False
    excluded = COG_OPTIONS | _CREATION_ONLY
    return {k: v for k, v in profile.items() if k not in excluded}, True


def is_lossy(profile: Mapping[str, Any]) -> bool:
    """Whether ``profile``'s codec changes the pixels it stores: JPEG; WEBP and JPEG-XL
    unless asked to be lossless (WEBP is lossy by default, JPEG-XL lossless); LERC with a
    ``MAX_Z_ERROR`` above 0."""
    codec = str(profile.get("compress") or "").upper()
    if codec == "JPEG":
        return True
    if codec == "WEBP":
        return not _is_true(profile.get("webp_lossless", "NO"))
    if codec == "JXL":
        return not _is_true(profile.get("jxl_lossless", "YES"))
    if codec.startswith("LERC"):
        return float(profile.get("max_z_error") or 0) > 0
    return False


def copy_final(
    src_path: str, dst_path: str, profile: Mapping[str, Any], cog: CogOptions | None
) -> None:
    """Write the working file ``src_path`` as the final file (see `writer_profiles`)."""
    if cog is not None:
        _cog_copy(src_path, dst_path, profile, cog)
        return
    from rasterio.shutil import copy

    options = {k: v for k, v in profile.items() if k not in PROFILE_KEYS}
    copy(src_path, dst_path, driver="GTiff", **options)


def find_missing_tile(path: str, sparse: bool = False) -> str | None:
    """What is wrong with the tiles of the closed GeoTIFF at ``path``, or None.

    A backstop for a write error GDAL reported nowhere mpraster hears it (in another
    thread, or on stderr only): such a tile has no data in the file (allowed only in a
    ``sparse`` file, a shard), or data past the file's end. It reads GDAL's TIFF directory
    only (``BLOCK_OFFSET_x_y`` and ``BLOCK_SIZE_x_y``), never the pixels.
    """

    size = os.path.getsize(path)
    try:
        with warnings.catch_warnings():
            # The output's georeferencing is its inputs', told about when they were read.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with GDAL_MESSAGES.listening() as heard, rasterio.open(path, sharing=False) as src:
                problem = _tile_outside(src, size, sparse, src.interleaving == Interleaving.band)
    except GDAL_RAISES as err:
        return f"the finished file cannot be read back: {gdal_reason(one_line(err))}"
    if heard.errors:
        return f"the finished file cannot be read back: {gdal_reason(heard.errors[0])}"
    return problem


def _tile_outside(src, size: int, sparse: bool, by_band: bool) -> str | None:
    rows, cols = src.block_shapes[0]
    for band in range(1, src.count + 1) if by_band else [1]:
        for row in range(-(-src.height // rows)):
            for col in range(-(-src.width // cols)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", band)
                length = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", band)
                where = f"tile (row {row}, col {col}) of band {band}"
                if not offset or not length:
                    if not sparse:
                        return f"{where} is missing from the finished file"
                elif int(offset) + int(length) > size:
                    return f"{where} ends past the end of the finished file"
    return None


@dataclass(frozen=True)
class Checkpoints:
    """Journaling for one run: the job's fingerprint, its tile windows, how often."""

    fingerprint: str
    tiles: int
    every: int  # tile windows between checkpoints


class OutputWriter:
    """The single writer: builds the output beside the target, renames it in when complete.

    Use as a context manager; `commit` makes the output appear at the target. Leaving the
    block on an error removes the partial files and leaves any earlier output at the target
    untouched; after `stop` (a signal) the partial and its journal stay for ``--resume``.

    Every call the writer makes to GDAL, from creating the file to the copy GDAL makes at
    the end, listens to what GDAL says in its thread: GDAL reports some failures (a full
    disk under its compression threads) only as errors logged while the call returns
    normally. Any such error, or any raised, fails the write with `OutputWriteError`, and
    the finished file is checked (`find_missing_tile`) before it is renamed into place.

    With ``checkpoints``, every ``every`` tile windows the partial GeoTIFF is closed (which
    puts its directory on disk) and reopened, and the windows since the last checkpoint are
    journaled: a run killed outright loses only what came after. The positions depend only
    on the plan, so every run of a job lays the file out the same way.

    The windows go to the final file directly unless it must be made in one go at the end
    (see `writer_profiles`); then GDAL writes the final file from a working file at commit.

    Most outputs are made of tiles encoded apart (`mpraster.tiles`): GDAL makes the file
    without tiles, and `write` appends each tile window's encoded bytes (encoded by the
    worker that computed it, or here when given pixels); a checkpoint then writes the
    file's tile table and syncs it. The others (`placement_problem`) GDAL writes tile by
    tile, and a checkpoint closes and reopens the file.
    """

    def __init__(
        self,
        target: str,
        profile: Mapping[str, Any],
        overwrite: bool,
        cog: CogOptions | None = None,
        checkpoints: Checkpoints | None = None,
        tags: Mapping[str, str] | None = None,
        metadata: OutputMetadata | None = None,
        mask: bool = False,
    ) -> None:
        self.target = target
        self.tags = dict(tags or {})
        self.metadata = metadata or OutputMetadata()
        self.mask = mask
        self.path = partial_path(target)
        self.profile = dict(profile)
        self.overwrite = overwrite
        self.cog = cog
        self.checkpoints = checkpoints
        self.placed_tiles = placement_problem(self.profile, cog is not None, mask) is None
        if self.placed_tiles:
            # Every option that changes a tile's bytes reaches its encoder when it is
            # made: nothing for GDAL to copy at the end.
            self._work_profile, self.copy_at_end = {**self.profile, "sparse_ok": "TRUE"}, False
            # Encodes the tiles given as pixels (see `mpraster.assembly.TileAssembly`).
            self.encoder: TileEncoder | None = TileEncoder(tile_options(self.profile))
        else:
            self._work_profile, self.copy_at_end = writer_profiles(self.profile, cog is not None)
            self.encoder = None
        self._placer: TilePlacer | None = None
        self._final_path = f"{self.path}-final"
        self._open_options = (
            {"num_threads": self.profile["num_threads"]}
            if "num_threads" in self._work_profile and not _threads_trip_gdal(mask, self.metadata)
            else {}
        )
        self._dst: rasterio.io.DatasetWriter | None = None
        self._journal = None
        self._checksums: list[int] = []
        # Kept for --resume: after `stop`, or when the finished file could not be renamed.
        self._stopped = False
        self._finished = self.path
        self._placed = False
        self._gdal = contextlib.ExitStack()

    def __enter__(self) -> OutputWriter:
        check_output(self.target, self.overwrite)
        # GDAL's errors reach Python only in a thread with a rasterio.Env, and only while
        # rasterio's logger lets them through: both for the writer's whole life.
        self._gdal.enter_context(env_ctx_if_needed())
        # A mask in a file beside the partial (.msk) would not be renamed with it.
        self._gdal.enter_context(rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True))
        GDAL_MESSAGES.retain()
        self._gdal.callback(GDAL_MESSAGES.release)
        georef = self.metadata.georeferencing.open_kwargs()
        try:
            with GDAL_MESSAGES.listening() as heard, quiet_about_georeferencing():
                self._dst = rasterio.open(self.path, "w", **self._work_profile, **georef)
                write_metadata(self._dst, self.metadata)
                if self.mask:
                    # The mask's directory is made now, before any tile: made at the first
                    # tile's mask, it would land before or after that tile depending on
                    # whether GDAL compresses on threads (-j), changing the file's bytes.
                    self._dst.write_mask(np.zeros((0, 0), np.uint8), window=Window(0, 0, 0, 0))
                if self.tags:
                    self._dst.update_tags(**self.tags)
                if self.placed_tiles:
                    self._dst.close()
                    self._dst = None
                    self._placer = TilePlacer(self.path, *tile_grid(self.profile))
                if self.checkpoints is not None:
                    self._journal = Journal(
                        journal_path(self.target),
                        self.checkpoints.fingerprint,
                        self.checkpoints.tiles,
                    )
            if heard.errors:
                raise RasterioError(heard.errors[0])
        except (*GDAL_RAISES, OSError) as err:
            self._close_quietly()
            self._remove_partial()
            self._gdal.close()
            raise OutputPathError(
                f"cannot create {self.path}: {gdal_reason(one_line(err))}; check that the "
                "output folder is writable and has space"
            ) from err
        return self

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One step of the writer's own: any error GDAL raises or only logs fails the write."""
        with GDAL_MESSAGES.listening() as heard:
            try:
                yield
            except GDAL_RAISES as err:
                raise self._failed(one_line(err)) from err
            except OSError as err:  # the journal's: a full disk on its fsync
                if isinstance(err, MprasterError):
                    raise
                raise self._failed(
                    f"{err.filename or 'the journal'}: {err.strerror or err}"
                ) from err
        if heard.errors:
            raise self._failed(heard.errors[0])

    def _failed(self, reason: str) -> OutputWriteError:
        folder = os.path.dirname(os.path.abspath(self.target))
        tile = self.profile["count"] * np.dtype(self.profile["dtype"]).itemsize
        tile *= self.profile["blockxsize"] * self.profile["blockysize"]
        full = ""
        with contextlib.suppress(OSError):
            # GDAL's own words for a full disk are about TIFF strips; say what it means.
            if shutil.disk_usage(folder).free < max(1 << 20, tile):
                full = f" ({folder} is out of space)"
        return OutputWriteError(
            f"writing {self.target} failed: {gdal_reason(reason)}{full}; nothing was written "
            f"to {self.target}"
        )

    def write(
        self,
        array: np.ndarray | EncodedTile | Future,
        window: Window,
        checksum: int | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """Write one tile window's result and its mask, if the output has one
        (``checksum``: theirs, for the journal). A placed output's tile may come as its
        stored bytes, or as a Future of them (encoded on another thread); the journal
        records its stored bytes' checksum (`EncodedTile.checksum`), not the pixels'.

        Raises
        ------
        OutputWriteError
            If GDAL or the journal fails (disk full, I/O error, a codec refusing the data),
            or encoding the tile failed.
        """
        with self._writing():
            if isinstance(array, Future):
                array = array.result()
            if self._placer is not None:
                tile = array if isinstance(array, EncodedTile) else self.encoder.encode(array)
                row = int(window.row_off) // self.profile["blockysize"]
                col = int(window.col_off) // self.profile["blockxsize"]
                self._placer.place(row, col, tile)
                checksum = tile.checksum()  # the journal checks a placed tile by its bytes
            else:
                self._dst.write(array, window=window)
            if mask is not None:
                self._dst.write_mask(mask, window=window)
            if self._journal is not None:
                self._checksums.append(checksum)
                if len(self._checksums) >= self.checkpoints.every:
                    self._checkpoint(reopen=True)

    def _checkpoint(self, reopen: bool) -> None:
        if self._placer is not None:
            # The tiles and the table that finds them on disk before the journal says so.
            self._placer.flush()
            self._journal.checkpoint(self._checksums)
            self._checksums = []
            return
        self._dst.close()
        self._dst = None
        self._journal.checkpoint(self._checksums)
        self._checksums = []
        if reopen:
            with quiet_about_georeferencing():
                self._dst = rasterio.open(self.path, "r+", **self._open_options)

    def stop(self) -> None:
        """Make everything written so far durable and journaled, and keep it for resume."""
        if self._journal is not None and (self._dst is not None or self._placer is not None):
            with self._writing():
                self._checkpoint(reopen=False)
            self._journal.close()
        self._stopped = True

    def commit(self) -> None:
        """Close the output, check it, and move it to the target (replacing one only with
        overwrite): `finish`, then `place`."""
        self.finish()
        self.place()

    def finish(self) -> None:
        """Close the output and check it: it is complete, journaled, ready to `place`.

        Raises
        ------
        OutputWriteError
            If GDAL fails to finish the file, or the finished file misses a tile.
        """
        dst, self._dst = self._dst, None
        self._finished = self._final_path if self.copy_at_end else self.path
        try:
            with self._writing():
                if self._placer is not None:
                    self._placer.flush()
                    self._placer.close()
                    self._placer = None
                else:
                    dst.close()
                if self._journal is not None:
                    # Journaled before the rename: if that fails, the finished partial is
                    # there for --resume to move into place.
                    self._journal.checkpoint(self._checksums)
                    self._checksums = []
                if self.copy_at_end:
                    copy_final(self.path, self._final_path, self.profile, self.cog)
            problem = find_missing_tile(
                self._finished, sparse=_is_true(self.profile.get("sparse_ok"))
            )
            if problem:
                raise self._failed(problem)
        except OutputWriteError:
            self._remove_partial()
            raise

    def place(self) -> None:
        """Move the `finish`ed output to the target.

        Raises
        ------
        OutputExistsError
            If an output appeared at the target meanwhile and ``overwrite`` is false.
        OutputPathError
            If the finished file cannot be renamed into place; with a journal, it is kept
            for ``--resume``.
        """
        if os.path.lexists(self.target) and not self.overwrite:
            self._remove_partial()
            raise OutputExistsError(
                f"output appeared while running: {self.target}; pass --overwrite to replace it"
            )
        try:
            os.replace(self._finished, self.target)
        except OSError as err:
            raise self._rename_failed(err) from err
        self._remove_partial()
        self._placed = True

    def _rename_failed(self, err: OSError) -> OutputPathError:
        folder = os.path.dirname(os.path.abspath(self.target))
        reason = err.strerror or str(err)
        if self._journal is None:
            self._remove_partial()
            return OutputPathError(
                f"cannot move the finished output to {self.target}: {reason}; nothing was "
                f"written to it: check that {folder} is writable"
            )
        if self.copy_at_end:
            # --resume makes it again from the working file.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._final_path)
        self._journal.close()
        self._stopped = True
        return OutputPathError(
            f"cannot move the finished output to {self.target}: {reason}; it is kept as "
            f"{self.path} with its journal: make {folder} writable and run the same command "
            "with --resume to finish"
        )

    def _remove_partial(self) -> None:
        for path in (self.path, self._final_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if self._journal is not None:
            self._journal.remove()

    def _close_quietly(self) -> None:
        """Close the partial after a failure: it goes anyway, so what GDAL says is not news.

        Closing writes what GDAL still holds, and on a full disk fails again.
        """
        dst, self._dst = self._dst, None
        if dst is not None:
            with GDAL_MESSAGES.listening(), contextlib.suppress(*GDAL_RAISES):
                dst.close()
        placer, self._placer = self._placer, None
        if placer is not None:
            placer.close()

    def __exit__(self, *exc_info: object) -> None:
        opened = self._dst is not None or self._placer is not None
        try:
            self._close_quietly()
        finally:
            if not self._stopped and (opened or exc_info[0] is not None):
                self._remove_partial()
            self._gdal.close()


def _threads_trip_gdal(mask: bool, metadata: OutputMetadata) -> bool:
    """Whether GDAL (3.10 to 3.12) fails in its compression threads on this output once it
    is reopened: a mask beside bands with colour interpretations, which GDAL's thread
    copies onto the mask's one sample (``Bad value 2 for "ExtraSamples" tag``). Such a
    file compresses on one thread after its first checkpoint (the same bytes, slower)."""
    return mask and any(b is not None and b.colorinterp for b in metadata.bands)


def _is_true(value: object) -> bool:
    return str(value).upper() in ("YES", "TRUE", "ON", "1")
