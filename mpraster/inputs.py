"""Inputs: GDAL dataset names, their headers and grid, and reading windows of them.

GDAL dataset handles are never shared: every reader opens its own with ``sharing=False``
(GDAL would otherwise hand every thread of a process the same handle).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window

from mpraster.errors import (
    InputMismatchError,
    InputNotFoundError,
    InputUnreachableError,
    MixedBandTypesError,
    NotARasterError,
    OptionError,
    RasterReadError,
)
from mpraster.gdal_errors import GDAL_MESSAGES, gdal_reason, one_line
from mpraster.metadata import InputMetadata, read_input_metadata
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
    threads and GDAL's own threads see too; worker processes apply `network_config`. A
    setting in ``options`` (``--config``) wins over the network defaults.
    """
    options = {**network_config(), **options}
    if isinstance(options.get("GDAL_CACHEMAX"), str):
        # rasterio hands GDAL_CACHEMAX to GDALSetCacheMax64, which takes bytes (an int).
        options["GDAL_CACHEMAX"] = cache_max_bytes(options["GDAL_CACHEMAX"])
    return rasterio.Env(**options)


def cache_max_bytes(value: str) -> int:
    """GDAL_CACHEMAX as GDAL reads it, in bytes: ``N%`` of the physical memory, a number
    below 100000 in megabytes, a larger one in bytes; ``MB``/``GB`` may follow a number.

    Raises
    ------
    OptionError
        If it is none of these.
    """
    text = value.strip().upper()
    try:
        if text.endswith("%"):
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            return int(memory * float(text[:-1]) / 100)
        for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20)):
            if text.endswith(unit):
                return int(float(text[: -len(unit)]) * scale)
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise OptionError(
            f"GDAL_CACHEMAX={value} is not a size: give megabytes (512), bytes (1000000000), "
            "512MB, 2GB or a share of the memory (10%)"
        )
    return number << 20 if number < 100_000 else number


def is_local_path(name: str) -> bool:
    """Whether ``name`` is a plain file path rather than another GDAL dataset name.

    ``/vsicurl/...``, ``/vsizip/...``, ``http://...``, ``s3://...`` and subdataset names
    (``NETCDF:file.nc:var``, ``HDF5:...``, ``GTIFF_DIR:...``) are GDAL's to resolve.
    """
    return not (
        name.startswith("/vsi") or "://" in name or re.match(r"^[A-Za-z][A-Za-z0-9_]+:", name)
    )


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
    # Per chosen band, its nodata value where GDAL's mask flags say nodata marks invalid
    # pixels (``nodata`` is the value they share, None if they differ); empty: ``nodata``.
    nodatavals: tuple[float | None, ...] = ()
    # The bands (1-based) whose masks say which pixels are valid: one band for a
    # per-dataset mask (internal, .msk or an alpha band), every band that has one for
    # per-band masks (a pixel is valid where all of them say so); empty: no mask.
    mask_bands: tuple[int, ...] = ()
    # How its pixels are stored, as GDAL's IMAGE_STRUCTURE metadata names it: the codec
    # ("DEFLATE", "LZW", "JPEG", ...; None: uncompressed) and the TIFF predictor (1: none).
    # The output's default codec follows the first input's; whether reading it costs
    # decoding helps choose who reads (`RunOptions.placement`).
    compression: str | None = None
    predictor: int = 1
    # GDAL's short name of its driver ("GTiff", "VRT", ...); "" where not known.
    driver: str = ""

    @property
    def count(self) -> int:
        return len(self.bands)

    @property
    def has_mask(self) -> bool:
        return bool(self.mask_bands)

    @property
    def band_nodata(self) -> tuple[float | None, ...]:
        """One nodata value (or None) per chosen band."""
        return self.nodatavals or (self.nodata,) * self.count


