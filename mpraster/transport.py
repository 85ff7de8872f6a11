"""Shared-memory slots that carry windows to and from process workers.

Pickling a window through a pipe copies it four times (pickle, pipe, pipe, unpickle) and
costs the main process — the one that also reads and writes — most of that time. Instead
the main process owns a few shared-memory slots, one per window in flight: it puts the
window it read into a slot, the worker computes from the slot and puts its result back,
and the writer writes straight from the slot before handing it out again.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

_ALIGN = 64


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class Slot:
    """Where one window's arrays live: a shared-memory block and their layout in it."""

    name: str
    index: int
    inputs: tuple[tuple[int, tuple[int, ...], str], ...]
    output_offset: int


class SlotPool:
    """The main process's slots: created at the start of a run, unlinked at its end."""

    def __init__(self, count: int, input_bytes: int, output_bytes: int) -> None:
        self.output_offset = _aligned(input_bytes)
        size = max(self.output_offset + output_bytes, 1)
        self._blocks: list[shared_memory.SharedMemory] = []
        try:
            for _ in range(count):
                self._blocks.append(shared_memory.SharedMemory(create=True, size=size))
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

    def result(self, slot: Slot, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The worker's result in ``slot``; valid until the slot is released."""
        block = self._blocks[slot.index]
        return np.ndarray(shape, dtype, buffer=block.buf, offset=slot.output_offset)

    def release(self, slot: Slot) -> None:
        self._free.append(slot.index)

    def close(self) -> None:
        """Unlink every block (after the workers have stopped)."""
        for block in self._blocks:
            block.close()
            block.unlink()
        self._blocks = []


# A worker's attached blocks, by name: attaching costs a system call and a mapping, so each
# block is attached once per worker and reused for every window that comes through it.
_attached: dict[str, shared_memory.SharedMemory] = {}


def _attach(name: str) -> shared_memory.SharedMemory:
    block = _attached.get(name)
    if block is None:
        if sys.version_info >= (3, 13):
            block = shared_memory.SharedMemory(name=name, track=False)
        else:
            # Attaching registers the block with the resource tracker, which the worker
            # shares with the main process (the owner, which unlinks it): no leak warning.
            block = shared_memory.SharedMemory(name=name)
        _attached[name] = block
    return block


def slot_inputs(slot: Slot) -> list[np.ndarray]:
    """The input arrays the main process put in ``slot`` (in a worker)."""
    block = _attach(slot.name)
    return [
        np.ndarray(shape, np.dtype(dtype), buffer=block.buf, offset=offset)
        for offset, shape, dtype in slot.inputs
    ]


def put_result(slot: Slot, data: np.ndarray) -> None:
    """Copy a worker's result into ``slot``."""
    block = _attach(slot.name)
    view = np.ndarray(data.shape, data.dtype, buffer=block.buf, offset=slot.output_offset)
    view[...] = data
