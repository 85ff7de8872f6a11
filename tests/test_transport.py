import os

import numpy as np
import pytest

from mpraster.modes import transport
from mpraster.modes.transport import SlotPool, block_creator, detach_all, put_results, slot_inputs


def test_slots_carry_inputs_and_results_and_are_reused():
    pool = SlotPool(2, input_bytes=3 * 10 * 10 * 8 + 128, output_bytes=10 * 10 * 4)
    try:
        a = np.arange(300, dtype="float64").reshape(3, 10, 10)
        b = np.arange(100, dtype="uint8").reshape(1, 10, 10)
        slot = pool.acquire([a, b])
        got = slot_inputs(slot)  # as a worker sees them
        assert np.array_equal(got[0], a) and np.array_equal(got[1], b)
        assert got[1].ctypes.data % 64 == 0  # each input aligned
        put_results(slot, [(np.full((1, 10, 10), 7, dtype="float32"), None)])
        [(data, mask)] = pool.results(slot, (10, 10), [(1, np.dtype("float32"), False)])
        assert (data == 7).all() and mask is None
        other = pool.acquire()
        assert other.index != slot.index
        pool.release(slot)
        assert pool.acquire().index == slot.index
    finally:
        pool.close()
        detach_all()


def test_blocks_are_named_after_their_creator_and_locked(monkeypatch):
    pool = SlotPool(2, input_bytes=64, output_bytes=64)
    try:
        names = [pool.acquire().name for _ in range(2)]
        started = transport.process_start(os.getpid())
        assert [block_creator(name) for name in names] == [(os.getpid(), started or "0")] * 2
        assert block_creator("psm_1234") is None and block_creator("mpraster-x-1-ab") is None
        if not os.path.isdir(transport.SHM_DIR) or started is None:
            pytest.skip("no /dev/shm and /proc: blocks are neither locked nor cleaned up")
        # Seen from a pid namespace where this process does not exist, old enough: only
        # the pool's lock keeps its blocks.
        monkeypatch.setattr(transport, "process_start", lambda pid: "elsewhere")
        monkeypatch.setattr(transport, "_NEW_BLOCK_SECONDS", -60.0)
        assert not set(names) & set(transport.remove_dead_blocks())
        assert all(os.path.exists(os.path.join(transport.SHM_DIR, name)) for name in names)
    finally:
        pool.close()


def test_detach_all_closes_attached_blocks_once_no_array_views_them():
    pool = SlotPool(2, input_bytes=128, output_bytes=64)
    try:
        viewed = pool.acquire([np.ones((1, 4, 4))])
        done = pool.acquire([np.ones((1, 4, 4))])
        arrays = slot_inputs(viewed)  # a kernel still holds them
        slot_inputs(done)
        attached = dict(transport._attached)
        detach_all()
        assert attached[done.name].buf is None  # closed
        assert attached[viewed.name] in transport._still_viewed
        assert arrays[0].sum() == 16  # still mapped
        del arrays
        detach_all()
        assert not transport._attached and not transport._still_viewed
    finally:
        pool.close()
