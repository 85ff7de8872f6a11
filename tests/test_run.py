"""End to end through the library: every mode, I/O placement and -j against a whole-array
reference, and byte-identical files across all of them."""

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
from helpers import DTYPES, MATRIX, digest

import mpraster
from mpraster import budget
from mpraster.output import OutputWriter
from mpraster.progress import LogProgress


def read_all(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile


@pytest.mark.parametrize("mode,io,jobs", MATRIX)
def test_every_mode_matches_reference_and_bytes(tmp_path, make_raster, mode, io, jobs):
    src = make_raster((3, 70, 50), "uint16", nodata=7)
    reference = tmp_path / "reference.tif"
    mpraster.run(
        src,
        reference,
        "reverse",
        mode="threads",
        io="main",
        jobs=1,
        params={"cost": 2},
        block_size=16,
    )
    out = tmp_path / "out.tif"
    stats = mpraster.run(
        src, out, "reverse", mode=mode, io=io, jobs=jobs, params={"cost": 2}, block_size=16
    )
    data, profile = read_all(out)
    expected, in_profile = read_all(src)
    assert np.array_equal(data, expected[::-1])
    assert digest(out) == digest(reference)
    assert profile["crs"] == in_profile["crs"] and profile["transform"] == in_profile["transform"]
    assert profile["nodata"] == 7 and profile["tiled"] and profile["blockxsize"] == 16
    assert (stats.windows, stats.pixels, stats.mode, stats.io, stats.jobs) == (
        20,
        3500,
        mode,
        io,
        jobs,
    )
    assert stats.bytes_read == stats.bytes_written == expected.nbytes
    assert not (tmp_path / "out.tif.partial").exists()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bands", [1, 4])
def test_every_dtype_and_band_count(tmp_path, make_raster, dtype, bands):
    src = make_raster((bands, 37, 41), dtype, tile=16)
    out = tmp_path / "out.tif"
    mpraster.run(src, out, "reverse", mode="threads", jobs=2, params={"cost": 1}, block_size=16)
    data, profile = read_all(out)
    expected, _ = read_all(src)
    assert profile["dtype"] == dtype
    assert data.tobytes() == np.ascontiguousarray(expected[::-1]).tobytes()


def test_gil_kernel_auto_runs_processes_with_worker_io(tmp_path, make_raster):
    src = make_raster((2, 40, 40), "float32")
    stats = mpraster.run(
        src, tmp_path / "o.tif", "reverse-py", jobs=2, params={"cost": 1}, block_size=16
    )
    assert (stats.mode, stats.io) == ("processes", "workers")
    stats = mpraster.run(
        src, tmp_path / "t.tif", "reverse", jobs=2, params={"cost": 1}, block_size=16
    )
    assert (stats.mode, stats.io) == ("threads", "main")
    assert digest(tmp_path / "o.tif") == digest(tmp_path / "t.tif")


def test_real_rgb_byte_all_modes_identical(tmp_path, rgb_byte):
    expected, _ = read_all(rgb_byte)
    digests = set()
    for mode, io in itertools.product(["threads", "processes"], ["main", "workers"]):
        out = tmp_path / f"{mode}-{io}.tif"
        mpraster.run(
            rgb_byte, out, "reverse", mode=mode, io=io, jobs=2, params={"cost": 0}, block_size=256
        )
        data, profile = read_all(out)
        assert np.array_equal(data, expected[::-1])
        assert profile["nodata"] == 0
        digests.add(digest(out))
    assert len(digests) == 1


def test_creation_options_and_bytes_across_jobs(tmp_path, make_raster):
    src = make_raster((3, 90, 70), "int16")
    outs = []
    for jobs in (1, 3):
        out = tmp_path / f"j{jobs}.tif"
        mpraster.run(
            src,
            out,
            "reverse",
            jobs=jobs,
            params={"cost": 0},
            block_size=32,
            creation_options={"COMPRESS": "DEFLATE", "PREDICTOR": "2"},
        )
        outs.append(out)
    with rasterio.open(outs[0]) as ds:
        assert ds.compression.name == "deflate"
    assert digest(outs[0]) == digest(outs[1])


def test_in_flight_windows_are_bounded(tmp_path, make_raster, monkeypatch):
    """At most jobs * prefetch windows are held between submission and the writer's turn,
    and jobs more wait for the writer's thread."""
    src = make_raster((1, 160, 160), "uint8")
    held, peak = set(), [0]
    real_submit = ThreadPoolExecutor.submit

    def submit(self, fn, task, *args):
        held.add(task.index)
        peak[0] = max(peak[0], len(held))
        return real_submit(self, fn, task, *args)

    real_write = OutputWriter.write

    def write(self, array, window, checksum=None, mask=None):
        held.discard(int(window.row_off // 16 * 10 + window.col_off // 16))
        return real_write(self, array, window, checksum, mask)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    monkeypatch.setattr(OutputWriter, "write", write)
    mpraster.run(
        src,
        tmp_path / "o.tif",
        "reverse",
        mode="threads",
        jobs=2,
        prefetch=3,
        params={"cost": 0},
        block_size=16,
    )
    assert peak[0] == 2 * 3 + 2


def test_log_progress_lines(tmp_path, make_raster):
    import io as stdio

    stream = stdio.StringIO()
    src = make_raster((1, 48, 48), "uint8")
    mpraster.run(
        src,
        tmp_path / "o.tif",
        "reverse",
        jobs=1,
        params={"cost": 0},
        block_size=16,
        progress=LogProgress(stream, interval=0),
    )
    lines = stream.getvalue().splitlines()
    assert lines[0] == "mpraster: start: 9 windows, 0.00 MPix"
    assert len(lines) == 10
    assert lines[-1].startswith("mpraster: 9/9 windows (100%)")
    assert "ETA" in lines[-1] and "MPix/s" in lines[-1]


def test_overwrite_replaces_only_when_complete(tmp_path, make_raster):
    src = make_raster((3, 30, 30), "uint8")
    out = tmp_path / "o.tif"
    out.write_bytes(b"old")
    mpraster.run(src, out, "reverse", jobs=1, params={"cost": 0}, block_size=16, overwrite=True)
    expected, _ = read_all(src)
    assert np.array_equal(read_all(out)[0], expected[::-1])


def test_library_accepts_kernel_object_and_typed_params(tmp_path, make_raster):
    src = make_raster((2, 20, 20), "float64")
    k = mpraster.load_kernel("reverse")
    stats = mpraster.run(
        [src], str(tmp_path / "o.tif"), k, mode="threads", jobs=1, params={"cost": 5}, block_size=16
    )
    assert stats.compute_seconds > 0 and stats.wall_seconds >= stats.write_seconds
    assert set(stats.as_dict()) >= {
        "windows",
        "pixels",
        "read_seconds",
        "compute_seconds",
        "write_seconds",
        "wait_seconds",
        "wall_seconds",
    }


def test_tiles_cut_into_strips_give_the_same_file(tmp_path, make_raster):
    """-j 1 and -j 3 cut these 4 tiles into different strips; the file is the same."""
    src = make_raster((2, 100, 100), "float32")
    outs = []
    for jobs, mode in ((1, "threads"), (3, "threads"), (3, "processes")):
        out = tmp_path / f"{mode}{jobs}.tif"
        stats = mpraster.run(
            src,
            out,
            "reverse",
            mode=mode,
            jobs=jobs,
            params={"cost": 0},
            block_size=64,
            creation_options={"COMPRESS": "LZW"},
        )
        assert stats.windows > 4
        outs.append(out)
    expected, _ = read_all(src)
    assert np.array_equal(read_all(outs[0])[0], expected[::-1])
    assert len({digest(p) for p in outs}) == 1


def test_gdal_cache_is_sized_to_the_windows_not_the_raster(tmp_path, make_raster):
    def caches(side, kernel="reverse", tiled=True):
        src = make_raster((1, side, side), "uint8", tile=32 if tiled else None)
        job = mpraster.plan_job(src, tmp_path / f"o{side}.tif", kernel, jobs=2, block_size=32)
        return budget.reader_cache_bytes(job), job.main_cache_bytes, job.memory_estimate()

    # Tiled input on the window grid, no halo: no block is read twice, nothing to cache.
    assert caches(256) == caches(512)
    # A halo (or a striped input) reads blocks again: a row of windows' blocks is cached,
    # so each is decoded once, and that budget follows the raster's width.
    assert caches(512, "focal-mean")[0] > caches(256, "focal-mean")[0] > caches(256)[0]
    assert caches(512, tiled=False)[0] > caches(256, tiled=False)[0]
