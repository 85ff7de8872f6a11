"""The main process's window reader reads bands of whole rows where windows share blocks:
what it returns is what GDAL returns for each window read alone, in any order, and GDAL is
asked for each pixel once when the windows come in plan order."""

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


def reads(job, order, threads=1):
    """Every task's arrays, read by the main process's reader in ``order``; and the pixels
    GDAL was asked for."""
    rows = job.block_size if budget.reads_in_bands(job) else None
    reader = WindowReader(job.inputs, job.infos, job.kernel.fill, rows, threads)
    asked = []
    fetch = reader._fetch

    def counting(src, info, task, window, mask, out=None):
        asked.append(int(window.height) * int(window.width))
        return fetch(src, info, task, window, mask, out)

    reader._fetch = counting
    got = {}
    try:
        for task in order(job.tasks):
            arrays = reader.read(task)
            got[task.index] = [a.copy() for a in arrays]
            # A kernel may write into what it is given: what it is given is its own.
            for a in arrays:
                a[...] = 0
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
    "kernel, params, block, jobs, shape, tile",
    [
        ("focal-mean", {"size": 3}, 16, 1, (2, 70, 50), 16),
        ("focal-mean", {"size": 7}, 16, 1, (2, 70, 50), 16),
        # A halo about a window's height, and tiles cut into row strips (-j 3 on 20
        # tiles) shorter than the halo.
        ("focal-mean", {"size": 31}, 16, 3, (2, 70, 50), 16),
        ("slope", {}, 32, 2, (1, 70, 50), 16),
        # No halo: nothing shared, nothing kept.
        ("reverse", {}, 16, 1, (2, 70, 50), 16),
        # Strips inside a band, clear of the raster's edges: cut from one band alone.
        ("focal-mean", {"size": 5}, 64, 3, (1, 128, 192), 16),
        # Blocks taller than the windows: bands of whole blocks, two rows of windows each.
        ("focal-mean", {"size": 3}, 16, 1, (1, 70, 50), 32),
        # A striped file (GDAL's default layout: strips of a few rows across the raster),
        # pixel-interleaved; without a halo too, as each strip spans a row of windows.
        ("focal-mean", {"size": 3}, 16, 1, (3, 70, 50), None),
        ("reverse", {}, 16, 1, (3, 70, 50), None),
    ],
)
def test_windows_read_in_order_are_the_windows_read_alone(
    tmp_path, kernel, params, block, jobs, shape, tile
):
    # Compressed blocks: a band's columns are read two blocks at a time, on two of GDAL's
    # threads.
    src = masked_raster(
        tmp_path / "masked.tif", dtype="float32", shape=shape, tile=tile, compress="deflate"
    )
    job = mpraster.plan_job(
        src, tmp_path / "o.tif", kernel, params=params, block_size=block, jobs=jobs, io="main"
    )
    expected = alone(job)
    in_order, asked = reads(job, list, threads=2)
    backwards, asked_backwards = reads(job, lambda tasks: tasks[::-1])
    for got in (in_order, backwards):
        assert got.keys() == expected.keys()
        for index, arrays in expected.items():
            assert len(got[index]) == len(arrays) == 2  # the bands and the mask
            for a, b in zip(got[index], arrays, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b)
    if not budget.reads_in_bands(job):
        # No halo, tiles on the window grid: each window alone, nothing read twice.
        assert job.halo == 0 and tile == 16
        assert asked == asked_backwards == 2 * shape[1] * shape[2]
    else:
        # In plan order GDAL is asked for each pixel (and each mask pixel) once.
        assert asked == 2 * shape[1] * shape[2] < asked_backwards


@pytest.mark.parametrize("mode", ["threads", "processes"])
@pytest.mark.parametrize(
    "shape, block",
    # Windows across rows of tiles; and one row of tiles, where a window is cut from one
    # band alone.
    [((1, 70, 50), 16), ((1, 30, 70), 32)],
)
def test_a_kernel_that_writes_into_its_input_does_not_change_the_next_window(
    tmp_path, mode, shape, block
):
    data = synthetic(shape, "float32")
    src = write_raster(tmp_path / "in.tif", data, tile=16)
    out = tmp_path / f"{mode}.tif"
    mpraster.run(src, out, in_place, mode=mode, io="main", jobs=2, block_size=block)
    with rasterio.open(out) as o:
        assert np.array_equal(o.read(), data)


def test_the_main_reader_holds_two_rows_of_tiles_and_gdal_caches_a_window(
    tmp_path, make_raster, monkeypatch
):
    src = make_raster((1, 512, 512), "float32", tile=32)
    job = mpraster.plan_job(src, tmp_path / "o.tif", "slope", jobs=2, block_size=32)
    assert job.io == "main" and budget.reads_in_bands(job)
    row_of_tiles = 32 * 512 * 4
    # Asked window by window, GDAL must cache the three rows of blocks a row of windows
    # touches; read in bands, each block is asked for once: the blocks of one window.
    assert budget.reader_cache_bytes(job) == 3 * row_of_tiles
    assert budget.reader_cache_bytes(job, in_bands=True) == 3 * 32 * 32 * 4
    # The reader holds the halo above, a row of tiles and the next row.
    assert budget.reader_rows_bytes(job) == (1 + 2 * 32) * 512 * 4
    monkeypatch.setattr(budget, "MIN_CACHE_BYTES", 0)
    writer = 2 * job.in_flight * job.tile_bytes
    assert job.main_cache_bytes == writer + 3 * 32 * 32 * 4
    memory = job.memory_estimate()
    assert memory["reader_rows"] == budget.reader_rows_bytes(job)
    assert memory["total"] == memory["windows"] + memory["reader_rows"] + memory["gdal_cache"]
    # Workers reading their own windows read them alone.
    workers = mpraster.plan_job(
        src, tmp_path / "w.tif", "slope", jobs=2, block_size=32, io="workers"
    )
    assert not budget.reads_in_bands(workers) and budget.reader_rows_bytes(workers) == 0


def test_a_mask_read_in_order_is_the_mask(tmp_path):
    src = masked_raster(tmp_path / "m.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-mean", params={"size": 5}, jobs=1, block_size=16)
    with rasterio.open(out) as o:
        assert np.array_equal(o.dataset_mask() > 0, a_mask() > 0)
