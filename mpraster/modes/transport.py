"""Shared-memory slots that carry windows to and from process workers.

Pickling a window through a pipe copies it four times (pickle, pipe, pipe, unpickle) and
costs the main process — the one that also reads and writes — most of that time. Instead
the main process owns a few shared-memory slots, one per window in flight: it puts the
window it read into a slot, the worker computes from the slot and puts its result back,
and the writer writes straight from the slot before handing it out again.

A run killed outright (SIGKILL, the OOM killer) cannot unlink its blocks, and its resource
tracker may die with it. So each block's name says which process made it
(``mpraster-PID-START-TOKEN``; START, the process's start time, tells a reused pid apart),
its creator holds a lock on it for as long as it lives, and the next run unlinks the
blocks whose creator is gone.
"""

from __future__ import annotations

import math
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory, util

import numpy as np

_ALIGN = 64
# Where Linux keeps POSIX shared memory, a file a block: listing it is the only way to find
# a dead run's blocks. Where it is missing (macOS), blocks are neither locked nor cleaned
# up, and their names stay within macOS's limit of 31 characters.
SHM_DIR = "/dev/shm"
_PREFIX = "mpraster"
# A block younger than this is never taken for a dead run's: it may be one whose creator
# has not locked it yet (see `remove_dead_blocks`).
_NEW_BLOCK_SECONDS = 10.0


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class Slot:
    """Where one window's arrays live: a shared-memory block and their layout in it."""

    name: str
    index: int
    inputs: tuple[tuple[int, tuple[int, ...], str], ...]
    output_offset: int


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot); None if it is not alive.

    None too where there is no ``/proc``. A zombie counts as gone: its files are closed.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name, in parentheses, may hold anything: split after it.
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else fields[19].decode()


def block_creator(name: str) -> tuple[int, str] | None:
    """The pid and start time of the process that created block ``name``, if mpraster did."""
    parts = name.split("-")
    if len(parts) != 4 or parts[0] != _PREFIX or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return int(parts[1]), parts[2]


def _create_block(size: int) -> shared_memory.SharedMemory:
    """A new block of ``size`` bytes, named after this process."""
    creator = f"{_PREFIX}-{os.getpid()}-{process_start(os.getpid()) or 0}"
    while True:
        name = f"{creator}-{secrets.token_hex(4)}"
        try:
            return shared_memory.SharedMemory(name=name, create=True, size=size)
        except FileExistsError:
            continue


def _lock(name: str) -> int | None:
    """Lock block ``name`` (shared) for as long as this process lives; the lock's fd.

    The kernel drops the lock when the process dies, however it dies: a block nobody locks
    has no live creator, even one whose pid this process cannot see (a process in another
    pid namespace that shares ``/dev/shm``, as a container run with ``--ipc=host``).
    """
    import fcntl  # POSIX only, as SHM_DIR

    try:
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # not kept there: the block's pid and start time still protect it
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def remove_dead_blocks() -> list[str]:
    """Unlink the blocks this user's dead runs left; returns their names.

    A block is kept while its creator's pid is alive with the start time in its name, while
    anyone locks it (see `_lock`), and in its first seconds (between creating a block and
    locking it, its creator may be one this process cannot see). Does nothing where there
    is no ``/proc`` to tell.
    """
    import fcntl

    if process_start(os.getpid()) is None:
        return []
    try:
        entries = list(os.scandir(SHM_DIR))
    except OSError:
        return []
    removed = []
    for entry in entries:
        creator = block_creator(entry.name)
        if creator is None or process_start(creator[0]) == creator[1]:
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
            if stat.st_uid != os.getuid() or stat.st_mtime > time.time() - _NEW_BLOCK_SECONDS:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
        except OSError:
            continue  # locked, so its creator lives; or another run removed it first
        finally:
            os.close(fd)
        removed.append(entry.name)
    return removed


