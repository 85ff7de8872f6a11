import pytest

from mpraster.errors import OptionError
from mpraster.windows import plan_block_windows, plan_windows


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


@pytest.mark.parametrize(
    "height,width,block,block_shape,min_tasks,window",
    [
        (300, 70, 16, (1, 70), 1, (4, 70)),  # strips: full-width windows of ~16 x 16 pixels
        (300, 70, 16, (3, 70), 1, (3, 70)),
        (300, 70, 16, (3, 70), 64, (3, 70)),
        (90, 100, 64, (8, 100), 12, (8, 100)),  # narrowed to whole strips for min_tasks
        (700, 650, 128, (256, 256), 1, (256, 256)),  # tiles larger than the block
        (700, 650, 128, (48, 48), 1, (144, 144)),
        (64, 640, 16, (64, 64), 10, (64, 64)),  # narrowed in whole tiles
    ],
)
def test_block_windows_read_every_block_in_one_window(
    height, width, block, block_shape, min_tasks, window
):
    tasks = plan_block_windows(height, width, block, block_shape, min_tasks)
    assert len(tasks) >= min_tasks
    assert (tasks[0].window.height, tasks[0].window.width) == window
    covered = [[0] * width for _ in range(height)]
    for i, task in enumerate(tasks):
        w = task.window
        assert task.index == i and task.read == w == task.tile
        # Every window starts on a block and ends on one or at the raster's edge.
        assert w.row_off % block_shape[0] == 0 and w.col_off % block_shape[1] == 0
        bottom, right = int(w.row_off + w.height), int(w.col_off + w.width)
        assert bottom % block_shape[0] == 0 or bottom == height
        assert right % block_shape[1] == 0 or right == width
        for r in range(int(w.row_off), bottom):
            for c in range(int(w.col_off), right):
                covered[r][c] += 1
    assert all(v == 1 for row in covered for v in row)
    offsets = [(t.window.row_off, t.window.col_off) for t in tasks]
    assert offsets == sorted(offsets)


def test_too_few_blocks_for_block_windows():
    assert plan_block_windows(64, 64, 16, (8, 64), 64) is None


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


@pytest.mark.parametrize("min_tasks", [1, 8, 16, 100])
def test_few_tiles_are_cut_into_row_strips_that_rebuild_each_tile(min_tasks):
    tasks = plan_windows(100, 70, 64, halo=1, min_tasks=min_tasks)
    tiles = {}
    for task in tasks:
        tiles.setdefault((task.tile.row_off, task.tile.col_off), []).append(task)
    assert len(tiles) == 4
    for strips in tiles.values():
        # A tile's strips are consecutive in the plan, numbered, and stack to the tile.
        assert [t.part for t in strips] == list(range(len(strips)))
        assert {t.parts for t in strips} == {len(strips)}
        assert [t.index for t in strips] == list(range(strips[0].index, strips[-1].index + 1))
        assert sum(int(t.window.height) for t in strips) == int(strips[0].tile.height)
        assert all(int(t.window.height) >= 16 for t in strips)
        assert (
            strips[0].rows_in_tile[0] == 0 and strips[-1].rows_in_tile[1] == strips[0].tile.height
        )
        for t in strips:
            assert t.read.height == t.window.height + 2 and t.crop[0] == 1
    if min_tasks == 1:
        assert len(tasks) == 4
    else:
        assert len(tasks) > 4
