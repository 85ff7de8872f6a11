"""`mpraster stats` and reductions: every figure against NumPy on the whole array, the same
bits across modes, --io and -j, zonal statistics, user reductions, and bad input."""

import itertools
import json
import signal
import subprocess

import numpy as np
import pytest
import rasterio
from reductions_for_tests import ValidSum, count_positive

import mpraster
import mpraster.progress
from mpraster.errors import (
    EmptyHistogramError,
    InputMismatchError,
    Interrupted,
    OptionError,
    ResumeError,
    UnfinishedRunError,
    ZonesTypeError,
)
from mpraster.sample import write_raster
from mpraster.stats_command import StatsRequest, compute_stats

PERCENTILES = (0, 2, 25, 50, 97.5, 100)
MATRIX = list(itertools.product(["threads", "processes"], ["main", "workers"], [1, 2]))


def _data(dtype, shape=(2, 61, 47), seed=1):
    """Values with many repeats and a wide spread, nodata (ints) or NaN (floats) in them."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = (rng.normal(0, 1e3, shape) * rng.integers(1, 4, shape)).astype(dt)
        data[rng.random(shape) < 0.1] = np.nan
        data[0, :3, :3] = -9999  # nodata
        return data, -9999.0
    info = np.iinfo(dt)
    low, high = max(info.min, -50_000), min(info.max, 70_000)
    data = rng.integers(low, high, shape, endpoint=True).astype(dt)
    data[:, 5:8, :] = info.max  # nodata
    data[-1, 10, 10] = info.min
    return data, float(info.max)


def _valid(data, nodata, mask=None):
    valid = data != nodata
    if data.dtype.kind == "f":
        valid &= ~np.isnan(data)
    if mask is not None:
        valid &= mask
    return valid


def _check_band(band, v, qs=PERCENTILES, bins=None, value_range=None):
    assert band["count"] == v.size
    assert band["min"] == v.min() and band["max"] == v.max()
    if v.dtype.kind in "iu" and v.dtype.itemsize <= 4:
        assert band["sum"] == int(v.sum(dtype=np.int64))
    np.testing.assert_allclose(band["mean"], v.mean(dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(band["std"], v.std(dtype=np.float64), rtol=1e-10)
    expected = np.percentile(v.astype(np.float64), qs)
    assert list(band["percentiles"].values()) == expected.tolist()  # to the last bit
    if bins:
        hist, edges = np.histogram(v, bins, value_range)
        assert band["histogram"]["counts"] == hist.tolist()
        np.testing.assert_allclose(band["histogram"]["edges"], edges, rtol=1e-6)


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "int16", "int32", "uint32", "float32", "float64"]
)
@pytest.mark.parametrize("value_range", [None, (-100.0, 5000.0)])
def test_figures_match_numpy(tmp_path, dtype, value_range):
    data, nodata = _data(dtype)
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    request = StatsRequest(histogram=7, range=value_range, percentiles=PERCENTILES)
    # A small gather limit makes the float and 32-bit searches refine over several passes.
    report, _ = compute_stats(path, request, block_size=16, jobs=2, gather_limit=40)
    for b, band in enumerate(report["inputs"][0]["bands"]):
        v = data[b][_valid(data[b], nodata)]
        assert band["invalid"] == data[b].size - v.size
        _check_band(band, v, bins=7, value_range=value_range)


def test_mask_band_and_all_invalid_band(tmp_path):
    data, _ = _data("int16")
    path = tmp_path / "masked.tif"
    write_raster(path, data)
    mask = np.zeros(data.shape[1:], dtype=bool)
    mask[20:50, 5:40] = True
    with rasterio.open(path, "r+") as dst:
        dst.write_mask(mask.astype(np.uint8) * 255)
    report, _ = compute_stats(path, StatsRequest(percentiles=PERCENTILES), block_size=16)
    for b, band in enumerate(report["inputs"][0]["bands"]):
        _check_band(band, data[b][mask])
    empty = write_raster(tmp_path / "empty.tif", np.full((1, 20, 20), 3, "uint8"), nodata=3)
    report, _ = compute_stats(empty, StatsRequest(histogram=4, percentiles=(50,)), block_size=16)
    band = report["inputs"][0]["bands"][0]
    assert (band["count"], band["invalid"], band["mean"]) == (0, 400, None)
    assert band["percentiles"] == {"50": None}


@pytest.mark.parametrize("mode,io,jobs", MATRIX)
def test_same_bits_across_modes_io_and_jobs(tmp_path, mode, io, jobs):
    data, nodata = _data("float32", shape=(2, 70, 53))
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    zones = write_raster(
        tmp_path / "zones.tif", (np.arange(70 * 53) % 13).reshape(1, 70, 53).astype("int16")
    )
    request = StatsRequest(histogram=5, percentiles=(2, 50, 98), zones=str(zones))
    reference, _ = compute_stats(
        path, request, block_size=16, mode="threads", io="main", jobs=1, gather_limit=50
    )
    report, stats = compute_stats(
        path, request, block_size=16, mode=mode, io=io, jobs=jobs, gather_limit=50
    )
    assert json.dumps(report) == json.dumps(reference)
    assert (stats.mode, stats.io, stats.jobs) == (mode, io, jobs)


def test_workers_read_unless_told(tmp_path):
    """A reduction writes nothing: by default its workers read and decode (see reduce.py)."""
    data, nodata = _data("uint8", shape=(1, 40, 40))
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    for changes, placement in [
        ({}, ("threads", "workers")),
        ({"mode": "processes"}, ("processes", "workers")),
        ({"io": "main"}, ("threads", "main")),
    ]:
        _, stats = compute_stats(path, StatsRequest(), jobs=2, block_size=16, **changes)
        assert (stats.mode, stats.io) == placement


def test_striped_input_is_read_in_whole_strips(tmp_path):
    """Windows cut across strips would decode each strip once per window (see reduce.py)."""
    data, nodata = _data("float32", shape=(1, 300, 40))
    path = write_raster(tmp_path / "strips.tif", data, nodata=nodata, blockysize=2)
    job = mpraster.plan_reduction(path, ValidSum(), block_size=16)
    assert {(int(t.window.width), int(t.window.height) % 2) for t in job.tasks} == {(40, 0)}
    assert len(job.tasks) >= 64
    request, reference = StatsRequest(percentiles=PERCENTILES), None
    for mode, io, jobs in [("threads", "main", 1), ("processes", "workers", 2)]:
        options = dict(block_size=16, mode=mode, io=io, jobs=jobs, gather_limit=40)
        report, _ = compute_stats(path, request, **options)
        _check_band(report["inputs"][0]["bands"][0], data[0][_valid(data[0], nodata)])
        assert reference in (None, json.dumps(report))
        reference = json.dumps(report)


def test_zones_match_bincount_reference(tmp_path):
    data, nodata = _data("int32", shape=(1, 64, 64))
    zones = np.random.default_rng(3).integers(100, 1100, (64, 64)).astype("int32")
    zones[:4, :4] = 7  # zone 7: in the first window only
    zones[40:44, 40:44] = 9  # zone 9: only where the data is nodata
    data[0, 40:44, 40:44] = nodata
    zones[60:, 60:] = -1  # zones nodata: no zone
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    zpath = write_raster(tmp_path / "zones.tif", zones[np.newaxis], nodata=-1)
    report, _ = compute_stats(path, StatsRequest(zones=str(zpath)), block_size=16, jobs=2)
    rows = {r["zone"]: r for r in report["inputs"][0]["bands"][0]["zones"]}
    present = np.unique(zones[zones != -1])
    assert sorted(rows) == present.tolist() and len(rows) > 900
    assert rows[9] == dict(zone=9, count=0, sum=0.0, mean=None, min=None, max=None, std=None)
    valid = (data[0] != nodata) & (zones != -1)
    for zone in (7, 100, 555, 1099):
        v = data[0][valid & (zones == zone)].astype(np.float64)
        row = rows[zone]
        assert row["count"] == v.size and (row["min"], row["max"]) == (v.min(), v.max())
        np.testing.assert_allclose(row["sum"], v.sum(), rtol=1e-12)
        np.testing.assert_allclose(row["mean"], v.mean(), rtol=1e-12)
        np.testing.assert_allclose(row["std"], v.std(), rtol=1e-9)


@pytest.mark.parametrize(
    "mode,io", [("threads", "main"), ("processes", "main"), ("processes", "workers")]
)
def test_user_reductions_in_every_mode(tmp_path, mode, io):
    data, nodata = _data("int16")
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    valid = _valid(data, nodata)
    positive = mpraster.reduce(path, count_positive, mode=mode, io=io, jobs=2, block_size=16)
    assert positive == int(((data > 0) & valid).sum())
    total = mpraster.reduce(path, ValidSum(), mode=mode, io=io, jobs=2, block_size=16)
    assert total == float(data[0][valid[0]].sum())


def test_bad_requests_and_inputs(tmp_path):
    data, nodata = _data("uint8", shape=(1, 30, 30))
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    floats = write_raster(tmp_path / "fz.tif", np.ones((1, 30, 30), "float32"))
    other = write_raster(tmp_path / "oz.tif", np.ones((1, 31, 30), "int16"))
    with pytest.raises(ZonesTypeError, match="zones must be an integer type"):
        compute_stats(path, StatsRequest(zones=str(floats)))
    with pytest.raises(InputMismatchError, match="do not share a grid"):
        compute_stats(path, StatsRequest(zones=str(other)))
    with pytest.raises(OptionError, match="between 0 and 100, got 101"):
        StatsRequest(percentiles=(50, 101))
    with pytest.raises(EmptyHistogramError, match="excludes every valid value"):
        compute_stats(path, StatsRequest(histogram=4, range=(1000.0, 2000.0)))


def test_cli_errors_are_one_line_with_exit_codes(tmp_path, cli_env, mpraster_cmd):
    data, nodata = _data("uint8", shape=(1, 30, 30))
    path = str(write_raster(tmp_path / "in.tif", data, nodata=nodata))
    floats = str(write_raster(tmp_path / "fz.tif", np.ones((1, 30, 30), "float32")))
    other = str(write_raster(tmp_path / "oz.tif", np.ones((1, 31, 30), "int16")))
    cases = [
        (["--zones", floats], 8, "zones must be an integer type"),
        (["--zones", other], 13, "do not share a grid"),
        (["--percentiles", "2,150"], 2, "between 0 and 100"),
        (["--histogram", "4", "--range", "1000,2000"], 2, "excludes every valid value"),
        (["--resume"], 2, "--resume needs -o FILE"),
    ]
    for args, code, words in cases:
        done = subprocess.run(
            [*mpraster_cmd, "stats", path, "--progress", "none", *args],
            capture_output=True,
            text=True,
            env=cli_env,
        )
        assert done.returncode == code, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ")
        assert words in done.stderr


def test_cli_formats_and_output_file(tmp_path, cli_env, mpraster_cmd):
    data, nodata = _data("uint16", shape=(2, 40, 30))
    path = str(write_raster(tmp_path / "in.tif", data, nodata=nodata))
    out = tmp_path / "stats.json"
    base = [*mpraster_cmd, "stats", path, "--percentiles", "50", "--block-size", "16", "-q"]
    subprocess.run([*base, "--format", "json", "-o", str(out)], check=True, env=cli_env)
    report = json.loads(out.read_text())
    v = data[1][data[1] != nodata]
    assert report["inputs"][0]["bands"][1]["percentiles"]["50"] == np.percentile(v, 50)
    csv_text = subprocess.run(
        [*base, "--format", "csv"], check=True, env=cli_env, capture_output=True, text=True
    ).stdout
    header, _, second = csv_text.strip().splitlines()
    assert header == "input,band,count,invalid,min,max,sum,mean,std,p50"
    assert second.split(",")[2] == str(v.size)
    table = subprocess.run(base, check=True, env=cli_env, capture_output=True, text=True).stdout
    assert f"band 2: count {v.size}  invalid {data[1].size - v.size}" in table


def _fold_in_memory(values):
    """A ``run_pass`` over ``values`` cut into four blocks, merged in order (no engine)."""

    def run_pass(red):
        partial = red.start()
        for part in np.array_split(values, 4):
            block = mpraster.Block(0, None, (part[None, None],), (~np.isnan(part)[None, None],))
            partial = red.merge(partial, red.update(red.start(), block))
        return red.finish(partial)

    return run_pass


@pytest.mark.parametrize("limit", [1, 7, 10_000])
def test_rank_search_through_crowded_bins(limit):
    from mpraster.percentiles import interpolate, ranks_of, search_ranks

    rng = np.random.default_rng(5)
    # Crowded values (one repeated, one tight cluster) make the bin holding a rank too
    # full to gather: the search narrows it to its bounds and counts again.
    values = np.concatenate(
        [np.full(500, 5.0), 1 + rng.random(300) * 1e-9, rng.normal(0, 1e6, 200), [np.nan]]
    )
    v = values[~np.isnan(values)]
    qs = (1, 10, 30, 50, 60, 75, 99.9)
    ranks = ranks_of(v.size, qs)
    targets = [(0, 0, k, v.min(), v.max(), v.size) for lo, hi, _ in ranks for k in (lo, hi)]
    found = search_ranks(targets, _fold_in_memory(values), limit)
    got = [interpolate(found[(0, 0, lo)], found[(0, 0, hi)], g) for lo, hi, g in ranks]
    assert got == np.percentile(v, qs).tolist()


def test_infinities_need_a_range_and_a_stop_gives_no_figures(tmp_path):
    data = np.arange(400, dtype="float32").reshape(1, 20, 20)
    data[0, 3, 3] = np.inf
    path = write_raster(tmp_path / "inf.tif", data)
    with pytest.raises(OptionError, match="holds infinite values"):
        compute_stats(path, StatsRequest(percentiles=(50,)))
    report, _ = compute_stats(path, StatsRequest(histogram=2, range=(0.0, 400.0)))
    assert report["inputs"][0]["bands"][0]["mean"] == np.inf  # as NumPy's
    assert report["inputs"][0]["bands"][0]["histogram"]["counts"] == [199, 200]
    stop = mpraster.StopSignal()
    stop.set(signal.SIGTERM)
    with pytest.raises(Interrupted, match="stopped by SIGTERM after 0 of") as caught:
        compute_stats(path, StatsRequest(), stop=stop)
    assert caught.value.exit_code == 128 + signal.SIGTERM


class _StopAfter(mpraster.progress.NullProgress):
    """A progress sink that asks the run to stop once ``windows`` windows are merged."""

    def __init__(self, stop, windows):
        self.stop, self.left = stop, windows

    def advance(self, windows, pixels):
        self.left -= windows
        if self.left == 0:
            self.stop.set(signal.SIGTERM)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_resume_continues_from_the_journal_with_the_same_bits(tmp_path, mode):
    data, nodata = _data("float64", shape=(2, 64, 64))
    path = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    request = StatsRequest(histogram=6, percentiles=(5, 50))
    options = dict(block_size=16, mode=mode, jobs=2, gather_limit=100)
    whole, first = compute_stats(path, request, **options)
    assert [p["windows"] for p in first.passes][:2] == [16, 16]
    journal = tmp_path / "stats.json.journal"
    stop = mpraster.StopSignal()
    with pytest.raises(Interrupted, match="with --resume to finish"):
        compute_stats(
            path, request, progress=_StopAfter(stop, 6), stop=stop, journal=str(journal), **options
        )
    assert journal.exists()
    with pytest.raises(UnfinishedRunError, match="pass --resume"):
        compute_stats(path, request, journal=str(journal), **options)
    with pytest.raises(ResumeError, match="of another job"):
        compute_stats(path, StatsRequest(), journal=str(journal), resume=True, **options)
    report, stats = compute_stats(path, request, journal=str(journal), resume=True, **options)
    assert json.dumps(report) == json.dumps(whole)
    assert stats.windows_resumed >= 6
    assert stats.windows + stats.windows_resumed == first.windows == 16 * len(first.passes)
    assert not journal.exists()
