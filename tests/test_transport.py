import numpy as np

from mpraster.transport import SlotPool, put_result, slot_inputs


def test_slots_carry_inputs_and_results_and_are_reused():
    pool = SlotPool(2, input_bytes=3 * 10 * 10 * 8 + 128, output_bytes=10 * 10 * 4)
    try:
        a = np.arange(300, dtype="float64").reshape(3, 10, 10)
        b = np.arange(100, dtype="uint8").reshape(1, 10, 10)
        slot = pool.acquire([a, b])
        got = slot_inputs(slot)  # as a worker sees them
        assert np.array_equal(got[0], a) and np.array_equal(got[1], b)
        assert got[1].ctypes.data % 64 == 0  # each input aligned
        put_result(slot, np.full((1, 10, 10), 7, dtype="float32"))
        assert (pool.result(slot, (1, 10, 10), np.dtype("float32")) == 7).all()
        other = pool.acquire()
        assert other.index != slot.index
        pool.release(slot)
        assert pool.acquire().index == slot.index
    finally:
        pool.close()
