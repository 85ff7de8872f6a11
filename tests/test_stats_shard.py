"""`mpraster stats --shard` and `mpraster merge` of its shards: the merged report is the
bytes of one unsharded run; missing, unfinished, foreign and mixed shards are refused;
each pass of a stats job shows its progress and its timers."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, run_command

import mpraster
import mpraster.progress
from mpraster.errors import (
    Interrupted,
    OptionError,
    OutputLockedError,
    ShardMergeError,
    UnfinishedRunError,
)
from mpraster.fold import PlanFold
from mpraster.lock import OutputLock
from mpraster.sample import write_raster
from mpraster.stats_command import StatsRequest, compute_stats, format_report, write_report
from mpraster.stats_shards import merge_stats_shards, stats_shard, stats_shard_path

QS = (0, 2, 50, 97.5, 100)


def _inputs(tmp_path, dtype="float32", shape=(2, 70, 53)):
    """A raster with nodata (and NaN) and a zones raster on its grid; 16-pixel windows
    cut 70 x 53 into 20 of them."""
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        data = (rng.normal(0, 1e3, shape) * rng.integers(1, 5, shape)).astype(dtype)
        data[rng.random(shape) < 0.05] = np.nan
    else:
        data = rng.integers(-40_000 if dtype == "int32" else 0, 60_000, shape).astype(dtype)
    data[0, :3, :3] = 9999
    src = write_raster(tmp_path / "in.tif", data, nodata=9999)
    codes = (np.arange(shape[1] * shape[2]) % 11).reshape(1, *shape[1:]).astype("int16")
    zones = write_raster(tmp_path / "zones.tif", codes)
    return str(src), str(zones)


def _one_run(tmp_path, src, request, **options):
    """The bytes `mpraster stats ... --format json -o FILE` writes, unsharded."""
    report, _ = compute_stats(src, request, block_size=16, gather_limit=50, **options)
    path = tmp_path / "one.json"
    write_report(format_report(report, "json"), str(path))
    return path.read_bytes()


def _shards(src, request, out, count, mode="threads", **options):
    for index in range(count):
        # Each shard as a job-array task might run it: -j differs from shard to shard.
        run = mpraster.RunOptions(
            mode=mode, jobs=1 + index % 2, block_size=16, shard=(index, count), **options
        )
        stats_shard(src, request, run, out, "json")


@pytest.mark.parametrize(
    "mode,count,dtype,shape",
    [
        ("threads", 1, "float32", (2, 70, 53)),
        ("threads", 3, "float32", (2, 70, 53)),
        ("threads", 7, "float32", (2, 70, 53)),
        ("threads", 30, "float32", (2, 70, 53)),  # more shards than windows
        ("threads", 4, "int32", (1, 70, 53)),
        ("threads", 3, "uint16", (1, 70, 53)),
        ("processes", 2, "float32", (1, 32, 32)),
        ("processes", 6, "float32", (1, 32, 32)),  # 4 windows: two shards have none
    ],
)
def test_merged_shards_are_the_bytes_of_one_run(tmp_path, mode, count, dtype, shape):
    src, zones = _inputs(tmp_path, dtype, shape)
    request = StatsRequest(histogram=5, percentiles=QS, zones=zones)
    one = _one_run(tmp_path, src, request, mode="threads", jobs=2)
    out = tmp_path / "sharded.json"
    _shards(src, request, out, count, mode)
    assert not out.exists()
    report, stats = merge_stats_shards(out, mpraster.RunOptions(mode=mode, jobs=2), gather_limit=50)
    assert out.read_bytes() == one
    band = report["inputs"][0]["bands"][0]
    assert band["histogram"] and band["percentiles"] and len(band["zones"]) == 11
    passes = [p["pass"] for p in stats.passes]
    if dtype == "uint16":
        assert passes == []  # exact value counts: nothing left for the merge to read
    else:
        # The histogram over the observed range and the percentile search need the whole
        # raster's first pass: the merge runs them.
        assert passes[0] == "pass 2 (histogram)" and passes[1].startswith("pass 3 (percentiles")
    # The shards stay, as a raster merge leaves its shards.
    assert os.path.exists(stats_shard_path(str(out), count - 1, count))


def test_cli_shards_and_merge(tmp_path, cli_env, mpraster_cmd):
    src, _ = _inputs(tmp_path)
    args = [src, "--percentiles", "2,98", "--histogram", "4", "--block-size", "16", "-q"]
    one, out = tmp_path / "one.txt", tmp_path / "stats.txt"
    run_command([*mpraster_cmd, "stats"], *args, "-o", one, env=cli_env, check=True)
    for index in range(2):
        shard = ["-o", out, "--shard", f"{index}/2"]
        run_command([*mpraster_cmd, "stats"], *args, *shard, env=cli_env, check=True)
    proc = run_command([*mpraster_cmd, "merge"], out, "-j", "2", env=cli_env, check=True)
    assert "merged the stats shards into" in proc.stderr
    assert out.read_bytes() == one.read_bytes()  # the table format the shards asked for
    proc = run_command([*mpraster_cmd, "stats"], *args, "--shard", "0/2", env=cli_env)
    assert_one_line_error(proc, 2, "--shard needs -o FILE")


class _StopAfter(mpraster.progress.NullProgress):
    """Asks the run to stop once ``windows`` windows are merged."""

    def __init__(self, stop, windows):
        self.stop, self.left = stop, windows

    def advance(self, windows, pixels):
        self.left -= windows
        if self.left == 0:
            self.stop.set(signal.SIGTERM)


def test_missing_stopped_and_resumed_shards(tmp_path):
    src, zones = _inputs(tmp_path)
    request = StatsRequest(histogram=3, percentiles=(50,), zones=zones)
    one = _one_run(tmp_path, src, request)
    out = str(tmp_path / "s.json")
    run = mpraster.RunOptions(block_size=16, jobs=2)
    stats_shard(src, request, mpraster.RunOptions.of(run, shard=(0, 3)), out, "json")
    with pytest.raises(ShardMergeError, match=r"shards 1, 2 of 3 of .* are not finished$"):
        merge_stats_shards(out)
    stop = mpraster.StopSignal()
    middle = mpraster.RunOptions.of(run, shard=(1, 3))
    with pytest.raises(Interrupted, match="with --resume to finish"):
        stats_shard(src, request, middle, out, "json", progress=_StopAfter(stop, 2), stop=stop)
    # Stopped: its journal is kept, and nothing is at the shard's name.
    assert not os.path.exists(stats_shard_path(out, 1, 3))
    assert os.path.exists(stats_shard_path(out, 1, 3) + ".journal")
    with pytest.raises(ShardMergeError, match=r"shards 1, 2 .* \(run shards 1 again with --resume"):
        merge_stats_shards(out)
    with pytest.raises(UnfinishedRunError, match="pass --resume"):
        stats_shard(src, request, middle, out, "json")
    stats = stats_shard(src, request, mpraster.RunOptions.of(middle, resume=True), out, "json")
    # The windows in flight when it stopped were merged and journaled too.
    assert stats.windows_resumed >= 2 and stats.windows + stats.windows_resumed == 7
    assert not os.path.exists(stats_shard_path(out, 1, 3) + ".journal")
    stats_shard(src, request, mpraster.RunOptions.of(run, shard=(2, 3)), out, "json")
    merge_stats_shards(out)
    assert Path(out).read_bytes() == one


def test_shards_of_another_job_or_changed_inputs_are_refused(tmp_path):
    src, _ = _inputs(tmp_path)
    out = str(tmp_path / "s.json")
    run = mpraster.RunOptions(block_size=16)
    stats_shard(src, StatsRequest(histogram=4), mpraster.RunOptions.of(run, shard=(0, 3)), out)
    for index in (1, 2):
        other = StatsRequest(histogram=4 + index // 2)  # shard 2 asks another histogram
        stats_shard(src, other, mpraster.RunOptions.of(run, shard=(index, 3)), out)
    with pytest.raises(ShardMergeError, match=r"shards 2 of .* are of another job than shard 0"):
        merge_stats_shards(out)
    stats_shard(src, StatsRequest(histogram=4), mpraster.RunOptions.of(run, shard=(2, 3)), out)
    os.utime(src, ns=(0, 0))  # the input is not what the shards read
    with pytest.raises(ShardMergeError, match=r"in\.tif changed since the shards of"):
        merge_stats_shards(out)
    assert not os.path.exists(out)


def test_raster_and_stats_shards_are_not_mixed(tmp_path, make_raster, cli_env, mpraster_cmd):
    src = make_raster((1, 40, 40), "uint8")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-max", params={"size": 3}, block_size=16, shard=(0, 2))
    stats_shard(src, None, mpraster.RunOptions(block_size=16, shard=(1, 2)), out)
    proc = run_command([*mpraster_cmd, "merge"], out, env=cli_env)
    assert_one_line_error(proc, 16, "has both raster shards", "and stats shards")
    assert not out.exists()


def test_a_shard_and_a_merge_hold_the_output_lock(tmp_path):
    src, _ = _inputs(tmp_path)
    out = str(tmp_path / "s.json")
    shard = mpraster.RunOptions(block_size=16, shard=(0, 1))
    with OutputLock(stats_shard_path(out, 0, 1)):
        with pytest.raises(OutputLockedError, match="another run"):
            stats_shard(src, None, shard, out)
    stats_shard(src, None, shard, out)
    with OutputLock(out):
        with pytest.raises(OutputLockedError, match="another run"):
            merge_stats_shards(out)
    with pytest.raises(OptionError, match="--shard needs -o FILE"):
        stats_shard(src, None, shard, None)
    with pytest.raises(OptionError, match=r"mpraster\.stats_shard"):
        compute_stats(src, shard=(0, 2))


@pytest.mark.parametrize("split", [[], [5], [1, 2, 3], [4, 8, 9, 16], list(range(1, 21))])
def test_the_merge_tree_is_the_same_for_any_split(split):
    """Float sums grouped differently round differently; the plan's tree does not care
    where shards begin, nor where a resumed run took up."""
    values = np.random.default_rng(3).normal(0, 1, 21) * 10.0 ** np.arange(-10, 11)
    whole = PlanFold(lambda a, b: a + b)
    for i, v in enumerate(values):
        whole.add(i, v)
    merged = PlanFold(lambda a, b: a + b)
    for start, end in zip([0, *split], [*split, 21], strict=True):
        part = PlanFold(lambda a, b: a + b)
        for i in range(start, end):
            part.add(i, values[i])
        for node in part.nodes:
            merged.add_node(node)
    resumed = PlanFold(lambda a, b: a + b, whole.nodes)
    assert merged.result(0.0) == whole.result(0.0) == resumed.result(0.0)
    # 21 = 16 + 4 + 1 (10101b): the nodes left are of levels 4, 2 and 0.
    assert merged.nodes == whole.nodes and [n[1] for n in whole.nodes] == [4, 2, 0]
    left = 0.0
    for v in values:
        left += v
    assert left != whole.result(0.0)  # so the grouping does matter for these values


def test_every_pass_shows_progress_and_timers(tmp_path, cli_env, mpraster_cmd):
    src, _ = _inputs(tmp_path, shape=(1, 70, 53))
    args = [src, "--percentiles", "50", "--histogram", "3", "--block-size", "16"]
    # Off a terminal, progress is log lines: every pass starts and ends with one.
    proc = run_command([*mpraster_cmd, "stats"], *args, "--stats", env=cli_env, check=True)
    lines = proc.stderr.splitlines()
    for name in ("pass 1 (statistics)", "pass 2 (histogram)", "pass 3 (percentiles"):
        assert any(line.startswith(f"mpraster: {name}") and "start: 20 windows" in line
                   for line in lines), proc.stderr  # fmt: skip
        assert any(line.startswith(f"mpraster: {name}") and "20/20 windows (100%)" in line
                   for line in lines), proc.stderr  # fmt: skip
        # --stats: where each pass's time went.
        assert any(line.startswith(f"{name}") and "20 windows in" in line for line in lines)
    assert "windows in 3 passes" in proc.stderr or "windows in 4 passes" in proc.stderr
    proc = run_command(
        [*mpraster_cmd, "stats"], *args, "--progress", "json", "-q", env=cli_env, check=True
    )
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    starts = [e["pass"] for e in events if e["event"] == "start"]
    assert starts[:2] == ["pass 1 (statistics)", "pass 2 (histogram)"] and len(starts) >= 3
    assert [e["event"] for e in events].count("end") == 1 and events[-1]["event"] == "end"
    assert events[-1]["stats"]["windows"] == 20 * len(starts)
