"""Resume: the journal that lets an interrupted run finish without redoing its work, and the
interrupted run's partial output that a resumed run takes its journaled windows from.

Beside ``OUTPUT.partial`` the writer keeps ``OUTPUT.journal``: a first line with the job's
fingerprint, then one line per checkpoint, appended and fsynced after the partial GeoTIFF
was closed (so that its directory is on disk) with the tile windows written since the last
one and a checksum of each. A GeoTIFF killed before close has no valid directory for what
came after its last close; the journal claims only what was closed.

Resuming never patches the old partial in place: GDAL lays out a compressed file
differently if it is closed and reopened at other points. A resumed run writes a new
partial from the start, in plan order, taking each journaled window from the old partial
(after checking its checksum) instead of computing it; so the output is byte-identical
to an uninterrupted run, and only windows that were never journaled are computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpraster.errors import ResumeError, UnfinishedRunError
from mpraster.gdal_errors import GDAL_RAISES, gdal_reason, one_line
from mpraster.inputs import is_local_path, open_raster
from mpraster.tiles import EncodedTile, TileTable

# 2: a placed output's tiles (`mpraster.tiles`) are journaled by their stored bytes.
FORMAT = 2
# Checkpoint about every this many bytes of output (a whole number of tile windows).
CHECKPOINT_BYTES = 64 << 20


def partial_path(target: str) -> str:
    """Where the output is built before it is renamed into place (what ``--resume`` finds)."""
    return f"{target}.partial"


def journal_path(target: str) -> str:
    return f"{target}.journal"


def checksum(array: np.ndarray, mask: np.ndarray | None = None) -> int:
    """A fast checksum of a window's pixels and its mask, if it has one (CRC-32; enough
    to catch a torn write)."""
    crc = zlib.crc32(np.ascontiguousarray(array).view(np.uint8))
    if mask is not None:
        crc = zlib.crc32(np.ascontiguousarray(mask).view(np.uint8), crc)
    return crc


def fingerprint(description: Mapping[str, Any]) -> str:
    """A stable digest of what makes two runs the same job."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def input_identity(path: str) -> dict[str, Any]:
    """What identifies an input's content cheaply: path, size and modification time.

    A name that is not a local file (a URL, ``/vsi...``, a subdataset) is identified by the
    name alone.
    """
    if not is_local_path(path):
        return {"path": path}
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass
class JournalState:
    """What a journal on disk says: the job's fingerprint and the checksums of done tiles
    (of each tile window's pixels and mask, or for a placed output, of its stored bytes),
    in the journal ``format`` this version writes, or another."""

    fingerprint: str
    tiles: int
    done: list[int] = field(default_factory=list)  # checksum per tile window, in plan order
    format: Any = FORMAT


