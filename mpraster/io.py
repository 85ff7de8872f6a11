"""Inputs and the output: opening, checking the grid, reading windows, the atomic writer.

GDAL dataset handles are never shared: every reader opens its own with ``sharing=False``
(GDAL would otherwise hand every thread of a process the same handle).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.windows import Window

from mpraster.errors import (
    InputMismatchError,
    InputNotFoundError,
    MixedBandTypesError,
    NotARasterError,
    OptionError,
    OutputExistsError,
    OutputPathError,
    RasterReadError,
)
from mpraster.windows import WindowTask, describe_window

# GDAL (through curl) waits for ever on a stalled HTTP read unless told otherwise. These
# apply wherever the user's environment or an enclosing rasterio.Env does not set them: a
# connection that moves less than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME seconds is
# dropped, and a request that fails with a transient HTTP error is retried.
NETWORK_DEFAULTS = {
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "GDAL_HTTP_TIMEOUT": "300",
    "GDAL_HTTP_LOW_SPEED_TIME": "30",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
}


def network_config() -> dict[str, str]:
    """The network settings in effect: the user's (environment, rasterio.Env), else ours."""
    from rasterio.env import get_gdal_config

    config = {}
    for key, default in NETWORK_DEFAULTS.items():
        value = get_gdal_config(key)
        config[key] = default if value is None else str(value)
    return config


def gdal_env(**options: Any) -> rasterio.Env:
    """A ``rasterio.Env`` with the network settings and ``options``, for the main thread.

    Entered in the main thread it sets GDAL's process-wide configuration, which worker
    threads and GDAL's own threads see too; worker processes apply `network_config`.
    """
    return rasterio.Env(**network_config(), **options)


def is_local_path(name: str) -> bool:
    """Whether ``name`` is a plain file path rather than another GDAL dataset name.

    ``/vsicurl/...``, ``/vsizip/...``, ``http://...``, ``s3://...`` and subdataset names
    (``NETCDF:file.nc:var``, ``HDF5:...``, ``GTIFF_DIR:...``) are GDAL's to resolve.
    """
    return not (
        name.startswith("/vsi") or "://" in name or re.match(r"^[A-Za-z][A-Za-z0-9_]+:", name)
    )


# Creation options that would break the tile-aligned plan; --block-size owns them.
_RESERVED_CREATION_OPTIONS = {"tiled", "blockxsize", "blockysize", "driver"}


def _one_line(err: BaseException) -> str:
    """GDAL's own words for an error on one line.

    rasterio raises "Read failed. See previous exception for details." and chains GDAL's
    messages as causes; the deepest cause is the one that says what went wrong.
    """
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    text = " ".join(str(err).split())
    return text or type(err).__name__


@dataclass(frozen=True)
class InputSpec:
    """One input: a path and, optionally, the bands to read from it (1-based)."""

    path: str
    bands: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.bands is None:
            return self.path
        return f"{self.path}:{','.join(map(str, self.bands))}"


_BAND_SUFFIX = re.compile(r"^(?P<path>.+):(?P<bands>\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)$")


def parse_bands(text: str) -> tuple[int, ...]:
    """``"4"``, ``"4,3"`` or ``"1-3,5"`` to band indexes (1-based), as ``--bidx`` takes."""
    bands: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError as err:
            raise OptionError(f"bands must look like 4 or 4,3 or 1-3, got '{text}'") from err
        if lo < 1 or hi < lo:
            raise OptionError(f"bands are numbered from 1 and ranges go up, got '{text}'")
        bands.extend(range(lo, hi + 1))
    return tuple(bands)


def parse_input(value: str | os.PathLike | InputSpec, bidx: str | None = None) -> InputSpec:
    """An input as given: a path, or ``PATH:BANDS`` (``B5.tif:1``, ``stack.tif:4,3``).

    The suffix counts only when ``PATH:BANDS`` is not itself an existing file; ``bidx``
    (``--bidx``) gives the bands of an input that names none.
    """
    if isinstance(value, InputSpec):
        return value
    text = os.fspath(value)
    match = _BAND_SUFFIX.match(text)
    if match and not os.path.exists(text):
        return InputSpec(match["path"], parse_bands(match["bands"]))
    return InputSpec(text, parse_bands(bidx) if bidx else None)