class SlotPool:
    """The main process's slots: created at the start of a run, unlinked at its end.

    A pool first removes the blocks dead runs left (see `remove_dead_blocks`).
    """

    def __init__(self, count: int, input_bytes: int, output_bytes: int) -> None:
        self.output_offset = _aligned(input_bytes)
        size = max(self.output_offset + output_bytes, 1)
        self._blocks: list[shared_memory.SharedMemory] = []
        self._locks: list[int | None] = []
        listed = os.path.isdir(SHM_DIR)
        if listed:
            remove_dead_blocks()
        try:
            for _ in range(count):
                self._blocks.append(_create_block(size))
                if listed:
                    self._locks.append(_lock(self._blocks[-1].name))
        except BaseException:
            self.close()
            raise
        self._free = list(range(count))

    def acquire(self, arrays: Sequence[np.ndarray] = ()) -> Slot:
        """Take a free slot, copying ``arrays`` (a window's inputs) into it."""
        index = self._free.pop()
        block = self._blocks[index]
        layout, offset = [], 0
        for array in arrays:
            view = np.ndarray(array.shape, array.dtype, buffer=block.buf, offset=offset)
            view[...] = array
            layout.append((offset, array.shape, array.dtype.str))
            offset = _aligned(offset + array.nbytes)
        return Slot(block.name, index, tuple(layout), self.output_offset)

    def results(
        self, slot: Slot, shape: tuple[int, ...], layout: Sequence[tuple[int, np.dtype, bool]]
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The worker's results in ``slot`` (see `put_results`), valid until the slot is
        released: per output of ``layout`` (bands, dtype, whether it has a mask), its array
        of ``shape`` (rows, cols) and its mask or None."""
        block = self._blocks[slot.index]
        found = []
        offset = slot.output_offset
        for bands, dtype, with_mask in layout:
            data = np.ndarray((bands, *shape), dtype, buffer=block.buf, offset=offset)
            offset = _aligned(offset + data.nbytes)
            mask = None
            if with_mask:
                mask = np.ndarray(shape, np.uint8, buffer=block.buf, offset=offset)
                offset = _aligned(offset + mask.nbytes)
            found.append((data, mask))
        return found

    def release(self, slot: Slot) -> None:
        self._free.append(slot.index)

    def close(self) -> None:
        """Unlink every block (after the workers have stopped)."""
        for block in self._blocks:
            block.close()
            block.unlink()
        self._blocks = []
        for lock in self._locks:
            if lock is not None:
                os.close(lock)
        self._locks = []


# A worker's attached blocks, by name: attaching costs a system call and a mapping, so each
# block is attached once per worker and reused for every window that comes through it.
_attached: dict[str, shared_memory.SharedMemory] = {}
# Blocks `detach_all` could not close yet: a kernel still holds a view of them.
_still_viewed: list[shared_memory.SharedMemory] = []
# The process that registered `detach_all` to run at its exit.
_detaches_at_exit: int | None = None


def detach_all() -> None:
    """Close the blocks this process attached; a worker does so when it exits.

    A block that an array still views is closed by a later call, or unmapped when the
    process ends.
    """
    global _still_viewed
    blocks = [*_still_viewed, *_attached.values()]
    _attached.clear()
    _still_viewed = []
    for block in blocks:
        try:
            block.close()
        except BufferError:
            _still_viewed.append(block)


def _attach(name: str) -> shared_memory.SharedMemory:
    global _detaches_at_exit
    block = _attached.get(name)
    if block is None:
        if _detaches_at_exit != os.getpid():
            # Pool workers end through multiprocessing's exit handlers, not atexit's.
            util.Finalize(None, detach_all, exitpriority=0)
            _detaches_at_exit = os.getpid()
        if sys.version_info >= (3, 13):
            block = shared_memory.SharedMemory(name=name, track=False)
        else:
            # Attaching registers the block with the resource tracker, which the worker
            # shares with the main process (the owner, which unlinks it): no leak warning.
            block = shared_memory.SharedMemory(name=name)
        _attached[name] = block
    return block


def _view(
    block: shared_memory.SharedMemory, offset: int, shape: Sequence[int], dtype: np.dtype
) -> np.ndarray:
    # Through np.frombuffer, an array holds the block's buffer for as long as it lives, so
    # closing the block fails instead of unmapping memory the array still points at
    # (np.ndarray(buffer=...) keeps only a reference to the mapping: reading it then
    # crashes the process).
    return np.frombuffer(block.buf, dtype, math.prod(shape), offset).reshape(shape)


def slot_inputs(slot: Slot) -> list[np.ndarray]:
    """The input arrays the main process put in ``slot`` (in a worker)."""
    block = _attach(slot.name)
    return [_view(block, offset, shape, np.dtype(dtype)) for offset, shape, dtype in slot.inputs]


def put_results(slot: Slot, results: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Copy a worker's results into ``slot``, one after the other: each output's array,
    then its mask (uint8 rows x cols) if it has one."""
    block = _attach(slot.name)
    offset = slot.output_offset
    for data, mask in results:
        _view(block, offset, data.shape, data.dtype)[...] = data
        offset = _aligned(offset + data.nbytes)
        if mask is not None:
            _view(block, offset, mask.shape, mask.dtype)[...] = mask
            offset = _aligned(offset + mask.nbytes)
