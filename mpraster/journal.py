"""The journal that lets an interrupted run finish without redoing its work.

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
import hashlib
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpraster.errors import ResumeError
from mpraster.io import is_local_path

FORMAT = 1
# Checkpoint about every this many bytes of output (a whole number of tile windows).
CHECKPOINT_BYTES = 64 << 20


def journal_path(target: str) -> str:
    return f"{target}.journal"


def checksum(array: np.ndarray) -> int:
    """A fast checksum of a window's pixels (CRC-32; enough to catch a torn write)."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8))


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
    """What a journal on disk says: the job's fingerprint and the checksums of done tiles."""

    fingerprint: str
    tiles: int
    done: list[int] = field(default_factory=list)  # checksum per tile window, in plan order


def read_journal(path: str) -> JournalState | None:
    """The journal at ``path``, or None if there is none. A torn last line is ignored."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    try:
        header = json.loads(lines[0])
        state = JournalState(header["fingerprint"], header["tiles"])
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