@dataclass(frozen=True)
class InputInfo:
    """What the planner needs to know about one input, read once from its header."""

    path: str
    bands: tuple[int, ...]
    dtype: str
    height: int
    width: int
    crs: CRS | None
    transform: Affine
    nodata: float | None
    block_shape: tuple[int, int] = (512, 512)

    @property
    def count(self) -> int:
        return len(self.bands)


def _looks_like_tiff(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_raster(path: str) -> rasterio.io.DatasetReader:
    """Open ``path`` for reading with a handle of its own.

    ``path`` may be any GDAL dataset name (see `is_local_path`); only a plain path is
    checked on the local filesystem first.

    Raises
    ------
    InputNotFoundError
        If there is no file at ``path`` (or GDAL says a remote or virtual one does not exist).
    NotARasterError
        If GDAL cannot open it as a raster.
    RasterReadError
        If it is a TIFF that GDAL cannot open (truncated or corrupt).
    """
    local = is_local_path(path)
    if local and not os.path.exists(path):
        raise InputNotFoundError(f"input not found: {path}; check the path")
    if local and os.path.isdir(path):
        raise NotARasterError(f"input is a folder, not a raster: {path}")
    try:
        return rasterio.open(path, sharing=False)
    except RasterioError as err:
        said = _one_line(err)
        if not local and re.search(r"does not exist|No such file|response code[^0-9]*404", said):
            raise InputNotFoundError(f"input not found: {path}: {said}") from err
        if local and _looks_like_tiff(path):
            raise RasterReadError(
                f"cannot read {path}: {said}; the file may be truncated or corrupt"
            ) from err
        raise NotARasterError(
            f"cannot open {path} as a raster: {said}; give a GeoTIFF or another format GDAL reads"
        ) from err


def inspect_inputs(specs: Sequence[InputSpec]) -> list[InputInfo]:
    """Read every input's header, check its bands, and check that they share one grid.

    Raises
    ------
    InputNotFoundError, NotARasterError, RasterReadError
        For an input that is missing, not a raster, or unreadable.
    OptionError
        For a band the input does not have.
    InputMismatchError
        If the inputs differ in size, transform or CRS (the first difference is named).
    """
    infos = []
    for spec in specs:
        with open_raster(spec.path) as src:
            if src.count == 0:
                raise NotARasterError(_no_bands(spec.path, src.subdatasets))
            bands = spec.bands or tuple(range(1, src.count + 1))
            missing = [b for b in bands if b > src.count]
            if missing:
                raise OptionError(
                    f"{spec.path} has {src.count} band{'s' if src.count != 1 else ''}, no band "
                    f"{missing[0]}; bands are numbered from 1"
                )
            dtypes = {src.dtypes[b - 1] for b in bands}
            if len(dtypes) > 1:
                raise MixedBandTypesError(
                    f"{spec.path} has bands of different data types {sorted(dtypes)}; "
                    "select bands of one type (PATH:BANDS or --bidx)"
                )
            infos.append(
                InputInfo(
                    path=spec.path,
                    bands=bands,
                    dtype=dtypes.pop(),
                    height=src.height,
                    width=src.width,
                    crs=src.crs,
                    transform=src.transform,
                    nodata=src.nodata,
                    block_shape=tuple(src.block_shapes[bands[0] - 1]),
                )
            )
    first = infos[0]
    for other in infos[1:]:
        if (other.height, other.width) != (first.height, first.width):
            difference = f"size {other.height}x{other.width} != {first.height}x{first.width}"
        elif not other.transform.almost_equals(first.transform):
            difference = f"transform {tuple(other.transform)[:6]} != {tuple(first.transform)[:6]}"
        elif other.crs != first.crs:
            difference = f"CRS {other.crs} != {first.crs}"
        else:
            continue
        raise InputMismatchError(
            f"inputs {first.path} and {other.path} do not share a grid: {difference}; "
            "warp one onto the other first (rio warp --like)"
        )
    return infos


def _no_bands(path: str, subdatasets: Sequence[str]) -> str:
    """The message for a dataset without bands of its own (a netCDF or HDF5 container)."""
    if not subdatasets:
        return f"{path} has no raster bands; give a raster with at least one band"
    shown = ", ".join(subdatasets[:4]) + (", ..." if len(subdatasets) > 4 else "")
    return (
        f"{path} holds no bands of its own but {len(subdatasets)} subdatasets; pass one of "
        f"them as the input: {shown}"
    )


def _fill_value(nodata: float | None, dtype: np.dtype) -> float:
    if nodata is not None:
        return nodata
    return np.nan if np.issubdtype(dtype, np.floating) else 0


class WindowReader:
    """Reads windows of every input with handles of its own, filling past the edge.

    ``fill`` is ``"edge"`` (edge pixels repeated outwards, which keeps neighbourhood
    kernels identical to a whole-raster computation at the edges) or ``"nodata"``.
    """

    def __init__(self, specs: Sequence[InputSpec], infos: Sequence[InputInfo], fill: str) -> None:
        self.infos = list(infos)
        self.fill = fill
        self.datasets: list[rasterio.io.DatasetReader] = []
        try:
            for spec in specs:
                self.datasets.append(open_raster(spec.path))
        except BaseException:
            self.close()
            raise

    def read(self, task: WindowTask) -> list[np.ndarray]:
        """Read ``task.read`` from every input.

        Raises
        ------
        RasterReadError
            If GDAL fails to read (a truncated or corrupt file), naming the file and window.
        """
        return [
            self._read_one(src, info, task)
            for src, info in zip(self.datasets, self.infos, strict=True)
        ]

    def _read_one(self, src, info: InputInfo, task: WindowTask) -> np.ndarray:
        read = task.read
        inner = read.intersection(Window(0, 0, src.width, src.height))
        try:
            data = src.read(list(info.bands), window=inner)
        except RasterioError as err:
            cause = (
                "the file may be truncated or corrupt"
                if is_local_path(src.name)
                else "the network read failed after GDAL's timeouts and retries (set by "
                "GDAL_HTTP_LOW_SPEED_TIME, GDAL_HTTP_TIMEOUT, GDAL_HTTP_MAX_RETRY)"
            )
            raise RasterReadError(
                f"reading {src.name} failed at window {describe_window(task)}: "
                f"{_one_line(err)}; {cause}"
            ) from err
        top = int(inner.row_off - read.row_off)
        left = int(inner.col_off - read.col_off)
        bottom = int(read.height) - int(inner.height) - top
        right = int(read.width) - int(inner.width) - left
        if top or left or bottom or right:
            pad = ((0, 0), (top, bottom), (left, right))
            if self.fill == "edge":
                data = np.pad(data, pad, mode="edge")
            else:
                value = _fill_value(info.nodata, data.dtype)
                data = np.pad(data, pad, mode="constant", constant_values=value)
        return data

    def close(self) -> None:
        for dataset in self.datasets:
            dataset.close()
        self.datasets = []


def output_profile(
    first: InputInfo,
    dtype: np.dtype,
    count: int,
    block: int,
    creation_options: Mapping[str, Any] | None = None,
    compress_threads: int = 1,
    nodata: float | None = None,
) -> dict[str, Any]:
    """The output's profile: the input's grid, the kernel's dtype and bands, tiled at ``block``.

    A compressed output compresses on ``compress_threads`` GDAL threads unless the creation
    options set NUM_THREADS: the single writer would otherwise compress every tile itself
    and bound an I/O-bound run (GDAL writes the tiles in order either way).

    Raises
    ------
    OptionError
        If a creation option would change the tiling (use ``block_size``) or the driver.
    """
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": dtype.name,
        "count": count,
        "height": first.height,
        "width": first.width,
        "crs": first.crs,
        "transform": first.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "bigtiff": "IF_SAFER",
    }
    for key, value in (creation_options or {}).items():
        if key.lower() in _RESERVED_CREATION_OPTIONS:
            raise OptionError(
                f"creation option {key.upper()} is set by mpraster (tiled GeoTIFF); "
                "use --block-size to choose the tile size"
            )
        profile[key.lower()] = value
    if profile.get("compress") and "num_threads" not in profile and compress_threads > 1:
        profile["num_threads"] = str(compress_threads)
    return profile


