"""Inputs and the output: opening, checking the grid, reading windows, the atomic writer.

GDAL dataset handles are never shared: every reader opens its own with ``sharing=False``
(GDAL would otherwise hand every thread of a process the same handle).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.env import env_ctx_if_needed
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.windows import Window

from mpraster.errors import (
    InputMismatchError,
    InputNotFoundError,
    MprasterError,
    NotARasterError,
    OptionError,
    OutputExistsError,
    OutputPathError,
    OutputWriteError,
    RasterReadError,
)
from mpraster.plan import WindowTask

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


# GDAL names files of its own (rasterio's MemoryFile, GDAL's scratch files) that mean
# nothing to the user: a message is about the output mpraster names itself.
_FILE_PREFIX = re.compile(r"^(?:/vsimem/\S*|\S*/\S*|\S+\.tiff?(?:\.\S+)?|gtiffdataset_\w+):\s+")
_INTERNAL_NAME = re.compile(
    r"/vsimem/\S*|\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\S*|\bgtiffdataset_\w+"
)


def gdal_reason(message: object) -> str:
    """GDAL's words for a failure, on one line and without file names of its own."""
    text = _FILE_PREFIX.sub("", " ".join(str(message).split()))
    text = _INTERNAL_NAME.sub("a temporary file", text).rstrip(".")
    return re.sub(r"^(\w+):(?=\S)", r"\1: ", text) or "GDAL gave no reason"


# rasterio's logger for GDAL's messages. While a rasterio.Env is active in a thread, GDAL's
# errors (CE_Failure) raised in that thread arrive here at INFO in this format, and its
# warnings at WARNING (rasterio/_env.pyx, log_error, in rasterio 1.4 and 1.5).
_GDAL_LOGGER = logging.getLogger("rasterio._env")
_GDAL_FAILURE = "GDAL signalled an error: err_no=%r, msg=%r"


@dataclass
class HeardFromGdal:
    """What GDAL said in one thread while mpraster was listening."""

    errors: list[str]
    warnings: list[str] | None  # None: warnings were not asked for, and pass on


class _GdalMessages(logging.Filter):
    """Hands GDAL's messages to the mpraster call that caused them.

    GDAL reports some failures only as errors logged while the call returns normally: a
    disk-full write through its compression threads is one. While a thread is
    `listening`, its GDAL errors (and its warnings, if asked for) are collected instead of
    logged. For those errors to reach Python's logging at all, the logger must let INFO
    through while anyone listens; records that exist only because of that are dropped here,
    so the user's own logging sees what it saw before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._level = logging.NOTSET
        self._shown_from = logging.WARNING
        self._ears: dict[int, HeardFromGdal] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # Filters run in the thread that logs: the thread GDAL raised the error in.
        heard = self._ears.get(threading.get_ident())
        if heard is not None:
            if record.msg == _GDAL_FAILURE and len(record.args or ()) == 2:
                message = record.args[1]
                if isinstance(message, bytes):
                    message = message.decode(errors="replace")
                heard.errors.append(str(message))
                return False
            if heard.warnings is not None and record.levelno >= logging.WARNING:
                heard.warnings.append(re.sub(r"^CPLE_\w+ in ", "", record.getMessage()))
                return False
        return record.levelno >= self._shown_from

    def retain(self) -> None:
        """Let GDAL's errors through to this filter until the matching `release`."""
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._level = _GDAL_LOGGER.level
                self._shown_from = _GDAL_LOGGER.getEffectiveLevel()
                _GDAL_LOGGER.setLevel(min(self._shown_from, logging.INFO))
                _GDAL_LOGGER.addFilter(self)

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                _GDAL_LOGGER.removeFilter(self)
                _GDAL_LOGGER.setLevel(self._level)

    @contextlib.contextmanager
    def listening(self, warnings: bool = False) -> Iterator[HeardFromGdal]:
        """Collect what GDAL says in this thread inside the block.

        Only while a rasterio.Env is active in the thread does GDAL's error handler lead
        here (rasterio pushes it per thread); one is entered if none is.
        """
        heard = HeardFromGdal([], [] if warnings else None)
        thread = threading.get_ident()
        outer = self._ears.get(thread)
        self.retain()
        self._ears[thread] = heard
        try:
            with env_ctx_if_needed():
                yield heard
        finally:
            if outer is None:
                del self._ears[thread]
            else:
                self._ears[thread] = outer
            self.release()


