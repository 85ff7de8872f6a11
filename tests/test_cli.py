"""The command line, through a subprocess as users run it."""

import json

import numpy as np
import pytest
import rasterio
from helpers import run_cli, run_command

from mpraster.options import default_jobs


@pytest.mark.parametrize("mode,io", [("threads", "main"), ("processes", "workers")])
def test_run_matches_reference_and_library(tmp_path, make_raster, mpraster_cmd, cli_env, mode, io):
    src = make_raster((3, 50, 45), "int32")
    out = tmp_path / "o.tif"
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        out,
        "--kernel",
        "reverse",
        "-p",
        "cost=3",
        "--mode",
        mode,
        "--io",
        io,
        "-j",
        "2",
        "--block-size",
        "16",
        "--co",
        "COMPRESS=DEFLATE",
        check=True,
    )
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert np.array_equal(b.read(), a.read()[::-1])
        assert b.compression.name == "deflate" and b.block_shapes[0] == (16, 16)
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("mpraster: ") and f"{mode}, io={io}, -j 2" in summary
    assert "MPix/s" in summary and " s (" in summary


def test_progress_is_log_lines_when_stderr_is_not_a_terminal(
    tmp_path, make_raster, mpraster_cmd, cli_env
):
    src = make_raster((1, 48, 48), "uint8")
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "-p",
        "cost=0",
        "--block-size",
        "16",
        "-j",
        "1",
        "--log-interval",
        "0",
        check=True,
    )
    lines = proc.stderr.splitlines()
    assert lines[0] == "mpraster: start: 9 windows, 0.00 MPix"
    assert sum("windows (" in line and "ETA" in line for line in lines) == 9
    assert "\r" not in proc.stderr  # no bar redraws in a log file


def test_progress_bar_and_quiet(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((1, 48, 48), "uint8")
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "-p",
        "cost=0",
        "--block-size",
        "16",
        "--progress",
        "bar",
        "--quiet",
        check=True,
    )
    assert "9/9" in proc.stderr and "win" in proc.stderr and "MPix/s" in proc.stderr
    assert "windows," not in proc.stderr  # --quiet: no summary line
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "p.tif",
        "-k",
        "reverse",
        "-p",
        "cost=0",
        "--progress",
        "none",
        "--quiet",
        check=True,
    )
    assert proc.stderr == ""


def test_stats_json(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((2, 40, 40), "uint16")
    stats_file = tmp_path / "stats.json"
    run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "-p",
        "cost=0",
        "--block-size",
        "16",
        "-j",
        "1",
        "-q",
        "--stats-json",
        stats_file,
        check=True,
    )
    stats = json.loads(stats_file.read_text())
    assert stats["pixels"] == 1600 and stats["bytes_written"] == 2 * 1600 * 2
    assert stats["mode"] == "threads" and stats["io"] == "main" and stats["jobs"] == 1
    assert stats["wall_seconds"] > 0


def test_kernels_listing(mpraster_cmd, cli_env):
    proc = run_command([*mpraster_cmd, "kernels"], env=cli_env, check=True)
    assert (
        "reverse" in proc.stdout
        and "reverse-py" in proc.stdout
        and "cost (int, default 2000)" in proc.stdout
    )
    proc = run_command([*mpraster_cmd, "kernels"], "reverse", env=cli_env, check=True)
    assert "releases the GIL" in proc.stdout and "uint16" in proc.stdout


def test_usage_errors_are_click_errors(tmp_path, mpraster_cmd, cli_env):
    proc = run_cli(mpraster_cmd, cli_env, tmp_path / "only-one.tif", "-k", "reverse")
    assert proc.returncode == 2 and "give at least one INPUT and an OUTPUT" in proc.stderr
    proc = run_cli(mpraster_cmd, cli_env, "a", "b", "-k", "reverse", "-p", "cost")
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr


def test_default_jobs_follows_the_batch_system(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "7")
    assert default_jobs() == 7
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("NCPUS", "5")
    assert default_jobs() == 5
    monkeypatch.delenv("NCPUS")
    import os

    assert default_jobs() == len(os.sched_getaffinity(0))


def test_bytes_do_not_depend_on_gdal_cache_pressure(tmp_path, make_raster, mpraster_cmd, cli_env):
    """A cache far smaller than the raster makes GDAL flush tiles mid-run; same file."""
    src = make_raster((3, 400, 400), "uint16", tile=64)
    digests = set()
    for cache, io in (("1", "main"), ("1", "workers"), (None, "main")):
        env = dict(cli_env)
        env.pop("GDAL_CACHEMAX", None)
        if cache:
            env["GDAL_CACHEMAX"] = cache  # megabytes
        out = tmp_path / f"o-{cache}-{io}.tif"
        run_cli(
            mpraster_cmd,
            env,
            src,
            out,
            "-k",
            "reverse",
            "-p",
            "cost=0",
            "-j",
            "2",
            "--io",
            io,
            "--block-size",
            "64",
            "--co",
            "COMPRESS=DEFLATE",
            "-q",
            check=True,
        )
        digests.add(out.read_bytes())
    assert len(digests) == 1


def test_progress_json_events(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((1, 48, 48), "uint8")
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "-p",
        "cost=0",
        "--block-size",
        "16",
        "-j",
        "1",
        "--progress",
        "json",
        "--log-interval",
        "0",
        "-q",
        check=True,
    )
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["event"] for e in events] == ["start"] + ["progress"] * 9 + ["end"]
    assert events[0]["windows"] == 9 and events[0]["pixels"] == 48 * 48
    last = events[-2]
    assert (last["windows_done"], last["windows_total"]) == (9, 9)
    assert last["pixels_done"] == last["pixels_total"] == 2304 and last["eta_seconds"] == 0
    assert {"mpix_per_second", "elapsed_seconds", "time"} <= set(last)
    assert events[-1]["stats"]["windows"] == 9 and events[-1]["stats"]["mode"] == "threads"


def test_stats_report(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((3, 64, 64), "uint8")
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "-p",
        "cost=20000",
        "-j",
        "2",
        "--block-size",
        "16",
        "--stats",
        "-q",
        "--progress",
        "none",
        check=True,
    )
    lines = proc.stderr.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == ["read", "compute", "write", "wait"]
    assert lines[-1].startswith("compute-bound")


def test_dry_run_prints_the_plan_and_reads_nothing(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((2, 100, 90), "uint16")
    out = tmp_path / "o.tif"
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        out,
        "-k",
        "reverse-py",
        "-j",
        "2",
        "--block-size",
        "32",
        "--dry-run",
        check=True,
    )
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    text = proc.stdout
    assert "2 x 100 x 90 uint16" in text
    assert "mode: processes, io=workers, -j 2 (kernel 'reverse-py' holds the GIL)" in text
    assert "over 12 tiles of 32" in text and "at most 4 windows in flight" in text
    assert "memory estimate:" in text and "MiB" in text
    assert "dtype=uint16, count=2" in text and "blockxsize=32" in text


def test_dry_run_reports_bad_input_like_a_run(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((1, 20, 20), "uint8")
    out = tmp_path / "o.tif"
    out.write_bytes(b"x")
    proc = run_cli(mpraster_cmd, cli_env, src, out, "-k", "reverse", "--dry-run")
    assert proc.returncode == 9 and "output exists" in proc.stderr
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "p.tif",
        "-k",
        "reverse",
        "-p",
        "cost=x",
        "--dry-run",
    )
    assert proc.returncode == 7