def _looks_like_tiff(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_raster(path: str, **options: str) -> rasterio.io.DatasetReader:
    """Open ``path`` for reading with a handle of its own (``options``: GDAL open options).

    ``path`` may be any GDAL dataset name (see `is_local_path`); only a plain path is
    checked on the local filesystem first. Whether a name is missing, unreachable or not a
    raster is GDAL's answer, errors it only logged included (for a URL, the HTTP error).

    Raises
    ------
    InputNotFoundError
        If there is no file at ``path`` (or GDAL says a remote or virtual one does not exist).
    InputUnreachableError
        If a remote input cannot be reached (connection, name resolution, timeout, access).
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
    with GDAL_MESSAGES.listening() as heard:
        try:
            return rasterio.open(path, sharing=False, **options)
        except RasterioError as err:
            failure = err
    said = one_line(failure)
    if local:
        if _looks_like_tiff(path):
            raise RasterReadError(
                f"cannot read {path}: {said}; the file may be truncated or corrupt"
            ) from failure
    else:
        _raise_if_missing_or_unreachable(path, [*heard.errors, said], failure)
    raise NotARasterError(
        f"cannot open {path} as a raster: {said}; give a GeoTIFF or another format GDAL reads"
    ) from failure


# What GDAL (through curl) says when a remote input is not there, or cannot be reached.
_MISSING = re.compile(r"response code[^0-9]*404|\b404\b|does not exist|No such file", re.I)
_UNREACHABLE = re.compile(
    r"CURL error|Could not (?:connect|resolve)|Couldn't (?:connect|resolve)|timed out|"
    r"Operation too slow|response code[^0-9]*(?:401|403)|Access Denied|SSL",
    re.I,
)


def _raise_if_missing_or_unreachable(path: str, said: list[str], failure: Exception) -> None:
    """Decide from GDAL's words for a remote or virtual input: not there, or not reachable.

    A connection error comes first: GDAL then also says the name "does not exist".
    """
    unreachable = next((m for m in said if _UNREACHABLE.search(m)), None)
    if unreachable is not None:
        raise InputUnreachableError(
            f"cannot reach input {path}: {gdal_reason(unreachable)}; check the address, the "
            "network and any credentials (GDAL_HTTP_* / AWS_* settings, --config)"
        ) from failure
    missing = next((m for m in said if _MISSING.search(m)), None)
    if missing is not None:
        raise InputNotFoundError(f"input not found: {path}: {gdal_reason(missing)}") from failure


def inspect_inputs(specs: Sequence[InputSpec]) -> list[InputInfo]:
    """Read every input's header, check its bands, and check that they share one grid.

    See `inspect_inputs_and_metadata`, which also reads their metadata.
    """
    return inspect_inputs_and_metadata(specs)[0]


def _validity(src, bands: Sequence[int]) -> tuple[tuple[float | None, ...], tuple[int, ...]]:
    """Per band its nodata value, and the bands whose masks mark invalid pixels, as GDAL's
    mask flags say (a band with a mask ignores its nodata value, as GDAL does)."""
    flags = [src.mask_flag_enums[b - 1] for b in bands]
    nodatavals = tuple(
        src.nodatavals[b - 1] if MaskFlags.nodata in f and MaskFlags.per_dataset not in f else None
        for b, f in zip(bands, flags, strict=True)
    )
    per_dataset = [b for b, f in zip(bands, flags, strict=True) if MaskFlags.per_dataset in f]
    if per_dataset:
        return nodatavals, (per_dataset[0],)
    # No flag at all: a mask of the band's own (GDAL's per-band mask, as a VRT may have).
    return nodatavals, tuple(b for b, f in zip(bands, flags, strict=True) if not f)


def inspect_inputs_and_metadata(
    specs: Sequence[InputSpec],
) -> tuple[list[InputInfo], list[InputMetadata]]:
    """Read every input's header and metadata, check its bands, and check that they share
    one grid.

    Raises
    ------
    InputNotFoundError, NotARasterError, RasterReadError
        For an input that is missing, not a raster, or unreadable.
    OptionError
        For a band the input does not have.
    InputMismatchError
        If the inputs differ in size, transform or CRS (the first difference is named).
    """
    infos, metadata = [], []
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
            infos.append(_input_info(spec.path, src, bands, dtypes.pop()))
            metadata.append(read_input_metadata(src, bands))
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
    _check_georeferencing(infos, metadata)
    return infos, metadata


def _input_info(path: str, src, bands: tuple[int, ...], dtype: str) -> InputInfo:
    nodatavals, mask_bands = _validity(src, bands)
    shared = set(map(str, nodatavals))
    return InputInfo(
        path=path,
        bands=bands,
        dtype=dtype,
        height=src.height,
        width=src.width,
        crs=src.crs,
        transform=src.transform,
        nodata=nodatavals[0] if len(shared) == 1 else None,
        block_shape=tuple(src.block_shapes[bands[0] - 1]),
        nodatavals=nodatavals,
        mask_bands=mask_bands,
        driver=src.driver,
        **input_codec(src),
    )


def input_codec(src) -> dict[str, Any]:
    """The codec and predictor of an open dataset, as `InputInfo` records them."""
    structure = src.tags(ns="IMAGE_STRUCTURE")
    codec = structure.get("COMPRESSION", "").upper()
    predictor = structure.get("PREDICTOR", "1")
    return {
        "compression": None if codec in ("", "NONE") else codec,
        "predictor": int(predictor) if predictor.isdigit() else 1,
    }


def _check_georeferencing(infos: Sequence[InputInfo], metadata: Sequence[InputMetadata]) -> None:
    """Raise `InputMismatchError` unless the inputs have the same GCPs and RPCs, if any
    (their transforms and CRSs are compared as GDAL compares them, by the caller)."""
    georef = metadata[0].georeferencing
    for info, other in zip(infos[1:], metadata[1:], strict=True):
        theirs = other.georeferencing
        if (theirs.kind, theirs.gcps, theirs.rpcs) != (georef.kind, georef.gcps, georef.rpcs):
            raise InputMismatchError(
                f"inputs {infos[0].path} and {info.path} are not georeferenced alike (by "
                f"{georef.kind} and {theirs.kind}, or by different ones); warp one onto the "
                "other first (rio warp --like)"
            )


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


def split_arrays(
    arrays: Sequence[np.ndarray], infos: Sequence[InputInfo]
) -> tuple[list[np.ndarray], tuple[np.ndarray | None, ...]]:
    """A window's arrays as `WindowReader.read` gives them: the inputs' arrays, and per
    input its mask or None."""
    inputs = list(arrays[: len(infos)])
    extra = iter(arrays[len(infos) :])
    return inputs, tuple(next(extra) if i.has_mask else None for i in infos)


def band_grid(window_rows: int, block_rows: int) -> int:
    """The most rows a `WindowReader` reading in bands asks GDAL for at once: the
    windows' rows, rounded up to whole blocks (each block read once, whole)."""
    return -(-window_rows // block_rows) * block_rows


class _Band:
    """Whole rows of one input (or its mask) a `WindowReader` holds: ``rows`` (bands x rows
    x the raster's width) from row ``first``, read from GDAL up to column ``filled``."""

    __slots__ = ("filled", "first", "rows")

    def __init__(self, first: int, rows: np.ndarray, filled: int = 0) -> None:
        self.first = first
        self.rows = rows
        self.filled = filled

    @property
    def stop(self) -> int:
        return self.first + self.rows.shape[1]

    def below(self, row: int) -> _Band:
        """Its rows from ``row`` on, in an array of their own."""
        return _Band(row, self.rows[:, row - self.first :].copy(), self.filled)


def _keep(spare: dict[tuple[int, ...], np.ndarray], rows: np.ndarray) -> None:
    """Keep ``rows`` for a band of its shape, and the last array of one other shape."""
    spare.pop(rows.shape, None)
    spare[rows.shape] = rows
    while len(spare) > 2:
        del spare[next(iter(spare))]


class WindowReader:
    """Reads windows of every input with handles of its own, filling past the edge.

    ``fill`` is ``"edge"`` (edge pixels repeated outwards, which keeps neighbourhood
    kernels identical to a whole-raster computation at the edges) or ``"nodata"``.

    Without ``band_rows`` each window is asked of GDAL alone. With it (the windows' rows,
    where windows share blocks and come in plan order: `mpraster.budget.reads_in_bands`),
    the inputs are read in bands of whole rows of blocks (`band_grid`), each block asked
    of GDAL once, so decoded once, ``threads`` blocks at a time on GDAL's threads (a
    compressed GeoTIFF); windows are cut from the bands held, which are those a row of
    windows and its halo span. A window out of plan order is still read right: the
    reader starts again from it.
    """

    def __init__(
        self,
        specs: Sequence[InputSpec],
        infos: Sequence[InputInfo],
        fill: str,
        band_rows: int | None = None,
        threads: int = 1,
    ) -> None:
        self.infos = list(infos)
        self.fill = fill
        self.band_rows = band_rows
        self.threads = threads
        self.datasets: list[rasterio.io.DatasetReader] = []
        # (input, mask?) -> the bands held, in order; and the arrays of the last two bands
        # dropped, by shape, for the next bands (a run's bands have a shape or two).
        self._held: dict[tuple[int, bool], list[_Band]] = {}
        self._spare: dict[tuple[int, bool], dict[tuple[int, ...], np.ndarray]] = {}
        try:
            for spec, info in zip(specs, infos, strict=True):
                # A band spans many blocks: GDAL decodes a compressed GeoTIFF's on its threads.
                decode = band_rows and threads > 1 and info.compression and info.driver == "GTiff"
                options = {"NUM_THREADS": str(threads)} if decode else {}
                self.datasets.append(open_raster(spec.path, **options))
        except BaseException:
            self.close()
            raise

    def read(self, task: WindowTask) -> list[np.ndarray]:
        """Read ``task.read`` from every input, followed by the per-dataset mask of each
        input that has one (see `split_arrays`); an input without one costs no mask read.

        Raises
        ------
        RasterReadError
            If GDAL fails to read (a truncated or corrupt file), naming the file and window.
        """
        pairs = list(enumerate(zip(self.datasets, self.infos, strict=True)))
        arrays = [self._read_one(i, src, info, task) for i, (src, info) in pairs]
        masks = [
            self._read_one(i, src, info, task, mask=True)
            for i, (src, info) in pairs
            if info.has_mask
        ]
        return arrays + masks

    def _read_one(
        self, index: int, src, info: InputInfo, task: WindowTask, mask: bool = False
    ) -> np.ndarray:
        read = task.read
        inner = read.intersection(Window(0, 0, src.width, src.height))
        if self.band_rows:
            data = self._from_bands((index, mask), src, info, task, inner)
        else:
            data = self._fetch(src, info, task, inner, mask)
        top = int(inner.row_off - read.row_off)
        left = int(inner.col_off - read.col_off)
        bottom = int(read.height) - int(inner.height) - top
        right = int(read.width) - int(inner.width) - left
        if top or left or bottom or right:
            data = self._pad(data, ((top, bottom), (left, right)), info, mask)
        return data[0] if mask else data

    def _from_bands(
        self, key: tuple[int, bool], src, info: InputInfo, task: WindowTask, inner: Window
    ) -> np.ndarray:
        """``inner`` cut from the bands held: a new array, which the kernel may keep or
        change. A band's columns are read as windows reach them, ``threads`` blocks wide
        at a time, so that reading keeps pace with the windows instead of stopping them
        for a whole band."""
        held = self._held.setdefault(key, [])
        start, stop = int(inner.row_off), int(inner.row_off + inner.height)
        if held and not held[0].first <= start <= held[-1].stop:
            held.clear()  # out of plan order (a resumed run skips the windows it has)
        # Rows above this row of tiles' halo are not asked for again in plan order.
        halo = int(task.window.row_off - task.read.row_off)
        low = max(0, min(start, int(task.tile.row_off) - halo))
        spare = self._spare.setdefault(key, {})
        while held and held[0].stop <= low:
            _keep(spare, held.pop(0).rows)
        if held and held[0].first < low:
            _keep(spare, held[0].rows)
            held[0] = held[0].below(low)
        row = held[-1].stop if held else start
        block_rows = info.block_shape[0]
        grid = band_grid(self.band_rows, block_rows)
        while row < stop:
            # To the end of the blocks the window reaches, in bands on the grid: each
            # block read once, whole, and a band dropped whole once passed.
            end = min((row // grid + 1) * grid, -(-stop // block_rows) * block_rows, src.height)
            shape = (1 if key[1] else info.count, end - row, src.width)
            rows = spare.pop(shape, None)
            if rows is None:
                spare.clear()  # none of this shape: let those go before taking more
                rows = np.empty(shape, np.uint8 if key[1] else info.dtype)
            held.append(_Band(row, rows))
            row = end
        cols = int(inner.col_off), int(inner.col_off + inner.width)
        step = self.threads * info.block_shape[1]
        for band in held:
            if band.first < stop and band.stop > start and band.filled < cols[1]:
                upto = min(src.width, -(-max(cols[1], band.filled + step) // step) * step)
                window = Window(band.filled, band.first, upto - band.filled, band.stop - band.first)
                part = band.rows[:, :, band.filled : upto]
                got = self._fetch(src, info, task, window, key[1], None if key[1] else part)
                if got is not part:
                    part[...] = got
                band.filled = upto
        pieces = [
            band.rows[
                :,
                max(start, band.first) - band.first : min(stop, band.stop) - band.first,
                cols[0] : cols[1],
            ]
            for band in held
            if band.first < stop and band.stop > start
        ]
        return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0].copy()

    def _fetch(
        self,
        src,
        info: InputInfo,
        task: WindowTask,
        window: Window,
        mask: bool,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``window`` of the input's bands (or its mask, as one band) from GDAL, into
        ``out`` if given (an array of that shape and type)."""
        try:
            if mask:
                masks = [src.read_masks(b, window=window) for b in info.mask_bands]
                return np.minimum.reduce(masks)[np.newaxis] if len(masks) > 1 else masks[0][None]
            return src.read(list(info.bands), window=window, out=out)
        except RasterioError as err:
            cause = (
                "the file may be truncated or corrupt"
                if is_local_path(src.name)
                else "the network read failed after GDAL's timeouts and retries (set by "
                "GDAL_HTTP_LOW_SPEED_TIME, GDAL_HTTP_TIMEOUT, GDAL_HTTP_MAX_RETRY)"
            )
            raise RasterReadError(
                f"reading {src.name} failed at window {describe_window(task)}: "
                f"{one_line(err)}; {cause}"
            ) from err

    def _pad(self, data: np.ndarray, pad, info: InputInfo, mask: bool) -> np.ndarray:
        """Fill past the raster's edge: edge pixels repeated, or nodata (a mask: invalid)."""
        if self.fill == "edge":
            return np.pad(data, ((0, 0), *pad), mode="edge")
        values = [0] if mask else [_fill_value(v, data.dtype) for v in info.band_nodata]
        return np.stack(
            [
                np.pad(band, pad, mode="constant", constant_values=value)
                for band, value in zip(data, values, strict=True)
            ]
        )

    def close(self) -> None:
        for dataset in self.datasets:
            dataset.close()
        self.datasets = []
        self._held = {}
        self._spare = {}
