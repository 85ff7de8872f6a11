"""The window reader keeps the rows a halo shares with the window below: what it returns is
what GDAL would return for each window read alone, in any order, and GDAL is asked for each
row of a column of windows once."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from helpers import synthetic
from test_inputs_meta import a_mask, masked_raster

import mpraster
from mpraster import budget
from mpraster.inputs import WindowReader
from mpraster.sample import write_raster


def _in_kernel(src: np.ndarray) -> np.ndarray:
    """Zero the window it is given, in place (a kernel may), and return the centre."""
    out = src[:, 2:-2, 2:-2].copy()
    src[...] = 0
    return out


in_place = mpraster.kernel(releases_gil=False, halo=2)(_in_kernel)


def reads(job, order):
    """Every task's arrays, read by one reader in ``order``; and the rows GDAL was asked."""
    reader = WindowReader(job.inputs, job.infos, job.kernel.fill)
    asked = []
    fetch = reader._fetch

    def counting(src, info, task, window, mask):
        asked.append(int(window.height) * int(window.width))
        return fetch(src, info, task, window, mask)

    reader._fetch = counting
    try:
        got = {task.index: reader.read(task) for task in order(job.tasks)}
    finally:
        reader.close()
    return got, sum(asked)


def alone(job):
    """Every task's arrays, each read by a reader of its own."""
    got = {}
    for task in job.tasks:
        reader = WindowReader(job.inputs, job.infos, job.kernel.fill)
        try:
            got[task.index] = reader.read(task)
        finally:
            reader.close()
    return got


@pytest.mark.parametrize(
    "kernel, params, block, jobs, bands",
    [
        ("focal-mean", {"size": 3}, 16, 1, 2),
        ("focal-mean", {"size": 7}, 16, 1, 2),
        # A halo about a window's height, and tiles cut into row strips (-j 3 on 20
        # tiles) shorter than the halo.
        ("focal-mean", {"size": 31}, 16, 3, 2),
        ("slope", {}, 32, 2, 1),
        # No halo: nothing shared, nothing kept.
        ("reverse", {}, 16, 1, 2),
    ],
)
def test_windows_read_in_order_are_the_windows_read_alone(
    tmp_path, kernel, params, block, jobs, bands
):
    src = masked_raster(tmp_path / "masked.tif", dtype="float32", shape=(bands, 70, 50))
    job = mpraster.plan_job(
        src, tmp_path / "o.tif", kernel, params=params, block_size=block, jobs=jobs
    )
    expected = alone(job)
    in_order, asked = reads(job, list)
    backwards, asked_backwards = reads(job, lambda tasks: tasks[::-1])
    for got in (in_order, backwards):
        assert got.keys() == expected.keys()
        for index, arrays in expected.items():
            assert len(got[index]) == len(arrays) == 2  # the bands and the mask
            for a, b in zip(got[index], arrays, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b)
    # In plan order GDAL is asked for less when windows overlap, never more; out of order
    # nothing kept applies, and each window is asked for whole.
    whole = sum(
        int(t.read.intersection(rasterio.windows.Window(0, 0, 50, 70)).height)
        * int(t.read.intersection(rasterio.windows.Window(0, 0, 50, 70)).width)
        for t in job.tasks
    )
    assert asked_backwards == 2 * whole  # data and mask
    if job.halo:
        assert asked < asked_backwards
    else:
        assert asked == asked_backwards


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_kernel_that_writes_into_its_input_does_not_change_the_next_window(tmp_path, mode):
    data = synthetic((1, 70, 50), "float32")
    src = write_raster(tmp_path / "in.tif", data)
    out = tmp_path / f"{mode}.tif"
    mpraster.run(src, out, in_place, mode=mode, io="main", jobs=2, block_size=16)
    with rasterio.open(out) as o:
        assert np.array_equal(o.read(), data)


def test_reading_in_order_needs_a_row_of_blocks_less_cache(tmp_path, make_raster, monkeypatch):
    src = make_raster((1, 512, 512), "float32", tile=32)
    job = mpraster.plan_job(src, tmp_path / "o.tif", "slope", jobs=2, block_size=32)
    row_of_blocks = 32 * 512 * 4
    assert budget.reader_cache_bytes(job) == 3 * row_of_blocks
    # Two rows of blocks and the three blocks of a window in the next.
    assert budget.reader_cache_bytes(job, in_order=True) == 2 * row_of_blocks + 3 * 32 * 32 * 4
    # The main process reads in plan order (--io main) and is given that cache.
    monkeypatch.setattr(budget, "MIN_CACHE_BYTES", 0)
    assert job.io == "main"
    writer = 2 * job.in_flight * job.tile_bytes
    assert job.main_cache_bytes == writer + budget.reader_cache_bytes(job, in_order=True)


def test_a_mask_read_in_order_is_the_mask(tmp_path):
    src = masked_raster(tmp_path / "m.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-mean", params={"size": 5}, jobs=1, block_size=16)
    with rasterio.open(out) as o:
        assert np.array_equal(o.dataset_mask() > 0, a_mask() > 0)