_GDAL_MESSAGES = _GdalMessages()
# What a failing GDAL call raises: rasterio's errors, and GDAL's own (CPLE_*) that
# rasterio.shutil.copy lets through.
_GDAL_RAISES = (RasterioError, CPLE_BaseError)


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
                raise NotARasterError(
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


def describe_window(task: WindowTask) -> str:
    """A short, human name for a task's window."""
    w = task.window
    return (
        f"{task.index} (row {int(w.row_off)}, col {int(w.col_off)}, {int(w.height)}x{int(w.width)})"
    )


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


_GTIFF_DOC = "https://gdal.org/drivers/raster/gtiff.html#creation-options"
_BOOLEAN = ("YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0")
_PREDICTOR_CODECS = ("DEFLATE", "LZW", "LZMA", "ZSTD")
_LERC = ("LERC", "LERC_DEFLATE", "LERC_ZSTD")
_CCITT = ("CCITTRLE", "CCITTFAX3", "CCITTFAX4")
# Compression levels per codec: GTiff's ZLEVEL, ZSTD_LEVEL and LZMA_PRESET, the COG driver's
# LEVEL. DEFLATE goes to 12 with libdeflate, which GDAL's builds (rasterio's wheels) use.
_LEVELS = {
    "DEFLATE": (1, 12),
    "LERC_DEFLATE": (1, 12),
    "ZSTD": (1, 22),
    "LERC_ZSTD": (1, 22),
    "LZMA": (0, 9),
}
# The sample widths NBITS may pack each data type into (GDAL's GTiff driver).
_NBITS = {"uint8": (1, 8), "uint16": (9, 16), "uint32": (17, 32)}


@dataclass(frozen=True)
class _OptionRule:
    """What one creation option takes, and the compressions it tunes (empty: any)."""

    kind: str  # "int", "float", "choice" or "text"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    codecs: tuple[str, ...] = ()


def _choice(*choices: str, codecs: tuple[str, ...] = ()) -> _OptionRule:
    return _OptionRule("choice", choices, codecs=codecs)


_TEXT = _OptionRule("text")
# The GTiff driver's creation options (GDAL 3.10 to 3.12, gtiffdataset_write.cpp and its
# documentation), as mpraster checks them before GDAL sees them: GDAL itself only warns
# about most mistakes and writes the file without the option, and what it refuses
# changes between versions.
_GTIFF_RULES: dict[str, _OptionRule] = {
    "compress": _choice(
        "NONE",
        "LZW",
        "PACKBITS",
        "JPEG",
        *_CCITT,
        "DEFLATE",
        "LZMA",
        "ZSTD",
        "WEBP",
        *_LERC,
        "JXL",
    ),
    "predictor": _choice("1", "2", "3"),
    "zlevel": _OptionRule("int", low=1, high=12, codecs=("DEFLATE", "LERC_DEFLATE")),
    "zstd_level": _OptionRule("int", low=1, high=22, codecs=("ZSTD", "LERC_ZSTD")),
    "lzma_preset": _OptionRule("int", low=0, high=9, codecs=("LZMA",)),
    "jpeg_quality": _OptionRule("int", low=1, high=100, codecs=("JPEG",)),
    "jpegtablesmode": _OptionRule("int", low=0, high=3, codecs=("JPEG",)),
    "webp_level": _OptionRule("int", low=1, high=100, codecs=("WEBP",)),
    "webp_lossless": _choice(*_BOOLEAN, codecs=("WEBP",)),
    "max_z_error": _OptionRule("float", low=0, codecs=_LERC),
    "max_z_error_overview": _OptionRule("float", low=0, codecs=_LERC),
    "jxl_lossless": _choice(*_BOOLEAN, codecs=("JXL",)),
    "jxl_effort": _OptionRule("int", low=1, high=9, codecs=("JXL",)),
    "jxl_distance": _OptionRule("float", low=0.01, high=25, codecs=("JXL",)),
    "jxl_alpha_distance": _OptionRule("float", low=-1, high=25, codecs=("JXL",)),
    "discard_lsb": _TEXT,
    "num_threads": _TEXT,
    "nbits": _OptionRule("int", low=1, high=32),
    "interleave": _choice("PIXEL", "BAND"),
    "photometric": _choice(
        "MINISBLACK",
        "MINISWHITE",
        "PALETTE",
        "RGB",
        "CMYK",
        "YCBCR",
        "CIELAB",
        "ICCLAB",
        "ITULAB",
    ),
    "alpha": _choice("NON-PREMULTIPLIED", "PREMULTIPLIED", "UNSPECIFIED", "YES", "NO"),
    "profile": _choice("GDALGEOTIFF", "GEOTIFF", "BASELINE"),
    "pixeltype": _choice("DEFAULT", "SIGNEDBYTE"),
    "bigtiff": _choice("YES", "NO", "IF_NEEDED", "IF_SAFER"),
    "endianness": _choice("NATIVE", "INVERTED", "LITTLE", "BIG"),
    "sparse_ok": _choice(*_BOOLEAN),
    "tfw": _choice(*_BOOLEAN),
    "rpb": _choice(*_BOOLEAN),
    "rpctxt": _choice(*_BOOLEAN),
    "copy_src_overviews": _choice(*_BOOLEAN),
    "streamable_output": _choice(*_BOOLEAN),
    "geotiff_keys_flavor": _choice("STANDARD", "ESRI_PE"),
    "geotiff_version": _choice("AUTO", "1.0", "1.1"),
    "color_table_multiplier": _choice("1", "256", "257"),
    "source_icc_profile": _TEXT,
    "source_primaries_red": _TEXT,
    "source_primaries_green": _TEXT,
    "source_primaries_blue": _TEXT,
    "source_whitepoint": _TEXT,
    "tifftag_transferfunction_red": _TEXT,
    "tifftag_transferfunction_green": _TEXT,
    "tifftag_transferfunction_blue": _TEXT,
    "tifftag_transferrange_black": _TEXT,
    "tifftag_transferrange_white": _TEXT,
}
# Options of GDAL's COG driver, which writes a --cog output from mpraster's working file.
_COG_RULES: dict[str, _OptionRule] = {
    "level": _OptionRule("int", low=0, high=22, codecs=tuple(_LEVELS)),
    "quality": _OptionRule("int", low=1, high=100, codecs=("JPEG", "WEBP")),
}
_COG_CODECS = ("NONE", "LZW", "JPEG", "DEFLATE", "LZMA", "ZSTD", "WEBP", *_LERC, "JXL")
# The COG driver's names for GTiff's compression settings (the rest it does not take).
_COG_NAMES = {
    "zlevel": "LEVEL",
    "zstd_level": "LEVEL",
    "lzma_preset": "LEVEL",
    "jpeg_quality": "QUALITY",
    "webp_level": "QUALITY",
    "webp_lossless": "QUALITY=100",
}


def _compression(codec: str) -> str:
    return "uncompressed" if codec == "NONE" else f"compressed with {codec}"


def _one_of(choices: Sequence[str]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def _check_value(name: str, value: str, rule: _OptionRule) -> None:
    """Raise `OptionError` if ``value`` is not one ``rule`` takes."""
    upper = value.upper()
    label = f"creation option {name.upper()}={value}"
    if rule.kind == "choice" and upper not in rule.choices:
        choices = "YES or NO" if rule.choices == _BOOLEAN else _one_of(rule.choices)
        raise OptionError(f"{label} is not a value GDAL takes; choose {choices}")
    if rule.kind in ("int", "float"):
        try:
            number = int(value) if rule.kind == "int" else float(value)
        except ValueError:
            kind = "whole number" if rule.kind == "int" else "number"
            raise OptionError(f"{label} is not a {kind}; see {_GTIFF_DOC}") from None
        if (rule.low is not None and number < rule.low) or (
            rule.high is not None and number > rule.high
        ):
            span = (
                f"from {rule.low} to {rule.high}"
                if rule.high is not None
                else f"{rule.low} or more"
            )
            raise OptionError(f"{label} is out of range; give {name.upper()} {span}")
    if name == "num_threads" and not (upper == "ALL_CPUS" or (value.isdigit() and int(value))):
        raise OptionError(f"{label} is not a number of threads; give 1 or more, or ALL_CPUS")
    if name == "discard_lsb" and not re.fullmatch(r"\d+(,\d+)*", value):
        raise OptionError(f"{label} is not a number of bits (or one per band, comma-separated)")


def _check_option_table(profile: Mapping[str, Any], cog: bool) -> None:
    """mpraster's own rules for creation options: names, values, and what GDAL can encode.

    Raises
    ------
    OptionError
        Naming the option, why it cannot be used, and the fix.
    """
    given = {
        name: str(value).strip()
        for name, value in profile.items()
        if name not in _PROFILE_KEYS | _RESERVED_CREATION_OPTIONS
    }
    rules = {**_GTIFF_RULES, **(_COG_RULES if cog else {})}
    for name, value in given.items():
        rule = rules.get(name)
        if rule is None and name in _COG_RULES:
            instead = {
                "level": "ZLEVEL (DEFLATE), ZSTD_LEVEL (ZSTD) or LZMA_PRESET (LZMA)",
                "quality": "JPEG_QUALITY (JPEG) or WEBP_LEVEL (WEBP)",
            }[name]
            raise OptionError(
                f"creation option {name.upper()} is for --cog outputs (GDAL's COG driver); "
                f"a plain GeoTIFF takes {instead}"
            )
        if rule is None:
            raise OptionError(
                f"unknown creation option {name.upper()} for a GeoTIFF; see {_GTIFF_DOC}"
            )
        if cog and rule.codecs and (name in _COG_NAMES or name not in _COG_OPTIONS):
            instead = _COG_NAMES.get(name)
            raise OptionError(
                f"creation option {name.upper()} does not reach GDAL's COG driver, which "
                "compresses a --cog output; "
                + (f"give {instead} instead" if instead else "drop it")
            )
        _check_value(name, value, rule)
    values = {name: value.upper() for name, value in given.items()}
    # The COG driver compresses with LZW unless told otherwise (GDAL >= 3.4).
    codec = values.get("compress", "LZW" if cog else "NONE")
    if cog and codec not in _COG_CODECS:
        raise OptionError(
            f"creation option COMPRESS={given['compress']} is not one GDAL's COG driver "
            f"takes for --cog; choose {_one_of(_COG_CODECS)}"
        )
    for name in given:
        codecs = rules[name].codecs
        if codecs and codec not in codecs:
            raise OptionError(
                f"creation option {name.upper()} tunes COMPRESS={' or '.join(codecs)}, and the "
                f"output is {_compression(codec)}; set COMPRESS or drop {name.upper()}"
            )
    if "level" in values:
        low, high = _LEVELS[codec]
        if not low <= int(values["level"]) <= high:
            raise OptionError(
                f"creation option LEVEL={given['level']} is out of range for {codec}; "
                f"give LEVEL from {low} to {high}"
            )
    _check_codec_fits(values, codec, np.dtype(profile["dtype"]), int(profile["count"]), cog)


def _check_codec_fits(
    values: Mapping[str, str], codec: str, dtype: np.dtype, bands: int, cog: bool
) -> None:
    """Raise `OptionError` for a codec, predictor or NBITS that cannot encode the output."""
    bits = dtype.itemsize * 8
    if "nbits" in values:
        nbits = int(values["nbits"])
        low, high = _NBITS.get(dtype.name, (16, 32) if dtype.name == "float32" else (0, 0))
        if dtype.name == "float32" and nbits not in (16, 32):
            takes = "a float32 output takes NBITS=16 (half precision) only"
        elif not high:
            takes = "NBITS is for uint8, uint16, uint32 and float32 outputs"
        elif not low <= nbits <= high:
            takes = f"a {dtype.name} output takes NBITS from {low} to {high}"
        else:
            takes = ""
        if takes:
            raise OptionError(
                f"creation option NBITS={nbits} does not suit the {dtype.name} output: {takes}; "
                "drop NBITS or change it"
            )
        bits = nbits
    predictor = values.get("predictor", "1")
    # The COG driver's names for the predictors (YES picks the one that suits the type).
    floating = dtype.name in ("float32", "float64")
    predictor = {
        "NO": "1",
        "STANDARD": "2",
        "FLOATING_POINT": "3",
        "YES": "3" if floating else "2",
    }.get(predictor, predictor)
    if predictor != "1":
        label = f"creation option PREDICTOR={values['predictor']}"
        if codec not in _PREDICTOR_CODECS:
            raise OptionError(
                f"{label} needs a compression that uses it (DEFLATE, LZW, LZMA or ZSTD), and "
                f"the output is {_compression(codec)}; set COMPRESS=DEFLATE (or ZSTD, LZW) or "
                "drop PREDICTOR"
            )
        if predictor == "3" and not floating:
            raise OptionError(
                f"{label} (floating point) needs a float32 or float64 output, and the output "
                f"is {dtype.name}; use PREDICTOR=2"
            )
        if predictor == "2" and bits not in (8, 16, 32, 64):
            raise OptionError(
                f"{label} needs 8, 16, 32 or 64-bit samples, and NBITS={bits} packs them "
                "tighter; drop PREDICTOR or NBITS"
            )
    interleave = values.get("interleave", "PIXEL")
    if codec == "JPEG":
        # 12-bit JPEG (uint16, NBITS=12) depends on how GDAL was built; rasterio's wheels
        # write it without error and cannot read it back.
        if dtype.name != "uint8" or bits != 8:
            raise OptionError(
                f"COMPRESS=JPEG needs a uint8 output, and the output is {dtype.name}"
                f"{f' with NBITS={bits}' if bits != dtype.itemsize * 8 else ''}; choose "
                "DEFLATE, ZSTD or LZW, or make the output uint8"
            )
        if bands > 4 and (cog or interleave == "PIXEL"):
            # GDAL's COG driver interleaves by pixel whatever INTERLEAVE says.
            raise OptionError(
                f"COMPRESS=JPEG takes at most 4 bands when they are interleaved by pixel, and "
                f"the output has {bands}; set INTERLEAVE=BAND (not with --cog) or choose "
                "another codec"
            )
    if codec == "WEBP":
        if dtype.name != "uint8" or bits != 8 or bands not in (3, 4):
            raise OptionError(
                f"COMPRESS=WEBP needs a uint8 output of 3 or 4 bands (RGB or RGBA), and the "
                f"output has {bands} band{'s' if bands != 1 else ''} of {dtype.name}; choose "
                "DEFLATE, ZSTD or LZW"
            )
        if interleave != "PIXEL":
            raise OptionError(
                "COMPRESS=WEBP needs bands interleaved by pixel; drop INTERLEAVE=BAND"
            )
    if codec in _CCITT and not (dtype.name == "uint8" and bands == 1 and bits == 1):
        raise OptionError(
            f"COMPRESS={codec} is for bilevel images: a one-band uint8 output with NBITS=1; "
            "choose DEFLATE, ZSTD or LZW"
        )
    if values.get("photometric") == "YCBCR" and (
        cog or codec != "JPEG" or bands != 3 or interleave != "PIXEL"
    ):
        raise OptionError(
            "creation option PHOTOMETRIC=YCBCR needs COMPRESS=JPEG, 3 bands interleaved by "
            "pixel, and no --cog (GDAL's COG driver uses YCbCr for a 3-band JPEG by itself)"
        )


def _probe_data(dtype: np.dtype, bands: int, size: int, bits: int) -> np.ndarray:
    """A tile of real data of the output's type, within NBITS (GDAL warns when it clips)."""
    values = np.arange(bands * size * size) % (2**bits if bits < 7 else 100)
    return values.reshape(bands, size, size).astype(dtype)


def check_creation_options(profile: Mapping[str, Any], cog: bool = False) -> None:
    """Check the output's creation options, then write a tile with them in memory.

    GDAL only warns about an unknown creation option or value and writes the file without
    it (``--co COMPRESS=NOPE`` would give an uncompressed output that looks fine), what it
    refuses differs between its versions, and a codec that cannot encode the output's data
    says so only when a tile is compressed, in GDAL's compression threads, where nobody
    hears it. So mpraster's own rules (`_check_option_table`) come first; then, as a
    backstop, one tile of the output's type and bands is encoded the way the writer would
    (working file, and the copy GDAL makes at the end for a COG), on this thread, and every
    error or warning GDAL gives is a refusal.

    Raises
    ------
    OptionError
        Naming the option and why it cannot be used.
    """
    _check_option_table(profile, cog)
    dtype = np.dtype(profile["dtype"])
    bands = int(profile["count"])
    bits = int(profile.get("nbits") or dtype.itemsize * 8)
    # GDAL's COG driver takes no tile smaller than 128.
    size = 128 if cog else 16
    shape = {"height": size, "width": size, "blockxsize": size, "blockysize": size}
    # No NUM_THREADS: a tile encoded on GDAL's threads fails where nobody hears it.
    final = {k: v for k, v in profile.items() if k != "num_threads"} | shape
    work, copy_at_end = _writer_profiles(final, cog)
    try:
        with _GDAL_MESSAGES.listening(warnings=True) as heard, MemoryFile() as memory:
            with memory.open(**work) as dst:
                dst.write(_probe_data(dtype, bands, size, bits))
            if copy_at_end:
                with MemoryFile() as copied:
                    _copy_final(
                        memory.name, copied.name, final, CogOptions("none") if cog else None
                    )
    except _GDAL_RAISES as err:
        raise OptionError(
            f"GDAL cannot write the output with its creation options: "
            f"{gdal_reason(_one_line(err))}; see {_GTIFF_DOC}"
        ) from err
    said = heard.errors + (heard.warnings or [])
    if said:
        raise OptionError(
            f"GDAL refused the output's creation options: {gdal_reason(said[0])}; see {_GTIFF_DOC}"
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
_COG_OPTIONS = {
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


def _writer_profiles(profile: Mapping[str, Any], cog: bool) -> tuple[dict[str, Any], bool]:
    """The profile of the file the windows go to, and whether GDAL copies it at the end.

    The windows go to the final file directly unless it must be made in one go at the end:
    a COG (overviews and layout need the whole image) or compression settings that a
    reopened file would not keep; then they go to an uncompressed working file.
    """
    if not cog and not _CREATION_ONLY & set(profile):
        return dict(profile), False
    excluded = _COG_OPTIONS | _CREATION_ONLY
    return {k: v for k, v in profile.items() if k not in excluded}, True


def _copy_final(
    src_path: str, dst_path: str, profile: Mapping[str, Any], cog: CogOptions | None
) -> None:
    """Write the working file ``src_path`` as the final file (see `_writer_profiles`)."""
    if cog is not None:
        _cog_copy(src_path, dst_path, profile, cog)
        return
    from rasterio.shutil import copy

    options = {k: v for k, v in profile.items() if k not in _PROFILE_KEYS}
    copy(src_path, dst_path, driver="GTiff", **options)


def find_missing_tile(path: str, sparse: bool = False) -> str | None:
    """What is wrong with the tiles of the closed GeoTIFF at ``path``, or None.

    A backstop for a write error GDAL reported nowhere mpraster hears it (in another
    thread, or on stderr only): such a tile has no data in the file (allowed only in a
    ``sparse`` file, a shard), or data past the file's end. It reads GDAL's TIFF directory
    only (``BLOCK_OFFSET_x_y`` and ``BLOCK_SIZE_x_y``), never the pixels.
    """
    from rasterio.enums import Interleaving
    from rasterio.errors import NotGeoreferencedWarning

    size = os.path.getsize(path)
    try:
        with warnings.catch_warnings():
            # The output's georeferencing is its inputs', told about when they were read.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with _GDAL_MESSAGES.listening() as heard, rasterio.open(path, sharing=False) as src:
                problem = _tile_outside(src, size, sparse, src.interleaving == Interleaving.band)
    except _GDAL_RAISES as err:
        return f"the finished file cannot be read back: {gdal_reason(_one_line(err))}"
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
    (see `_writer_profiles`); then GDAL writes the final file from a working file at commit.
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
        self._work_profile, self.copy_at_end = _writer_profiles(self.profile, cog is not None)
        self._final_path = f"{self.path}-final"
        self._open_options = (
            {"num_threads": self.profile["num_threads"]}
            if "num_threads" in self._work_profile
            else {}
        )
        self._dst: rasterio.io.DatasetWriter | None = None
        self._journal = None
        self._checksums: list[int] = []
        # Kept for --resume: after `stop`, or when the finished file could not be renamed.
        self._stopped = False
        self._gdal = contextlib.ExitStack()

    def __enter__(self) -> OutputWriter:
        from mpraster.journal import Journal, journal_path

        check_output(self.target, self.overwrite)
        # GDAL's errors reach Python only in a thread with a rasterio.Env, and only while
        # rasterio's logger lets them through: both for the writer's whole life.
        self._gdal.enter_context(env_ctx_if_needed())
        _GDAL_MESSAGES.retain()
        self._gdal.callback(_GDAL_MESSAGES.release)
        try:
            with _GDAL_MESSAGES.listening() as heard:
                self._dst = rasterio.open(self.path, "w", **self._work_profile)
                if self.tags:
                    self._dst.update_tags(**self.tags)
                if self.checkpoints is not None:
                    self._journal = Journal(
                        journal_path(self.target),
                        self.checkpoints.fingerprint,
                        self.checkpoints.tiles,
                    )
            if heard.errors:
                raise RasterioError(heard.errors[0])
        except (*_GDAL_RAISES, OSError) as err:
            self._close_quietly()
            self._remove_partial()
            self._gdal.close()
            raise OutputPathError(
                f"cannot create {self.path}: {gdal_reason(_one_line(err))}; check that the "
                "output folder is writable and has space"
            ) from err
        return self

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One step of the writer's own: any error GDAL raises or only logs fails the write."""
        with _GDAL_MESSAGES.listening() as heard:
            try:
                yield
            except _GDAL_RAISES as err:
                raise self._failed(_one_line(err)) from err
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

    def write(self, array: np.ndarray, window: Window, checksum: int | None = None) -> None:
        """Write one tile window's result (``checksum``: its pixels', for the journal).

        Raises
        ------
        OutputWriteError
            If GDAL or the journal fails (disk full, I/O error, a codec refusing the data).
        """
        with self._writing():
            self._dst.write(array, window=window)
            if self._journal is not None:
                self._checksums.append(checksum)
                if len(self._checksums) >= self.checkpoints.every:
                    self._checkpoint(reopen=True)

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
            with self._writing():
                self._checkpoint(reopen=False)
            self._journal.close()
        self._stopped = True

    def commit(self) -> None:
        """Close the output, check it, and move it to the target (replacing one only with
        overwrite).

        Raises
        ------
        OutputWriteError
            If GDAL fails to finish the file, or the finished file misses a tile.
        OutputExistsError
            If an output appeared at the target meanwhile and ``overwrite`` is false.
        OutputPathError
            If the finished file cannot be renamed into place; with a journal, it is kept
            for ``--resume``.
        """
        dst, self._dst = self._dst, None
        finished = self._final_path if self.copy_at_end else self.path
        try:
            with self._writing():
                dst.close()
                if self._journal is not None:
                    # Journaled before the rename: if that fails, the finished partial is
                    # there for --resume to move into place.
                    self._journal.checkpoint(self._checksums)
                    self._checksums = []
                if self.copy_at_end:
                    _copy_final(self.path, self._final_path, self.profile, self.cog)
            problem = find_missing_tile(finished, sparse=_is_true(self.profile.get("sparse_ok")))
            if problem:
                raise self._failed(problem)
        except OutputWriteError:
            self._remove_partial()
            raise
        if os.path.lexists(self.target) and not self.overwrite:
            self._remove_partial()
            raise OutputExistsError(
                f"output appeared while running: {self.target}; pass --overwrite to replace it"
            )
        try:
            os.replace(finished, self.target)
        except OSError as err:
            raise self._rename_failed(err) from err
        self._remove_partial()

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
            with _GDAL_MESSAGES.listening(), contextlib.suppress(*_GDAL_RAISES):
                dst.close()

    def __exit__(self, *exc_info: object) -> None:
        opened = self._dst is not None
        try:
            self._close_quietly()
        finally:
            if not self._stopped and (opened or exc_info[0] is not None):
                self._remove_partial()
            self._gdal.close()


def _is_true(value: object) -> bool:
    return str(value).upper() in ("YES", "TRUE", "ON", "1")
