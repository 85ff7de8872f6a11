import pytest

from mpraster.errors import OptionError
from mpraster.plan import plan_windows


@pytest.mark.parametrize(
    "height,width,block", [(70, 50, 16), (64, 64, 16), (1, 1, 16), (718, 791, 512)]
)
def test_windows_tile_the_grid_exactly_once(height, width, block):
    tasks = plan_windows(height, width, block)
    covered = [[0] * width for _ in range(height)]
    for task in tasks:
        w = task.window
        assert w.col_off % block == 0 and w.row_off % block == 0
        for r in range(int(w.row_off), int(w.row_off + w.height)):
            for c in range(int(w.col_off), int(w.col_off + w.width)):
                covered[r][c] += 1
    assert all(v == 1 for row in covered for v in row)
    assert [t.index for t in tasks] == list(range(len(tasks)))
    # Row-major plan order is the tile order of the output file.
    offsets = [(t.window.row_off, t.window.col_off) for t in tasks]
    assert offsets == sorted(offsets)


def test_halo_grows_read_window_and_crop_recovers_window():
    tasks = plan_windows(40, 40, 16, halo=2)
    task = tasks[0]
    assert (task.read.col_off, task.read.row_off, task.read.width, task.read.height) == (
        -2,
        -2,
        20,
        20,
    )
    assert task.crop == (2, 18, 2, 18)
    last = tasks[-1]
    assert (last.window.height, last.window.width) == (8, 8)
    assert last.crop == (2, 10, 2, 10)


@pytest.mark.parametrize("block", [0, 8, 17, 100, -16, 1.5, True])
def test_bad_block_size(block):
    with pytest.raises(OptionError, match="block-size"):
        plan_windows(10, 10, block)
