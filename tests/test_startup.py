"""Start-up: a run does not import or do what it does not need, and the public names
that load on first use are the same objects as before."""

import importlib
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

import mpraster
from mpraster import creation_options, job, kernels
from mpraster.sample import write_raster

# What `mpraster run` used to import for nothing (the stats, shard-merge and MPI commands'
# modules, and socket for the lock's host name).
NOT_FOR_A_RUN = [
    "mpraster.stats_command",
    "mpraster.stats_shards",
    "mpraster.summary",
    "mpraster.zonal",
    "mpraster.percentiles",
    "mpraster.merge",
    "mpraster.modes.mpi",
    "mpraster.modes.processes",
    "mpraster.reductions",
    "mpraster.block_reader",
    "mpraster._summary",
    "socket",
]


def test_a_threads_run_imports_none_of_what_it_does_not_need(tmp_path):
    src = write_raster(tmp_path / "in.tif", np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8))
    code = (
        "import sys; from mpraster.cli import main\n"
        "try:\n"
        f"    main(['run', {str(src)!r}, {str(tmp_path / 'o.tif')!r}, '-k', 'reverse',"
        " '--mode', 'threads', '-q', '--progress', 'none'])\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
        f"print(sorted(set({NOT_FOR_A_RUN!r}) & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    with rasterio.open(src) as a, rasterio.open(tmp_path / "o.tif") as b:
        assert np.array_equal(a.read()[::-1], b.read())


def test_public_names_are_the_modules_objects():
    from mpraster import execute as execute_module
    from mpraster import reduce as reduce_function
    from mpraster.kernel_outputs import Output
    from mpraster.stats_command import compute_stats

    assert mpraster.Output is Output and mpraster.compute_stats is compute_stats
    # Each is also a module's name: importing the module must not hide the function.
    importlib.import_module("mpraster.execute")
    importlib.import_module("mpraster.reduce")

    assert callable(execute_module) and execute_module is mpraster.execute
    assert callable(reduce_function) and reduce_function is mpraster.reduce
    for name in mpraster.__all__:
        assert getattr(mpraster, name) is not None
    assert set(mpraster.__all__) <= set(dir(mpraster))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mpraster.nope  # noqa: B018


def test_a_built_in_kernel_is_described_once_and_its_aliases_are_it():
    table = kernels.builtin_kernels()
    assert kernels.load_kernel("ndvi") is table["ndvi"] is table["normalized-difference"]
    assert kernels.load_kernel("focal_mean") is kernels.load_kernel("focal-mean")
    table["ndvi"] = None  # the caller's copy
    assert kernels.builtin_kernels()["ndvi"] is not None


def probe_count(monkeypatch):
    probes = []
    real = creation_options.MemoryFile

    def counting(*args, **kwargs):
        probes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(creation_options, "MemoryFile", counting)
    return probes


def test_the_probe_encodes_a_tile_only_for_creation_options(tmp_path, monkeypatch):
    src = write_raster(tmp_path / "in.tif", np.ones((1, 8, 8), dtype=np.float32))
    probes = probe_count(monkeypatch)
    mpraster.run(src, tmp_path / "a.tif", "reverse")
    assert probes == []
    mpraster.run(src, tmp_path / "b.tif", "reverse", creation_options={"compress": "deflate"})
    assert probes == [1]


def test_the_fingerprint_describes_a_crs_by_its_wkt(tmp_path, monkeypatch):
    """Not by ``str``, which first searches PROJ's database for an authority code (tens
    of milliseconds for a CRS without one); two CRSs still give two fingerprints."""
    lcc = "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +datum=NAD83 +units=m +no_defs"
    data = np.ones((1, 8, 8), dtype=np.uint8)
    described = []
    real = job.fingerprint
    monkeypatch.setattr(job, "fingerprint", lambda d: described.append(d) or real(d))
    prints = []
    for lon_0 in ("-96", "-97"):
        crs = CRS.from_string(lcc.replace("-96", lon_0))
        src = write_raster(tmp_path / "in.tif", data, crs=crs)
        prints.append(job.plan_job(src, tmp_path / "o.tif", "reverse").outputs[0].fingerprint)
        with rasterio.open(src) as dataset:
            wkt = dataset.crs.to_wkt()
        assert type(described[-1]["profile"]["crs"]) is str
        assert described[-1]["profile"]["crs"] == wkt
    assert prints[0] != prints[1]


@pytest.mark.parametrize(
    "kernel,mode,starts",
    [
        ("reverse", "auto", False),  # releases the GIL: threads
        ("reverse-py", "auto", True),  # holds it: processes
        ("reverse", "processes", True),
        ("reverse-py", "threads", False),
        ("no-such-kernel", "processes", False),  # left for planning to report
    ],
)
def test_processes_mode_starts_its_forkserver_before_planning(monkeypatch, kernel, mode, starts):
    from mpraster.modes import processes

    started = []
    monkeypatch.setattr(processes, "start_forkserver", lambda: started.append(True))
    execute = importlib.import_module("mpraster.execute")
    given = execute.start_workers_early(kernel, mpraster.RunOptions(mode=mode))
    assert bool(started) == starts
    if kernel == "no-such-kernel":
        assert given == kernel
    else:  # found once: planning does not load it again
        assert isinstance(given, mpraster.Kernel) and given.name == kernel


def test_import_mpraster_loads_nothing_else():
    """So that the command can set its process up before NumPy loads."""
    code = "import sys, mpraster; print(sorted({'numpy', 'rasterio'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_command_sets_up_its_process_unless_told(monkeypatch):
    """One-thread BLAS and OpenMP pools, and glibc's malloc keeping freed blocks: in the
    environment (for the processes it starts) and, for malloc, in the process itself;
    whatever the user's environment sets is left as it is."""
    from mpraster import cli, command

    environ = {"OMP_NUM_THREADS": "3", "MALLOC_TRIM_THRESHOLD_": "0"}
    monkeypatch.setattr(command.os, "environ", environ)
    set_now = []
    monkeypatch.setattr(command, "_glibc_mallopt", lambda: lambda *a: set_now.append(a))
    ran, ended = [], []
    monkeypatch.setattr(cli, "main", lambda: ran.append(True))
    monkeypatch.setattr(command.os, "_exit", ended.append)  # not this test process
    command.main()
    assert ran == [True] and ended == [0]
    assert environ == {
        "OMP_NUM_THREADS": "3",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_TRIM_THRESHOLD_": "0",
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    }
    assert set_now == [(-3, 32 << 20)]  # M_MMAP_THRESHOLD


def test_malloc_is_left_alone_without_glibc(monkeypatch):
    from mpraster import command

    environ = {}
    monkeypatch.setattr(command.os, "environ", environ)
    monkeypatch.setattr(command, "_glibc_mallopt", lambda: None)
    command.set_up_process()
    assert not any(name.startswith("MALLOC_") for name in environ)


@pytest.mark.parametrize(
    "ending,code,says",
    [(None, 0, ""), (SystemExit(3), 3, ""), (SystemExit("bye"), 1, "bye")],
)
def test_the_command_ends_with_the_cli_s_code(monkeypatch, capsys, ending, code, says):
    from mpraster import cli, command

    def cli_main():
        if ending is not None:
            raise ending

    monkeypatch.setattr(cli, "main", cli_main)
    assert command.run_command() == code
    assert capsys.readouterr().err.strip() == says


def test_the_command_process_ends_with_its_code_and_its_output(tmp_path):
    """Without the interpreter's teardown: the exit code and every line printed survive."""
    code = (
        "import sys; sys.argv = ['mpraster', 'kernels']\nfrom mpraster.command import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "reverse" in proc.stdout and "slope" in proc.stdout
    code = code.replace("'kernels'", "'kernels', 'no-such-kernel'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "no-such-kernel" in proc.stderr