def read_journal(path: str) -> JournalState | None:
    """The journal at ``path``, or None if there is none. A torn last line is ignored."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    try:
        header = json.loads(lines[0])
        state = JournalState(header["fingerprint"], header["tiles"], format=header.get("format"))
    except (IndexError, ValueError, KeyError) as err:
        raise ResumeError(
            f"the journal {path} is unreadable; start again with --overwrite"
        ) from err
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except ValueError:
            break  # killed while appending: what came before stands
        if record.get("start") != len(state.done):
            break
        state.done.extend(record["checksums"])
    return state


class Journal:
    """Appends checkpoints for one run; every line is flushed and fsynced."""

    def __init__(self, path: str, job_fingerprint: str, tiles: int) -> None:
        self.path = path
        self._fh = open(path, "w")  # kept open for the whole run
        self._write({"format": FORMAT, "fingerprint": job_fingerprint, "tiles": tiles})
        self.journaled = 0

    def checkpoint(self, checksums: Sequence[int]) -> None:
        """Record ``checksums`` as the next tile windows made durable."""
        if checksums:
            self._write({"start": self.journaled, "checksums": list(checksums)})
            self.journaled += len(checksums)

    def _write(self, record: dict) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def remove(self) -> None:
        # After a failed append (a full disk) closing flushes the rest and fails again;
        # the journal goes anyway.
        with contextlib.suppress(OSError):
            self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def previous_run(
    output: str, job_fingerprint: str, resume: bool, overwrite: bool
) -> JournalState | None:
    """The journal of an interrupted run of this output that ``resume`` may continue.

    Raises
    ------
    UnfinishedRunError
        If one exists and neither ``resume`` nor ``overwrite`` says what to do with it.
    ResumeError
        If ``resume`` is asked for an interrupted run of a different job.
    """
    state = read_journal(journal_path(output))
    if state is None or not os.path.exists(partial_path(output)):
        return None
    if not resume:
        if overwrite:
            return None
        raise UnfinishedRunError(
            f"an interrupted run of {output} exists ({len(state.done)} of {state.tiles} tile "
            "windows done); pass --resume to finish it, or --overwrite to start again"
        )
    if state.format != FORMAT:
        raise ResumeError(
            f"the interrupted run of {output} was written by another version of mpraster; "
            "pass --overwrite instead of --resume to start it again"
        )
    if state.fingerprint != job_fingerprint:
        raise ResumeError(
            f"the interrupted run of {output} was a different job (its inputs, kernel, "
            "parameters or output options differ); run that job with --resume, or pass "
            "--overwrite instead of --resume to start this one afresh"
        )
    return state


def check_previous_run_unchanged(
    output: str, resume_from: JournalState | None, overwrite: bool
) -> None:
    """Under the output's lock: the interrupted run the plan found (or not) is still so.

    Another run may have finished, continued or left one between planning and executing
    (a library caller may plan long before it executes).

    Raises
    ------
    ResumeError
        If the run to resume is gone or has changed.
    UnfinishedRunError
        If an interrupted run appeared that neither ``resume`` nor ``overwrite`` covers.
    """
    found = None
    if os.path.exists(partial_path(output)):
        found = read_journal(journal_path(output))
    if found == resume_from or (resume_from is None and overwrite):
        return
    if resume_from is None:
        raise UnfinishedRunError(
            f"an interrupted run of {output} was left after this run was planned; "
            "run the command again (with --resume to finish it)"
        )
    raise ResumeError(
        f"the interrupted run of {output} changed after this run was planned (another "
        "run finished or continued it); run the command again"
    )


class ResumeSource:
    """An interrupted run's partial output: journaled tile windows are taken from it.

    `ResumeSource.take` moves the partial aside (the resumed run writes a new one in its
    place) and opens it; `close` removes it once it is of no more use, or puts it back if
    the old run is still the one to resume (its journal untouched: the new run failed
    before it began its own).

    With ``grid`` (tiles across and down), the output's tiles are placed as stored
    (`mpraster.tiles`): a tile window is then checked by its stored bytes, as journaled,
    and handed over as they are (with each of its strips): nothing is decoded, and the
    writer does not encode it again. A lossy codec's tiles resume so too.
    """

    def __init__(
        self,
        output: str,
        path: str,
        done: Sequence[int],
        tiles: Sequence[Any],
        with_mask: bool = False,
        grid: tuple[int, int] | None = None,
    ):
        self.output = output
        self.path = path
        self.done = list(done)
        self.index = {(t.row_off, t.col_off): i for i, t in enumerate(tiles)}
        self.with_mask = with_mask
        self.dataset = open_raster(path)
        self._tile: tuple[int, np.ndarray | EncodedTile, np.ndarray | None] | None = None
        self._stored: tuple[Any, TileTable] | None = None
        self._grid = grid
        if grid is not None:
            fh = open(path, "rb")
            try:
                self._stored = (fh, TileTable.read(fh))
            except (ValueError, struct.error) as err:
                fh.close()
                self.dataset.close()
                raise ResumeError(
                    f"{path} is not a tiled GeoTIFF ({err}); start again with --overwrite"
                ) from err

    @classmethod
    def take(
        cls,
        output: str,
        state: JournalState,
        tiles: Sequence[Any],
        with_mask: bool = False,
        grid: tuple[int, int] | None = None,
    ) -> ResumeSource:
        """Move ``output``'s partial aside and open it; ``state`` is its journal;
        ``with_mask``: the output has a mask, journaled with the pixels; ``grid``: see
        the class."""
        path = partial_path(output) + ".resume"
        os.replace(partial_path(output), path)
        try:
            return cls(output, path, state.done, tiles, with_mask, grid)
        except BaseException:
            os.replace(path, partial_path(output))
            raise

    def has(self, task: Any) -> bool:
        return self.index[(task.tile.row_off, task.tile.col_off)] < len(self.done)

    def checksum(self, task: Any) -> int | None:
        """The journal's checksum of a whole tile window's task (None for a part)."""
        if task.parts != 1:
            return None
        return self.done[self.index[(task.tile.row_off, task.tile.col_off)]]

    def read(self, task: Any) -> tuple[np.ndarray | EncodedTile, np.ndarray | None]:
        """The task's rows of its tile and of its mask (None without one), read once per
        tile and checked against the journal; a placed tile's stored bytes (see the class).

        Raises
        ------
        ResumeError
            If the partial's tile does not match its journal (damaged or changed).
        """
        number = self.index[(task.tile.row_off, task.tile.col_off)]
        if self._tile is None or self._tile[0] != number:
            damaged = f"tile window {number} of {self.path} does not match its journal"
            if self._stored is not None:
                self._tile = (number, self._stored_tile(task, number, damaged), None)
            else:
                self._tile = (number, *self._pixels(task, number, damaged))
        _, data, mask = self._tile
        start, stop = task.rows_in_tile
        if isinstance(data, EncodedTile):
            # Handed over with each of its strips (written once, with the last); each
            # counts its own rows' bytes.
            share = (stop - start) / int(task.tile.height)
            return dataclasses.replace(data, nbytes=round(data.nbytes * share)), None
        return data[:, start:stop], None if mask is None else mask[start:stop]

    def _pixels(self, task: Any, number: int, damaged: str) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            data = self.dataset.read(window=task.tile)
            mask = self.dataset.read_masks(1, window=task.tile) if self.with_mask else None
        except GDAL_RAISES as err:
            # Damaged compressed bytes (DEFLATE, LZW) may fail to decode rather than
            # decode to other pixels: the same damage, not a crash. libtiff's LZW
            # decoder starts its words with the file's name.
            reason = gdal_reason(one_line(err)).removeprefix(f"{self.path}:").strip()
            raise ResumeError(
                f"{damaged} (it cannot be decoded: {reason}); start again with --overwrite"
            ) from err
        if checksum(data, mask) != self.done[number]:
            raise ResumeError(
                f"{damaged} (the file was damaged or changed); start again with --overwrite"
            )
        return data, mask

    def _stored_tile(self, task: Any, number: int, damaged: str) -> EncodedTile:
        fh, table = self._stored
        # The tile's place in the output's grid, from its window: ``number`` counts the
        # job's tile windows, which for a shard start at its first tile, not at (0, 0).
        rows, cols = self.dataset.block_shapes[0]
        row, col = int(task.tile.row_off) // rows, int(task.tile.col_off) // cols
        chunks = table.read_chunks(fh, table.numbers(row, col, *self._grid))
        if chunks is None:
            raise ResumeError(f"{damaged} (it is not in the file); start again with --overwrite")
        pixels = int(task.tile.height) * int(task.tile.width) * self.dataset.count
        tile = EncodedTile(chunks, pixels * np.dtype(self.dataset.dtypes[0]).itemsize)
        if tile.checksum() != self.done[number]:
            raise ResumeError(
                f"{damaged} (the file was damaged or changed); start again with --overwrite"
            )
        return tile

    def close(self) -> None:
        """Close it, and keep it only where it is still what a journal describes."""
        self.dataset.close()
        if self._stored is not None:
            self._stored[0].close()
        state = read_journal(journal_path(self.output))
        if (
            state is not None
            and state.done == self.done
            and not os.path.exists(partial_path(self.output))
        ):
            os.replace(self.path, partial_path(self.output))
        else:
            # Finished, or superseded by the new run's own partial and journal (which hold
            # every window taken from here), or its journal is gone with a failed run.
            os.unlink(self.path)
