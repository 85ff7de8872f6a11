"""Tiles encoded where they are computed, and placed in the output as they are.

A single writer that compresses every tile bounds a run at what one thread of GDAL's
encoder absorbs (DEFLATE: some 20 MPix/s of float32): on a node of 64 cores, most kernels
would wait for it. Here the workers encode their own tiles, with GDAL's own encoder (a
tiled GeoTIFF of one tile in memory, the output's creation options, so every tile is the
bytes GDAL's writer would have made of it), and the writer only appends the bytes to the
output and records where they went: its work per tile is a write of the compressed bytes.

The output file is made by GDAL first, without tiles (``SPARSE_OK``): its directory, the
georeferencing, metadata and tags are GDAL's. `TilePlacer` then appends the tiles in plan
order and keeps the directory's tile offsets and byte counts up to date; a checkpoint
writes them and syncs the file, so a run killed at any moment leaves a valid GeoTIFF
whose journaled tiles are in place. The layout depends only on the plan: the file is the
same bytes whichever mode, ``--io`` and ``-j`` made it.

Not every output is made this way (`placement_problem`): a COG is laid out by GDAL's
COG driver, an internal mask has tiles of its own, JPEG, WEBP and JPEG-XL tiles share
tables kept in the directory, and compressed tiles smaller than `MIN_TILE_BYTES` cost
more to encode apart than it saves. Those outputs are written by GDAL tile by tile,
compressing on its own threads.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from affine import Affine

from mpraster.errors import OptionError

# Codecs whose tiles stand alone: a tile encoded in a file of its own is the same bytes
# in the output.
PLACEABLE_CODECS = frozenset(
    {"NONE", "DEFLATE", "LZW", "ZSTD", "LZMA", "PACKBITS", "LERC", "LERC_DEFLATE", "LERC_ZSTD"}
)
# Profile keys that are about the whole file, not how one tile is encoded.
_FILE_KEYS = frozenset(
    {
        "driver",
        "width",
        "height",
        "crs",
        "transform",
        "gcps",
        "rpcs",
        "num_threads",
        "sparse_ok",
        "bigtiff",
        "tfw",
        "profile",
        "geotiff_version",
        "copy_src_overviews",
    }
)
# A tile encoded in a file of its own costs some 0.25 ms more than GDAL's writer takes to
# encode it in the output (BENCHMARKS.md, "Scaling past one node"): below this size
# (a 512 x 512 tile of two-byte pixels) that is more than a twentieth of the encoding,
# and a run is faster with GDAL's writer compressing on its threads. Uncompressed tiles
# are laid out without GDAL, at no such cost. The environment variable
# MPRASTER_MIN_PLACED_TILE_BYTES changes it (0: place every tile).
MIN_TILE_BYTES = 512 * 1024
MIN_TILE_BYTES_VARIABLE = "MPRASTER_MIN_PLACED_TILE_BYTES"
_NORTH_UP = Affine(1.0, 0.0, 1.0, 0.0, -1.0, 1.0)
_TILE_OFFSETS = 324
_TILE_BYTE_COUNTS = 325
# TIFF's SHORT, LONG and LONG8, as struct codes.
_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}
_TYPE_OF_CODE = {code: kind for kind, code in _TIFF_TYPES.items()}


def placement_problem(profile: Mapping[str, Any], cog: bool, mask: bool) -> str | None:
    """Why the output of ``profile`` is not made of tiles encoded apart (None if it is).

    Also for tiles too small to pay for it (`MIN_TILE_BYTES`). The answer depends on the
    profile alone, never on the mode or ``-j``: the two ways lay the file out differently.
    """
    if cog:
        return "a COG is laid out by GDAL's COG driver"
    if mask:
        return "an internal mask has tiles of its own"
    if str(profile.get("driver", "GTiff")).upper() != "GTIFF":
        return "the output is not a GeoTIFF"
    if str(profile.get("tiled", "")).upper() not in ("TRUE", "YES", "1"):
        return "the output is not tiled"
    codec = str(profile.get("compress") or "NONE").upper()
    if codec not in PLACEABLE_CODECS:
        return f"{codec} tiles share tables kept in the file's directory"
    size = profile["blockxsize"] * profile["blockysize"] * profile["count"]
    size *= np.dtype(profile["dtype"]).itemsize
    if codec != "NONE" and size < min_tile_bytes():
        return (
            f"tiles of {size // 1024} KiB: encoding each in a file of its own costs more than "
            "spreading the encoding saves"
        )
    return None


def tile_grid(profile: Mapping[str, Any]) -> tuple[int, int]:
    """The tiles across and down of ``profile``'s output."""
    return (
        -(-profile["width"] // profile["blockxsize"]),
        -(-profile["height"] // profile["blockysize"]),
    )


def min_tile_bytes() -> int:
    """The smallest compressed tile placed: MIN_TILE_BYTES, or the environment's.

    Raises
    ------
    OptionError
        If the environment's is not a whole number of bytes.
    """
    value = os.environ.get(MIN_TILE_BYTES_VARIABLE)
    if value is None:
        return MIN_TILE_BYTES
    try:
        return max(0, int(value))
    except ValueError:
        raise OptionError(
            f"{MIN_TILE_BYTES_VARIABLE} is a number of bytes, got '{value}'"
        ) from None


def tile_options(profile: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What encodes one tile of ``profile``'s output: its type, bands, nodata and creation
    options (small, picklable, comparable: a worker gets it in its spec)."""
    return tuple(sorted((k, v) for k, v in profile.items() if k not in _FILE_KEYS))


def tiles_described(profile: Mapping[str, Any]) -> list:
    """`tile_options` as JSON gives them back (a shard's plan keeps them for merge)."""
    return json.loads(json.dumps(tile_options(profile), default=str))


@dataclass(frozen=True)
class EncodedTile:
    """A tile window's result as the output stores it: one chunk per TIFF tile (one, or
    one per band when the output is interleaved by band); ``nbytes``, the pixels' size."""

    chunks: tuple[bytes, ...]
    nbytes: int

    def checksum(self) -> int:
        """CRC-32 of the stored bytes, in order: what the journal records of a placed tile
        (a lossy codec's tile decodes to other pixels than the kernel's, its bytes do not
        change)."""
        crc = 0
        for chunk in self.chunks:
            crc = zlib.crc32(chunk, crc)
        return crc


class TileEncoder:
    """Encodes tile windows as GDAL's GeoTIFF writer would, given `tile_options`.

    Each tile is written to a GeoTIFF of its own in memory (GDAL releases the GIL while it
    compresses), and its bytes are taken from there. An uncompressed tile is laid out
    here instead, as GDAL lays it out (the window in the tile's top left corner, zeros
    past the raster's edge; pixels or bands interleaved; the file's byte order): a file
    in memory costs some 0.2 ms a tile, more than copying the pixels.
    """

    def __init__(self, options: tuple[tuple[str, Any], ...]) -> None:
        self.options = dict(options)
        self._raw = _raw_layout(self.options)

    def encode(self, array: np.ndarray) -> EncodedTile:
        """``array`` (bands, rows, cols), at most one tile in size, as the output stores it.

        Raises
        ------
        rasterio.errors.RasterioError
            If GDAL's encoder refuses the data.
        """
        if self._raw is not None:
            return self._raw.lay_out(array)
        from rasterio.env import env_ctx_if_needed
        from rasterio.io import MemoryFile

        rows, cols = array.shape[1:]
        # One GDAL environment for the whole tile, where rasterio would make one for each
        # call in a thread that has none.
        with env_ctx_if_needed(), MemoryFile() as memory:
            # A transform that changes no tile, so that rasterio has nothing to warn about
            # (and no warnings filter, which is not thread-safe, to set).
            with memory.open(
                driver="GTiff", height=rows, width=cols, transform=_NORTH_UP, **self.options
            ) as dst:
                dst.write(array)
            chunks = TileTable.parse(memory.getbuffer()).chunks()
        return EncodedTile(chunks, array.nbytes)


@dataclass(frozen=True)
class _RawLayout:
    """How GDAL stores an uncompressed tile: its size, byte order, interleaving, and the
    nodata value that fills a tile with no other pixel."""

    rows: int
    cols: int
    byte_order: str  # numpy's: "<" or ">"
    by_band: bool
    nodata: float | None

    def lay_out(self, array: np.ndarray) -> EncodedTile:
        bands, rows, cols = array.shape
        dtype = array.dtype.newbyteorder(self.byte_order)
        if (rows, cols) == (self.rows, self.cols) and (bands == 1 or self.by_band):
            # A whole tile, as it is stored: one copy (a byte swap, if need be), no padding.
            stored = array.astype(dtype, copy=False)
            return EncodedTile(tuple(band.tobytes() for band in stored), array.nbytes)
        tile = np.zeros((bands, self.rows, self.cols), dtype=dtype)
        tile[:, :rows, :cols] = array
        if self.nodata is not None and (rows, cols) != (self.rows, self.cols):
            # GDAL writes no block whose pixels are all nodata, and fills it with nodata
            # when it closes the file, past the raster's edge too (a block: the tile, or
            # one band of it when the file is interleaved by band).
            for block in tile if self.by_band else [tile]:
                part = block[..., :rows, :cols]
                if np.isnan(self.nodata):
                    empty = bool(np.isnan(part).all())
                else:
                    empty = bool((part == self.nodata).all())
                if empty:
                    block[...] = self.nodata
        if self.by_band:
            chunks = tuple(band.tobytes() for band in tile)
        else:
            chunks = (np.ascontiguousarray(tile.transpose(1, 2, 0)).tobytes(),)
        return EncodedTile(chunks, array.nbytes)


def _raw_layout(options: Mapping[str, Any]) -> _RawLayout | None:
    """The layout of an uncompressed tile of ``options``, or None if GDAL must encode it
    (a codec, or NBITS, which packs bits)."""
    if str(options.get("compress") or "NONE").upper() != "NONE" or "nbits" in options:
        return None
    order = str(options.get("endianness") or "NATIVE").upper()
    big = order == "BIG" or (order == "NATIVE" and sys.byteorder == "big")
    by_band = str(options.get("interleave") or "PIXEL").upper() == "BAND"
    nodata = options.get("nodata")
    return _RawLayout(
        options["blockysize"],
        options["blockxsize"],
        ">" if big else "<",
        by_band,
        None if nodata is None else float(nodata),
    )


@dataclass
class TileTable:
    """Where a GeoTIFF's first directory keeps its tile offsets and byte counts.

    ``at``, per table (offsets, then byte counts): the file position of its values, and of
    its directory entry; ``codes``: struct's code of one value ("H", "I" or "Q").
    """

    order: str  # struct's byte order: "<" or ">"
    big: bool  # BigTIFF
    at: list[int]
    entries: list[int]
    codes: list[str]
    tiles: int
    offsets: list[int]
    counts: list[int]
    buffer: Any = None  # the file's bytes, when parsed from memory

    @property
    def inline(self) -> int:
        """How many bytes of values a directory entry holds itself."""
        return 8 if self.big else 4

    @classmethod
    def parse(cls, buffer: Any) -> TileTable:
        """The table of a whole GeoTIFF in memory."""
        table = cls.read(_BufferFile(buffer))
        table.buffer = buffer
        return table

    @classmethod
    def read(cls, fh: BinaryIO) -> TileTable:
        """The table of the GeoTIFF open in ``fh``.

        Raises
        ------
        ValueError
            If it is not a tiled TIFF whose tables this reads.
        """
        fh.seek(0)
        head = fh.read(16)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8:
            raise ValueError("not a TIFF file")
        (magic,) = struct.unpack_from(order + "H", head, 2)
        big = magic == 43
        if big:
            (first,) = struct.unpack_from(order + "Q", head, 8)
            count_code, entry, value_at, inline = "Q", 20, 12, 8
        elif magic == 42:
            (first,) = struct.unpack_from(order + "I", head, 4)
            count_code, entry, value_at, inline = "H", 12, 8, 4
        else:
            raise ValueError("not a TIFF file")
        pointer = order + ("Q" if big else "I")
        fh.seek(first)
        (entries,) = struct.unpack(order + count_code, fh.read(struct.calcsize(count_code)))
        directory = fh.read(entries * entry)
        found = {}
        for number in range(entries):
            at = number * entry
            tag, kind = struct.unpack_from(order + "HH", directory, at)
            if tag not in (_TILE_OFFSETS, _TILE_BYTE_COUNTS):
                continue
            (count,) = struct.unpack_from(pointer, directory, at + 4)
            code = _TIFF_TYPES.get(kind)
            if code is None:
                raise ValueError(f"tile table of TIFF type {kind}")
            size = struct.calcsize(code) * count
            entry_at = first + struct.calcsize(count_code) + at
            where = entry_at + value_at
            if size > inline:
                (where,) = struct.unpack_from(pointer, directory, at + value_at)
            fh.seek(where)
            values = list(struct.unpack(order + code * count, fh.read(size)))
            found[tag] = (where, entry_at, code, count, values)
        if _TILE_OFFSETS not in found or _TILE_BYTE_COUNTS not in found:
            raise ValueError("not a tiled TIFF")
        tables = (found[_TILE_OFFSETS], found[_TILE_BYTE_COUNTS])
        return cls(
            order,
            big,
            [t[0] for t in tables],
            [t[1] for t in tables],
            [t[2] for t in tables],
            tables[0][3],
            tables[0][4],
            tables[1][4],
        )

    def numbers(self, row: int, col: int, across: int, down: int) -> list[int]:
        """The TIFF tile numbers of the tile window at ``row``, ``col`` of a grid
        ``across`` x ``down``: one per plane (a file interleaved by band has one per band)."""
        per_plane = across * down
        return [plane * per_plane + row * across + col for plane in range(self.tiles // per_plane)]

    def read_chunks(self, fh: BinaryIO, numbers: list[int]) -> tuple[bytes, ...] | None:
        """The stored bytes of tiles ``numbers`` from ``fh``; None if one is not in the file."""
        chunks = []
        for number in numbers:
            offset, count = self.offsets[number], self.counts[number]
            if not offset or not count:
                return None
            fh.seek(offset)
            chunk = fh.read(count)
            if len(chunk) != count:
                return None
            chunks.append(chunk)
        return tuple(chunks)

    def chunks(self) -> tuple[bytes, ...]:
        """Every tile's bytes, from the parsed buffer."""
        return tuple(
            bytes(self.buffer[offset : offset + count])
            for offset, count in zip(self.offsets, self.counts, strict=True)
        )

    def packed(self) -> list[bytes]:
        """The offsets and byte counts as the file stores them."""
        return [
            struct.pack(self.order + code * self.tiles, *values)
            for code, values in zip(self.codes, (self.offsets, self.counts), strict=True)
        ]


class _BufferFile:
    """Enough of a binary file over a buffer for `TileTable.read`."""

    def __init__(self, buffer: Any) -> None:
        self._view = memoryview(buffer)
        self._at = 0

    def seek(self, at: int) -> None:
        self._at = at

    def read(self, size: int) -> bytes:
        data = bytes(self._view[self._at : self._at + size])
        self._at += len(data)
        return data


class TilePlacer:
    """Appends encoded tiles to a tiled GeoTIFF that GDAL made without them, and keeps its
    directory's tile offsets and byte counts.

    ``tiles_across``, ``tiles_down``: the output's tile grid. A tile window has one chunk
    per plane (``planes``: the band count when the file is interleaved by band, else 1).

    GDAL sized the tables for a file without tiles (byte counts of zero fit in 16 bits):
    they are first moved to the end of the file, at full width (32 bits, or 64 in a
    BigTIFF), and the directory pointed at them; the tiles follow.

    Raises
    ------
    ValueError
        If the file is not a tiled TIFF of that grid.
    OSError
        If moving the tables fails (``filename``: the output's).
    """

    def __init__(self, path: str, tiles_across: int, tiles_down: int) -> None:
        self.path = path
        self._fh = open(path, "r+b")
        try:
            self.table = TileTable.read(self._fh)
            self._per_plane = tiles_across * tiles_down
            self._across = tiles_across
            self.planes, extra = divmod(self.table.tiles, self._per_plane)
            if extra or not self.planes:
                raise ValueError(
                    f"{path} has {self.table.tiles} tiles, not {self._per_plane} a plane"
                )
            self._end = os.fstat(self._fh.fileno()).st_size
            self._widen()
        except BaseException:
            self._fh.close()
            raise
        self._limit = (1 << 32) - 1 if not self.table.big else (1 << 63) - 1

    def _widen(self) -> None:
        """Move both tables to the end of the file at full width (see the class)."""
        table = self.table
        code = "Q" if table.big else "I"
        pointer = table.order + code
        for number, entry_at in enumerate(table.entries):
            size = struct.calcsize(code) * table.tiles
            # The entry's type, count and value (or pointer to the values), in one write.
            head = struct.pack(table.order + "H", _TYPE_OF_CODE[code])
            head += struct.pack(pointer, table.tiles)
            if size <= table.inline:  # the values stay in the entry itself
                where = entry_at + (12 if table.big else 8)
                head += bytes(table.inline)
            else:
                where = self._end + (-self._end % 8)
                self._write(bytes(size), where)
                self._end = where + size
                head += struct.pack(pointer, where)
            self._write(head, entry_at + 2)
            table.at[number] = where
            table.codes[number] = code

    def place(self, row: int, col: int, tile: EncodedTile) -> None:
        """Append the tile window at tile ``row``, ``col``.

        Raises
        ------
        OSError
            If writing fails (a full disk), or the file would outgrow classic TIFF's
            4 GiB (errno EFBIG); its ``filename`` is the output's.
        """
        if len(tile.chunks) != self.planes:
            raise ValueError(f"{len(tile.chunks)} chunks for a tile of {self.planes} planes")
        for plane, chunk in enumerate(tile.chunks):
            if self._end + len(chunk) > self._limit:
                raise OSError(
                    errno.EFBIG,
                    "it outgrows a classic TIFF's 4 GiB; pass --co BIGTIFF=YES",
                    self.path,
                )
            self._write(chunk, self._end)
            number = plane * self._per_plane + row * self._across + col
            self.table.offsets[number] = self._end
            self.table.counts[number] = len(chunk)
            self._end += len(chunk)

    def flush(self) -> None:
        """Write the tile offsets and byte counts, and put the file on disk.

        Raises
        ------
        OSError
            If writing or syncing fails; its ``filename`` is the output's.
        """
        for data, at in zip(self.table.packed(), self.table.at, strict=True):
            self._write(data, at)
        try:
            os.fsync(self._fh.fileno())
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from err

    def _write(self, data: bytes, at: int) -> None:
        try:
            written = os.pwrite(self._fh.fileno(), data, at)
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from err
        if written != len(data):  # a short write: the disk filled up within it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)

    def close(self) -> None:
        self._fh.close()