class _Complaints(logging.Handler):
    """Collects the warnings GDAL sends through rasterio's logger in one thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def check_creation_options(profile: Mapping[str, Any], cog: bool = False) -> None:
    """Try the output's profile and creation options on a small in-memory GeoTIFF.

    GDAL only warns about an unknown creation option or value and writes the file without
    it: ``--co COMPRESS=NOPE`` would give an uncompressed output that looks fine. Here
    every complaint is an error, before any work starts. For a COG, options that only the
    COG driver takes (``LEVEL``, ``QUALITY``) are left to it.

    Raises
    ------
    OptionError
        Naming the option GDAL refused and what it said.
    """
    probe = {**profile, "height": 16, "width": 16, "blockxsize": 16, "blockysize": 16}
    logger = logging.getLogger("rasterio._env")
    complaints = _Complaints()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(complaints)
    # Heard here, not printed: the complaint becomes the error message.
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        with MemoryFile() as memory, memory.open(**probe):
            pass
    except RasterioError as err:
        said = re.sub(r"^\S+\.tif: ", "", _one_line(err))
        raise OptionError(f"GDAL refused the output's creation options: {said}") from err
    finally:
        logger.removeHandler(complaints)
        logger.setLevel(level)
        logger.propagate = propagate
    for message in complaints.messages:
        text = re.sub(r"^CPLE_\w+ in |(, ignoring)?\.$", "", message)
        option = re.search(r"creation option (\w+)", text)
        if cog and option and option.group(1).lower() in _COG_OPTIONS:
            continue
        raise OptionError(
            f"GDAL refused a creation option: {text}; see "
            "https://gdal.org/drivers/raster/gtiff.html#creation-options"
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


def partial_path(target: str) -> str:
    """Where the output is built before it is renamed into place."""
    return f"{target}.partial"


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
_PROFILE_KEYS = {"driver", "dtype", "count", "height", "width", "crs", "transform", "nodata"}
# GTiff creation options that carry over to GDAL's COG driver.
_COG_OPTIONS = {"compress", "predictor", "level", "quality", "num_threads", "bigtiff", "zstd_level"}


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

    options = {k: v for k, v in profile.items() if k in _COG_OPTIONS}
    options["blocksize"] = profile["blockxsize"]
    if isinstance(cog.overviews, tuple):
        with rasterio.open(src_path, "r+") as dst:
            dst.build_overviews(list(cog.overviews), Resampling[cog.resampling])
        options["overviews"] = "FORCE_USE_EXISTING"
    else:
        options["overviews"] = "AUTO" if cog.overviews == "auto" else "NONE"
        options["overview_resampling"] = cog.resampling
    copy(src_path, dst_path, driver="COG", **options)


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

    With ``checkpoints``, every ``every`` tile windows the partial GeoTIFF is closed (which
    puts its directory on disk) and reopened, and the windows since the last checkpoint are
    journaled: a run killed outright loses only what came after. The positions depend only
    on the plan, so every run of a job lays the file out the same way.

    The windows go to the final file directly unless it must be made in one go at the end:
    a COG (overviews and layout need the whole image) or compression settings that a
    reopened file would not keep; then they go to an uncompressed working file, and GDAL
    writes the final file from it at commit.
    """

    def __init__(
        self,
        target: str,
        profile: Mapping[str, Any],
        overwrite: bool,
        cog: CogOptions | None = None,
        checkpoints: Checkpoints | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.tags = dict(tags or {})
        self.path = partial_path(target)
        self.profile = dict(profile)
        self.overwrite = overwrite
        self.cog = cog
        self.checkpoints = checkpoints
        self.copy_at_end = cog is not None or bool(_CREATION_ONLY & set(self.profile))
        self._final_path = f"{self.path}-final"
        self._work_profile = (
            {k: v for k, v in self.profile.items() if k not in _COG_OPTIONS | _CREATION_ONLY}
            if self.copy_at_end
            else self.profile
        )
        self._open_options = (
            {"num_threads": self.profile["num_threads"]}
            if "num_threads" in self._work_profile
            else {}
        )
        self._dst: rasterio.io.DatasetWriter | None = None
        self._journal = None
        self._checksums: list[int] = []
        self._stopped = False

    def __enter__(self) -> OutputWriter:
        from mpraster.resume import Journal, journal_path

        check_output(self.target, self.overwrite)
        try:
            self._dst = rasterio.open(self.path, "w", **self._work_profile)
            if self.tags:
                self._dst.update_tags(**self.tags)
            if self.checkpoints is not None:
                self._journal = Journal(
                    journal_path(self.target), self.checkpoints.fingerprint, self.checkpoints.tiles
                )
        except (RasterioError, OSError) as err:
            self._remove_partial()
            raise OutputPathError(
                f"cannot create {self.path}: {_one_line(err)}; check that the output "
                "folder is writable and has space"
            ) from err
        return self

    def write(self, array: np.ndarray, window: Window, checksum: int | None = None) -> None:
        """Write one tile window's result (``checksum``: its pixels', for the journal)."""
        try:
            self._dst.write(array, window=window)
            if self._journal is not None:
                self._checksums.append(checksum)
                if len(self._checksums) >= self.checkpoints.every:
                    self._checkpoint(reopen=True)
        except RasterioError as err:
            raise OutputPathError(f"writing {self.path} failed: {_one_line(err)}") from err

    def _checkpoint(self, reopen: bool) -> None:
        self._dst.close()
        self._dst = None
        self._journal.checkpoint(self._checksums)
        self._checksums = []
        if reopen:
            self._dst = rasterio.open(self.path, "r+", **self._open_options)

    def stop(self) -> None:
        """Make everything written so far durable and journaled, and keep it for resume."""
        if self._journal is not None and self._dst is not None:
            self._checkpoint(reopen=False)
            self._journal.close()
        self._stopped = True

    def commit(self) -> None:
        """Close the output and move it to the target (replacing one only with overwrite)."""
        dst, self._dst = self._dst, None
        finished = self.path
        try:
            dst.close()
            if self.cog is not None:
                _cog_copy(self.path, self._final_path, self.profile, self.cog)
                finished = self._final_path
            elif self.copy_at_end:
                from rasterio.shutil import copy

                options = {k: v for k, v in self.profile.items() if k not in _PROFILE_KEYS}
                copy(self.path, self._final_path, driver="GTiff", **options)
                finished = self._final_path
        except RasterioError as err:
            self._remove_partial()
            raise OutputPathError(f"finishing {self.path} failed: {_one_line(err)}") from err
        if os.path.lexists(self.target) and not self.overwrite:
            self._remove_partial()
            raise OutputExistsError(
                f"output appeared while running: {self.target}; pass --overwrite to replace it"
            )
        os.replace(finished, self.target)
        self._remove_partial()

    def _remove_partial(self) -> None:
        if self._journal is not None:
            self._journal.remove()
        for path in (self.path, self._final_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def __exit__(self, *exc_info: object) -> None:
        if self._dst is not None:
            dst, self._dst = self._dst, None
            try:
                dst.close()
            finally:
                if not self._stopped:
                    self._remove_partial()
        elif exc_info[0] is not None and not self._stopped:
            self._remove_partial()


class TileAssembly:
    """Hands results to the writer one whole tile window at a time, in plan order.

    A tile window cut into row strips is assembled here first, so the writer never writes
    part of a tile: GDAL would hold the part in its cache, and under cache pressure flush it
    early and rewrite it later, which would make the file's layout depend on timing.
    """

    def __init__(self, writer: OutputWriter, dtype: np.dtype, bands: int) -> None:
        self.writer = writer
        self.dtype = dtype
        self.bands = bands
        self._buffer: np.ndarray | None = None

    def add(self, task: WindowTask, data: np.ndarray, known: int | None = None) -> None:
        """Take one window's result; ``known``: its checksum, if it is a whole tile's."""
        from mpraster.resume import checksum

        if task.parts == 1:
            self.writer.write(data, task.tile, checksum(data) if known is None else known)
            return
        if task.part == 0:
            shape = (self.bands, int(task.tile.height), int(task.tile.width))
            self._buffer = np.empty(shape, dtype=self.dtype)
        start, stop = task.rows_in_tile
        self._buffer[:, start:stop] = data
        if task.part == task.parts - 1:
            self.writer.write(self._buffer, task.tile, checksum(self._buffer))
            self._buffer = None
