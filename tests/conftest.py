"""Fixtures: small rasters written to tmp_path, the real rasters in ../shared/data, leak guards."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from mpraster.modes.transport import SHM_DIR, block_creator

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TESTS = Path(__file__).resolve().parent

DTYPES = ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    nodata: float | None = None,
    tiled: bool = False,
    block: int = 16,
    **options,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a georeferenced GeoTIFF."""
    bands, rows, cols = data.shape
    profile = dict(
        driver="GTiff",
        dtype=data.dtype.name,
        count=bands,
        height=rows,
        width=cols,
        crs="EPSG:32618",
        transform=from_origin(500000.0, 4200000.0, 30.0, 30.0),
        nodata=nodata,
        **options,
    )
    if tiled:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def synthetic(shape: tuple[int, int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """Deterministic data covering the dtype's range, including its extremes."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = rng.normal(0, 1e6, size=shape).astype(dt)
        flat = data.reshape(-1)
        flat[:4] = [np.finfo(dt).max, np.finfo(dt).min, -0.0, np.inf]
    else:
        info = np.iinfo(dt)
        data = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)
    return data


@pytest.fixture
def make_raster(tmp_path):
    """Factory: make_raster(shape, dtype, name=..., **write options) -> path."""
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


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid``, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat.rpartition(b")")[2].split()[1])


def in_this_tree(pid: int) -> bool:
    """Whether ``pid`` is this process or a live descendant of it."""
    ancestor: int | None = pid
    while ancestor:  # up to pid 0, init's parent
        if ancestor == os.getpid():
            return True
        ancestor = parent_pid(ancestor)
    return False


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
